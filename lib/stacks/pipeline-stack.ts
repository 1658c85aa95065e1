import { Duration, Stack, type StackProps } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type { Construct } from 'constructs';
import type { ResolvedConfig } from '../config/load';
import { EncryptedLogGroup } from '../constructs/encrypted-log-group';
import { evalPackageImage } from '../constructs/eval-functions';
import { ExperimentPipeline } from '../constructs/experiment-pipeline';
import { allowHttpsToServices, SUBNET_GROUPS } from '../constructs/isolated-vpc';
import { LakeImports } from '../constructs/lake-imports';
import { PlatformFunction } from '../constructs/platform-function';
import { PlatformKey } from '../constructs/platform-key';
import { PlatformParameters, readPlatformParameter } from '../constructs/platform-parameters';

export interface PipelineStackProps extends StackProps {
  /** The resolved stage config; the stack reads `stage`, `prefix`, `envId`, the CIDR and the log retention. */
  readonly config: ResolvedConfig;
  /** The network stack's VPC: the steps function runs in its isolated eval subnets. */
  readonly vpc: ec2.IVpc;
  /** Prefix list of the S3 gateway endpoint (the function reads and writes only S3). */
  readonly s3PrefixListId: string;
}

/**
 * The experiment pipeline of one environment (`ExperimentPipeline`): its state machine, the
 * steps function (ledger and gate inputs), a KMS-encrypted notification topic, and the SSM
 * parameters `dapt pipeline` reads. Everything it drives (job queues and definitions, the eval
 * state machine, the registrar, the endpoint) belongs to the other stacks and is read through SSM
 * at deploy time, so this stack deploys after them and goes away without touching them.
 */
export class PipelineStack extends Stack {
  readonly pipeline: ExperimentPipeline;
  readonly topic: sns.Topic;

  constructor(scope: Construct, id: string, props: PipelineStackProps) {
    super(scope, id, props);
    const { config } = props;
    const namePrefix = `${config.prefix}-${config.envId}`;
    const destroyOnDelete = config.behaviour.destroyOnDelete;
    const read = (key: Parameters<typeof readPlatformParameter>[2]): string =>
      readPlatformParameter(this, config.ssmRoot, key);
    const key = new PlatformKey(this, 'PipelineKey', {
      alias: `${namePrefix}-pipeline`,
      description: `Encrypts the experiment pipeline's notifications, logs and function environment in ${namePrefix}`,
      destroyOnDelete,
    }).key;
    this.topic = new sns.Topic(this, 'Notifications', {
      topicName: `${namePrefix}-experiment-pipeline`,
      masterKey: key,
      enforceSSL: true,
    });
    const lake = new LakeImports(this, config.ssmRoot);
    const artifacts = lake.bucket('artifacts');
    const evalBucket = lake.bucket('eval');
    const models = lake.bucket('models');

    const securityGroup = new ec2.SecurityGroup(this, 'StepsSecurityGroup', {
      vpc: props.vpc,
      description: 'Experiment pipeline steps: outbound to S3 only',
      allowAllOutbound: false,
    });
    allowHttpsToServices(securityGroup, config.network.cidr, [props.s3PrefixListId]);
    const steps = new PlatformFunction(this, 'Steps', {
      description: `Ledger and promotion-gate inputs of the experiment pipeline of ${namePrefix}`,
      code: { kind: 'image', code: evalPackageImage('dapt_eval.pipeline_steps.steps_handler') },
      environment: { POWERTOOLS_SERVICE_NAME: 'experiment-pipeline-steps' },
      network: { vpc: props.vpc, subnets: { subnetGroupName: SUBNET_GROUPS.eval }, securityGroup },
      encryptionKey: key,
      logRetentionDays: config.logRetentionDays,
      destroyOnDelete,
      timeout: Duration.minutes(2),
      memoryMb: DEFAULT_STEPS_MEMORY_MB,
      unreservedConcurrencyReason:
        'Called only by the pipeline state machine, one call at a time per execution (ledger checks and marks, one gate collection); a reservation would fail to deploy in accounts whose Lambda quota is below 100 plus the reservation, such as new accounts (quota 10).',
      statements: [
        new iam.PolicyStatement({
          sid: 'LedgerAndGateInputs',
          actions: ['s3:GetObject', 's3:PutObject'],
          resources: [
            artifacts.arnForObjects('runs/*/pipeline/*'),
            artifacts.arnForObjects('runs/*/gate/gate_inputs.json'),
            artifacts.arnForObjects('runs/*/gate/evaluation.json'),
          ],
        }),
        new iam.PolicyStatement({
          sid: 'ReadEvidence',
          actions: ['s3:GetObject'],
          resources: [
            models.arnForObjects('runs/*/final/heldout*.json'),
            evalBucket.arnForObjects('runs/*/report.json'),
          ],
        }),
        // GetObject of a missing marker answers 404 (not 403) only with ListBucket.
        new iam.PolicyStatement({
          sid: 'TellMissingMarkers',
          actions: ['s3:ListBucket'],
          resources: [artifacts.bucketArn],
          conditions: { StringLike: { 's3:prefix': ['runs/*'] } },
        }),
        new iam.PolicyStatement({
          sid: 'UseLakeKey',
          actions: ['kms:Decrypt', 'kms:GenerateDataKey'],
          resources: [lake.keyArn()],
        }),
      ],
      wildcards: [
        {
          pattern:
            /^arn:(aws[a-z-]*|<AWS::Partition>):s3:::<[A-Za-z0-9]+>\/runs\/\*(\/pipeline\/\*|\/gate\/(gate_inputs|evaluation)\.json|\/report\.json|\/final\/heldout\*\.json)$/,
          reason:
            "Per run, named when a pipeline starts: its ledger markers (runs/<run>/pipeline/), its gate inputs and evidence summary, its trained model's held-out losses (models zone) and each evaluation run's report (eval zone).",
        },
      ],
    });

    const stateMachineLogs = new EncryptedLogGroup(this, 'StateMachineLogs', {
      logGroupName: `/aws/vendedlogs/states/${namePrefix}-experiment-pipeline`,
      encryptionKey: key,
      retentionDays: config.logRetentionDays,
      destroyOnDelete,
    });
    this.pipeline = new ExperimentPipeline(this, 'ExperimentPipeline', {
      stateMachineName: `${namePrefix}-experiment-pipeline`,
      namePrefix,
      requireApproval: config.stage === 'production',
      steps: steps.function,
      registrar: lambda.Function.fromFunctionAttributes(this, 'Registrar', {
        functionArn: read('servingRegistrarFunctionArn'),
        sameEnvironment: true,
      }),
      evaluation: sfn.StateMachine.fromStateMachineArn(this, 'Evaluation', read('evalStateMachineArn')),
      jobQueueArns: [read('trainingGpuQueueArn'), read('trainingCpuQueueArn')],
      endpointName: read('servingEndpointName'),
      topic: this.topic,
      logGroup: stateMachineLogs.logGroup,
    });

    // Publishing to a KMS-encrypted topic needs the key too (SNS encrypts each message with a data
    // key the publisher generates); sns:Publish alone fails with KMS.AccessDeniedException.
    key.grant(this.pipeline.stateMachine.role, 'kms:Decrypt', 'kms:GenerateDataKey');

    const parameters = new PlatformParameters(this, 'Parameters', config.ssmRoot);
    parameters.publish(
      'pipelineStateMachineArn',
      this.pipeline.stateMachine.stateMachineArn,
      'State machine that takes an experiment from data to a served model',
    );
    parameters.publish('pipelineTopicArn', this.topic.topicArn, "The experiment pipeline's notification topic");
  }
}

/** Reading a few reports and writing one JSON file. */
const DEFAULT_STEPS_MEMORY_MB = 1024;
