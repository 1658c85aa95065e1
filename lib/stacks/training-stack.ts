import { Stack, type StackProps } from 'aws-cdk-lib';
import type * as batch from 'aws-cdk-lib/aws-batch';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import type { DockerImageAsset } from 'aws-cdk-lib/aws-ecr-assets';
import type * as iam from 'aws-cdk-lib/aws-iam';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';

import type { ResolvedConfig } from '../config/load';
import { DataPrepJob } from '../constructs/data-prep-job';
import { EncryptedLogGroup } from '../constructs/encrypted-log-group';
import { FargateQueue } from '../constructs/fargate-queue';
import { GpuCompute } from '../constructs/gpu-compute';
import { LakeImports } from '../constructs/lake-imports';
import { NodeLauncherKeyGrant } from '../constructs/node-launcher-key-grant';
import { PlatformKey } from '../constructs/platform-key';
import { PlatformParameters } from '../constructs/platform-parameters';
import { PreflightJob } from '../constructs/preflight-job';
import { SparkApplication } from '../constructs/spark-application';
import { SparkJobRole } from '../constructs/spark-job-role';
import {
  createExecutionRole,
  RUNS_PREFIX,
  TrainerJobs,
  trainerEnvironment,
  trainerImage,
} from '../constructs/trainer-jobs';

export { CONFIG_ERROR_EXIT_CODE, P5_NODE, RUNS_PREFIX } from '../constructs/trainer-jobs';

export interface TrainingStackProps extends StackProps {
  /** The resolved stage config; the stack reads `training`, `prefix`, `envId`, `stage` and the log retention. */
  readonly config: ResolvedConfig;
  /** The network stack's VPC (isolated subnets only). */
  readonly vpc: ec2.IVpc;
  /** Lets the nodes of a job exchange all traffic (EFA/NCCL). */
  readonly efaSecurityGroup: ec2.ISecurityGroup;
  /** Prefix list of the S3 gateway endpoint, for the Fargate jobs' egress. */
  readonly s3PrefixListId: string;
}

/**
 * Training on AWS Batch: P5 capacity at 0 vCPUs while idle (`GpuCompute`), a Fargate queue for
 * data preparation and token caches (`FargateQueue`), the NCCL/EFA preflight, and, in an
 * experiment stage, the environment-wide trainer and data-prep jobs. A production environment
 * gets no trainer or data jobs here: each experiment deploys a run stack whose role writes only
 * `runs/<name>/`.
 */
export class TrainingStack extends Stack {
  readonly gpuQueue: batch.JobQueue;
  readonly cpuQueue: batch.JobQueue;
  /** Environment-wide trainer jobs; only in an experiment stage (production runs use run stacks). */
  readonly trainerJobs?: TrainerJobs;
  readonly preflightJob: batch.EcsJobDefinition;
  /** Environment-wide data pipeline; only in an experiment stage (production runs bring their own, scoped to the run). */
  readonly dataPrepJob?: batch.EcsJobDefinition;
  readonly jobRole?: iam.Role;
  /** The data pipeline's EMR Serverless application (both stages; it costs nothing while idle). */
  readonly sparkApplication: SparkApplication;
  /** Environment-wide role of the Spark data jobs; only in an experiment stage (production runs bring their own). */
  readonly sparkJobRole?: iam.Role;

  constructor(scope: Construct, id: string, props: TrainingStackProps) {
    super(scope, id, props);
    const { config } = props;
    const namePrefix = `${config.prefix}-${config.envId}`;
    const destroyOnDelete = config.behaviour.destroyOnDelete;
    const key = new PlatformKey(this, 'TrainingKey', {
      alias: `${namePrefix}-training`,
      description: `Encrypts training root volumes and job logs of ${namePrefix}`,
      destroyOnDelete,
    }).key;
    new NodeLauncherKeyGrant(this, 'NodeLauncherKeyGrant', { key });
    const logGroup = new EncryptedLogGroup(this, 'JobLogs', {
      encryptionKey: key,
      retentionDays: config.logRetentionDays,
      destroyOnDelete,
    }).logGroup;
    const lake = new LakeImports(this, config.ssmRoot);
    const jobBuckets = lake.zones('datasets', 'models', 'artifacts');
    const image = trainerImage(this);

    const gpu = new GpuCompute(this, 'GpuCompute', { ...props, training: config.training, namePrefix, volumeKey: key });
    this.gpuQueue = gpu.queue;
    this.cpuQueue = new FargateQueue(this, 'CpuCompute', {
      namePrefix,
      vpc: props.vpc,
      vpcCidr: config.network.cidr,
      s3PrefixListId: props.s3PrefixListId,
      maxvCpus: config.training.cpuQueueMaxvCpus,
    }).queue;

    // Immutable: the managed ExecutionPolicy already covers the image pull CDK would add inline.
    const executionRole = createExecutionRole(this, logGroup.logGroupArn, key).withoutPolicyUpdates();
    this.sparkApplication = new SparkApplication(this, 'SparkData', {
      namePrefix,
      vpc: props.vpc,
      vpcCidr: config.network.cidr,
      s3PrefixListId: props.s3PrefixListId,
      maxCapacity: config.training.sparkMaxCapacity,
      logKey: key,
      logRetentionDays: config.logRetentionDays,
      destroyOnDelete,
      artifactsBucket: lake.bucket('artifacts'),
      lakeKeyArn: lake.keyArn(),
    });
    const jobs = { namePrefix, executionRole, logGroup };
    this.preflightJob = new PreflightJob(this, 'Preflight', {
      ...jobs,
      image,
      environment: trainerEnvironment(config, jobBuckets),
    }).definition;
    if (config.stage !== 'production') {
      ({ trainerJobs: this.trainerJobs, dataPrepJob: this.dataPrepJob } = this.addExperimentJobs(config, lake, {
        ...jobs,
        image,
      }));
      this.jobRole = this.trainerJobs.jobRole;
      this.sparkJobRole = new SparkJobRole(this, 'SparkDataRole', {
        namePrefix,
        applicationArn: this.sparkApplication.applicationArn,
        writePrefix: '',
        buckets: lake.zones('raw', 'curated', 'datasets', 'artifacts'),
        lakeKeyArn: lake.keyArn(),
        logGroupArn: this.sparkApplication.logGroup.logGroupArn,
        logKeyArn: key.keyArn,
      }).role;
    }
    publishTrainingParameters(this, config, key.keyArn, logGroup.logGroupName);
  }

  /**
   * An experiment stage belongs to one experiment: its trainer jobs may write the whole `runs/`
   * prefix and its data pipeline the whole curated and datasets zones. The trainer never reads
   * `raw` (only redacted text); the data pipeline reads it to redact it.
   */
  private addExperimentJobs(
    config: ResolvedConfig,
    lake: LakeImports,
    jobs: { namePrefix: string; executionRole: iam.IRole; logGroup: logs.ILogGroup; image: DockerImageAsset },
  ): { trainerJobs: TrainerJobs; dataPrepJob: batch.EcsJobDefinition } {
    const lakeKeyArn = lake.keyArn();
    const buckets = lake.zones('datasets', 'models', 'artifacts', 'curated');
    const trainerJobs = new TrainerJobs(this, 'TrainerJobs', {
      ...jobs,
      lakeKeyArn,
      config,
      writePrefix: RUNS_PREFIX,
      buckets,
    });
    const dataPrepJob = new DataPrepJob(this, 'DataPrep', {
      ...jobs,
      lakeKeyArn,
      stage: config.stage,
      envId: config.envId,
      writePrefix: '',
      buckets: lake.zones('raw', 'curated', 'datasets'),
    }).definition;
    return { trainerJobs, dataPrepJob };
  }
}

/** What run stacks, the CLI and the pipeline read about this environment's training. */
function publishTrainingParameters(
  stack: TrainingStack,
  config: ResolvedConfig,
  keyArn: string,
  logGroup: string,
): void {
  const parameters = new PlatformParameters(stack, 'Parameters', config.ssmRoot);
  const jobs = stack.trainerJobs;
  parameters.publish('trainingGpuQueueArn', stack.gpuQueue.jobQueueArn, 'Job queue of GPU training jobs');
  parameters.publish('trainingCpuQueueArn', stack.cpuQueue.jobQueueArn, 'Job queue of data-preparation jobs');
  parameters.publish(
    'trainingSingleNodeJobDefinitionArn',
    jobs?.singleNode.jobDefinitionArn ?? 'none',
    "Single-node training job definition ('none' in production: runs bring their own)",
  );
  parameters.publish(
    'trainingMultiNodeJobDefinitionArn',
    jobs?.multiNode?.jobDefinitionArn ?? 'none',
    "Multi-node training job definition ('none' when maxNodes is 1 or in production)",
  );
  parameters.publish(
    'trainingPreflightJobDefinitionArn',
    stack.preflightJob.jobDefinitionArn,
    'NCCL/EFA preflight job definition',
  );
  parameters.publish(
    'trainingDataPrepJobDefinitionArn',
    stack.dataPrepJob?.jobDefinitionArn ?? 'none',
    "Training-data pipeline job definition (CPU queue; 'none' in production: runs bring their own)",
  );
  parameters.publish(
    'trainingTokenizeJobDefinitionArn',
    jobs?.tokenize.jobDefinitionArn ?? 'none',
    "Token-cache job definition (CPU queue; 'none' in production: runs bring their own)",
  );
  const spark = stack.sparkApplication;
  parameters.publish(
    'trainingSparkApplicationId',
    spark.applicationId,
    'EMR Serverless application of the data pipeline',
  );
  parameters.publish(
    'trainingSparkApplicationArn',
    spark.applicationArn,
    'ARN of that application (run roles trust it)',
  );
  parameters.publish('trainingSparkLogGroup', spark.logGroup.logGroupName, 'Log group of the Spark data jobs');
  parameters.publish(
    'trainingSparkJobRoleArn',
    stack.sparkJobRole?.roleArn ?? 'none',
    "Role of the Spark data jobs ('none' in production: runs bring their own)",
  );
  parameters.publish('trainingKeyArn', keyArn, 'KMS key of training volumes and job logs');
  parameters.publish('trainingJobLogGroup', logGroup, 'Log group of training jobs');
  parameters.publish('trainingMaxNodes', String(config.training.maxNodes), 'Most nodes one training job may use');
  parameters.publish('trainingCapacityMode', config.training.capacity.mode, 'How training capacity is bought');
}
