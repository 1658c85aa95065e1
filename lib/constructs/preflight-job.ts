import { Duration } from 'aws-cdk-lib';
import * as batch from 'aws-cdk-lib/aws-batch';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import type { DockerImageAsset } from 'aws-cdk-lib/aws-ecr-assets';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { createGpuContainer, P5_NODE } from './trainer-jobs';

export interface PreflightJobProps {
  /** Start of the job definition's name (`<namePrefix>-preflight`). */
  readonly namePrefix: string;
  /** The trainer image, which carries `dapt_trainer.preflight`. */
  readonly image: DockerImageAsset;
  /** Environment of the container besides NCCL_DEBUG=INFO (the trainer's, so the node looks like a training node). */
  readonly environment: Record<string, string>;
  /** Pulls the image and writes the job's logs. */
  readonly executionRole: iam.IRole;
  /** Where the job's container logs go (the training log group). */
  readonly logGroup: logs.ILogGroup;
}

/**
 * An NCCL all-reduce over the GPUs and EFA devices of one node, run before paying for a long
 * job. It touches no data, so its role has no permissions at all.
 */
export class PreflightJob extends Construct {
  readonly definition: batch.EcsJobDefinition;

  constructor(scope: Construct, id: string, props: PreflightJobProps) {
    super(scope, id);
    const role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
      description: 'NCCL/EFA preflight jobs: no permissions needed',
    });
    this.definition = new batch.EcsJobDefinition(this, 'Definition', {
      jobDefinitionName: `${props.namePrefix}-preflight`,
      container: createGpuContainer(this, 'Preflight', {
        image: ecs.ContainerImage.fromDockerImageAsset(props.image),
        command: ['torchrun', '--standalone', `--nproc_per_node=${P5_NODE.gpus}`, '-m', 'dapt_trainer.preflight'],
        environment: { ...props.environment, NCCL_DEBUG: 'INFO' },
        jobRole: role,
        executionRole: props.executionRole,
        logGroup: props.logGroup,
      }),
      retryAttempts: 1,
      timeout: DEFAULT_PREFLIGHT_TIMEOUT,
      propagateTags: true,
    });
  }
}

/** An NCCL all-reduce over one node takes minutes; longer means EFA or the node is broken. */
const DEFAULT_PREFLIGHT_TIMEOUT = Duration.minutes(30);
