/**
 * What every trainer job definition shares: the P5 node's shape, the container (GPUs, EFA devices,
 * shared memory, NCCL settings), the roles, and the single-node and multi-node definitions.
 * The training stack builds them for a whole environment (writes under `runs/`); a run stack
 * builds them for one experiment (writes under `runs/<experiment>/` only).
 */
import { Aws, Duration, Size, Stack } from 'aws-cdk-lib';
import * as batch from 'aws-cdk-lib/aws-batch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import type { DockerImageAsset } from 'aws-cdk-lib/aws-ecr-assets';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { JOB_CONTRACT } from '../config/job-contract';
import type { ResolvedConfig } from '../config/load';
import { ManagedRole } from './managed-role';
import { repositoryImage } from './repository-image';
import { TORCHRUN_SHUTDOWN_TIMEOUT_SECONDS } from './scratch-user-data';

/** The lake zones a training job touches. Never `raw`: the trainer reads only redacted (curated) text. */
export type TrainingBuckets = Record<'datasets' | 'models' | 'artifacts' | 'curated', s3.IBucket>;

/** Prefix of imported base models in the models zone (`dapt-local import-model --to s3://<models>/base/<name>/`). */
export const BASE_MODELS_PREFIX = 'base/';

/** What one node of the training instance types offers (p5.48xlarge, p5e, p5en alike). */
export const P5_NODE = {
  vCpus: 192,
  gpus: 8,
  /** Network cards, each of which carries one EFA interface. */
  efaInterfaces: 32,
  /** Memory the job may ask for: 2 TiB less what the ECS agent and the OS keep. */
  jobMemory: Size.gibibytes(1900),
  /** Shared memory for NCCL and data-loader workers. */
  sharedMemory: Size.gibibytes(512),
} as const;

export const CONFIG_ERROR_EXIT_CODE = JOB_CONTRACT.exitCodes.configError;
export { JOB_CONTRACT } from '../config/job-contract';

export { RUNS_PREFIX } from '../config/parameter-names';

/**
 * torchrun as the trainer image launches it (`python -m dapt_trainer.launch`, torchrun's own
 * arguments): it exits 143 after a SIGTERM and with a failed worker's exit code, where plain
 * torchrun exits 1 (containers/trainer/src/dapt_trainer/launch.py).
 */
export const TORCHRUN = ['python', '-m', 'dapt_trainer.launch'];

/** The multi-node launch: one torchrun per node, rendezvous at the main node. */
export const MULTI_NODE_LAUNCH = [
  `exec ${TORCHRUN.join(' ')}`,
  `--nnodes="$AWS_BATCH_JOB_NUM_NODES" --node_rank="$AWS_BATCH_JOB_NODE_INDEX"`,
  `--nproc_per_node=${P5_NODE.gpus}`,
  '--rdzv_backend=c10d --rdzv_endpoint="${AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS:-$(hostname -i)}:29500"',
  '-m dapt_trainer',
].join(' ');

/**
 * NCCL over EFA (libfabric) on P5. Protocol and algorithm are left to the aws-ofi-nccl plugin,
 * which tunes them for the platform (the image's Dockerfile says the same).
 */
const EFA_ENVIRONMENT: Record<string, string> = {
  FI_PROVIDER: 'efa',
  FI_EFA_USE_DEVICE_RDMA: '1',
  FI_EFA_FORK_SAFE: '1',
  NCCL_SOCKET_IFNAME: '^lo,docker',
  TORCH_NCCL_ASYNC_ERROR_HANDLING: '1',
  // The SIGTERM checkpoint's share of the ECS agent's stop window (see scratch-user-data.ts).
  TORCH_ELASTIC_SHUTDOWN_TIMEOUT: String(TORCHRUN_SHUTDOWN_TIMEOUT_SECONDS),
};

export interface GpuContainerProps {
  /** The trainer image the container runs. */
  readonly image: ecs.ContainerImage;
  /** What the container runs, e.g. `torchrun ... -m dapt_trainer`. */
  readonly command: string[];
  /** Environment besides the EFA/NCCL settings every GPU container gets. */
  readonly environment: Record<string, string>;
  /** The role the job's code runs as (its data permissions). */
  readonly jobRole: iam.IRole;
  /** Pulls the image and writes the job's logs. */
  readonly executionRole: iam.IRole;
  /** Where the container's logs go (the training log group). */
  readonly logGroup: logs.ILogGroup;
}

/** The trainer's container on one P5 node: all GPUs, all EFA devices, large shared memory. */
export function createGpuContainer(
  scope: Construct,
  id: string,
  props: GpuContainerProps,
): batch.EcsEc2ContainerDefinition {
  const linuxParameters = new batch.LinuxParameters(scope, `${id}LinuxParameters`, {
    sharedMemorySize: P5_NODE.sharedMemory,
    initProcessEnabled: true,
  });
  linuxParameters.addDevices(
    ...Array.from({ length: P5_NODE.efaInterfaces }, (_, i) => ({
      hostPath: `/dev/infiniband/uverbs${i}`,
      containerPath: `/dev/infiniband/uverbs${i}`,
      permissions: [batch.DevicePermission.READ, batch.DevicePermission.WRITE, batch.DevicePermission.MKNOD],
    })),
  );
  const container = new batch.EcsEc2ContainerDefinition(scope, `${id}Container`, {
    image: props.image,
    command: props.command,
    cpu: P5_NODE.vCpus - 4,
    memory: P5_NODE.jobMemory,
    gpu: P5_NODE.gpus,
    environment: { ...EFA_ENVIRONMENT, ...props.environment },
    jobRole: props.jobRole,
    executionRole: props.executionRole,
    linuxParameters,
    logging: ecs.LogDriver.awsLogs({ logGroup: props.logGroup, streamPrefix: 'train' }),
    volumes: [batch.EcsVolume.host({ name: 'scratch', hostPath: '/scratch', containerPath: '/scratch' })],
    readonlyRootFilesystem: false,
  });
  container.addUlimit({ name: batch.UlimitName.MEMLOCK, softLimit: -1, hardLimit: -1 });
  container.addUlimit({ name: batch.UlimitName.NOFILE, softLimit: 1048576, hardLimit: 1048576 });
  container.addUlimit({ name: batch.UlimitName.STACK, softLimit: 67108864, hardLimit: 67108864 });
  return container;
}

/** Pulls the image and writes logs for a job's container. */
export function createExecutionRole(scope: Construct, logGroupArn: string, key: kms.IKey): iam.Role {
  return new ManagedRole(scope, 'ExecutionRole', {
    assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
    description: 'Pulls the job images and writes job logs',
    statements: [
      new iam.PolicyStatement({ sid: 'EcrToken', actions: ['ecr:GetAuthorizationToken'], resources: ['*'] }),
      new iam.PolicyStatement({
        sid: 'PullFromTheAssetRepository',
        actions: ['ecr:BatchCheckLayerAvailability', 'ecr:GetDownloadUrlForLayer', 'ecr:BatchGetImage'],
        resources: [`arn:${Aws.PARTITION}:ecr:${Stack.of(scope).region}:${Aws.ACCOUNT_ID}:repository/cdk-*`],
      }),
      new iam.PolicyStatement({
        sid: 'WriteJobLogs',
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [logGroupArn],
      }),
      new iam.PolicyStatement({
        sid: 'UseLogKey',
        actions: ['kms:Decrypt', 'kms:GenerateDataKey'],
        resources: [key.keyArn],
      }),
    ],
    wildcards: [
      { pattern: /^\*$/, reason: 'ecr:GetAuthorizationToken has no resource-level permissions.' },
      {
        pattern: /:log-group:<[A-Za-z0-9]+>:\*$/,
        reason: 'Log streams of the one training log group; streams are named per job attempt.',
      },
      {
        pattern: /:repository\/cdk-\*$/,
        reason:
          "CDK's bootstrap asset repository (cdk-<qualifier>-container-assets-...) holds the job images; its name includes the bootstrap qualifier.",
      },
    ],
  }).role;
}

/**
 * The trainer's role: reads the datasets and curated zones, the base models and the models of
 * `modelReadPrefixes` (its own run's and the upstream runs it names); writes checkpoints and
 * outputs only under `writePrefix` of the models and artifacts zones.
 */
function createJobRole(
  scope: Construct,
  config: ResolvedConfig,
  buckets: TrainingBuckets,
  lakeKeyArn: string,
  writePrefix: string,
  modelReadPrefixes: readonly string[],
): iam.Role {
  return new ManagedRole(scope, 'JobRole', {
    assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
    description: `Training jobs of ${config.prefix}-${config.envId}: read training inputs, write run outputs`,
    statements: [
      new iam.PolicyStatement({
        sid: 'ReadInputs',
        actions: ['s3:GetObject'],
        resources: [buckets.datasets, buckets.curated].map((b) => b.arnForObjects('*')),
      }),
      new iam.PolicyStatement({
        sid: 'ReadBaseAndUpstreamModels',
        actions: ['s3:GetObject'],
        resources: [BASE_MODELS_PREFIX, ...modelReadPrefixes].map((prefix) =>
          buckets.models.arnForObjects(`${prefix}*`),
        ),
      }),
      new iam.PolicyStatement({
        sid: 'ListInputsAndOutputs',
        actions: ['s3:ListBucket'],
        // Named one by one: a wider object passed as `buckets` must not widen the role (never `raw`).
        resources: [buckets.datasets, buckets.models, buckets.artifacts, buckets.curated].map((b) => b.bucketArn),
      }),
      new iam.PolicyStatement({
        sid: 'WriteRunOutputs',
        actions: ['s3:PutObject', 's3:AbortMultipartUpload'],
        resources: [
          buckets.models.arnForObjects(`${writePrefix}*`),
          buckets.artifacts.arnForObjects(`${writePrefix}*`),
        ],
      }),
      new iam.PolicyStatement({
        sid: 'ReadRunOutputs',
        actions: ['s3:GetObject'],
        resources: [buckets.artifacts.arnForObjects(`${writePrefix}*`)],
      }),
      new iam.PolicyStatement({
        sid: 'UseLakeKey',
        actions: ['kms:Decrypt', 'kms:GenerateDataKey'],
        resources: [lakeKeyArn],
      }),
    ],
    wildcards: [
      {
        pattern: /^arn:(aws[a-z-]*|<AWS::Partition>):s3:::<[A-Za-z0-9]+>\/\*$/,
        reason:
          'Training inputs (dataset manifests and curated, redacted text) are read whole-zone; their keys are named by the experiment config, only reads are allowed.',
      },
      {
        pattern: new RegExp(
          `^arn:(aws[a-z-]*|<AWS::Partition>):s3:::<[A-Za-z0-9]+>/${escapeRegExp(BASE_MODELS_PREFIX)}\\*$`,
        ),
        reason: `Imported base models, one folder each under '${BASE_MODELS_PREFIX}'; read only.`,
      },
      ...modelReadPrefixes.map((prefix) => ({
        pattern: new RegExp(`^arn:(aws[a-z-]*|<AWS::Partition>):s3:::<[A-Za-z0-9]+>/${escapeRegExp(prefix)}\\*$`),
        reason: `Models of '${prefix}' (this run's own checkpoints, or an upstream run it names), read to resume or to start from; read only.`,
      })),
      {
        pattern: new RegExp(`^arn:(aws[a-z-]*|<AWS::Partition>):s3:::<[A-Za-z0-9]+>/${escapeRegExp(writePrefix)}\\*$`),
        reason: `Checkpoints and outputs are written under '${writePrefix}' only; keys are created per experiment, stage and step.`,
      },
    ],
  }).role;
}

export interface TrainerJobsProps {
  /** The resolved stage config; the jobs read `training` (timeouts, retries, nodes), `stage` and `envId`. */
  readonly config: ResolvedConfig;
  /** Start of the job definitions' names, e.g. `dapt-prod` or `dapt-prod-run-lora7b`. */
  readonly namePrefix: string;
  /** Prefix of the models and artifacts zones the jobs may write, e.g. `runs/` or `runs/lora7b/`. */
  readonly writePrefix: string;
  /**
   * Prefixes of the models zone the jobs may read besides `base/`: their own run's and the
   * upstream runs they start from (e.g. `runs/dapt7b/` for an SFT run on a DAPT checkpoint).
   * @default - [writePrefix]
   */
  readonly modelReadPrefixes?: readonly string[];
  /** The lake zones the trainer reads and writes; never `raw` (only redacted text reaches training). */
  readonly buckets: TrainingBuckets;
  /** The lake's key, which encrypts every zone. */
  readonly lakeKeyArn: string;
  /** The trainer image (`trainerImage`), one asset for every stack that runs the trainer. */
  readonly image: DockerImageAsset;
  /** Pulls the image and writes the job's logs. */
  readonly executionRole: iam.IRole;
  /** Where the container's logs go (the training log group). */
  readonly logGroup: logs.ILogGroup;
}

/**
 * The trainer's job role and its job definitions: single-node and (when maxNodes > 1)
 * multi-node training on the GPU queue, and `tokenize` on the Fargate (CPU) queue, which fills
 * the shared token cache (`dapt-train --tokenize-only`) so GPU jobs download tokens instead of
 * tokenising. All three run as the same role, so they read and write the same places.
 */
export class TrainerJobs extends Construct {
  readonly jobRole: iam.Role;
  readonly singleNode: batch.EcsJobDefinition;
  readonly multiNode?: batch.MultiNodeJobDefinition;
  readonly tokenize: batch.EcsJobDefinition;

  constructor(scope: Construct, id: string, props: TrainerJobsProps) {
    super(scope, id);
    const { config, buckets } = props;
    const training = config.training;
    this.jobRole = createJobRole(
      this,
      config,
      buckets,
      props.lakeKeyArn,
      props.writePrefix,
      props.modelReadPrefixes ?? [props.writePrefix],
    );
    const container = (containerId: string, command: string[]): batch.EcsEc2ContainerDefinition =>
      createGpuContainer(this, containerId, {
        image: ecs.ContainerImage.fromDockerImageAsset(props.image),
        command,
        environment: trainerEnvironment(config, buckets),
        jobRole: this.jobRole,
        executionRole: props.executionRole,
        logGroup: props.logGroup,
      });

    this.singleNode = new batch.EcsJobDefinition(this, 'SingleNode', {
      jobDefinitionName: `${props.namePrefix}-train-single-node`,
      container: container('Trainer', [
        ...TORCHRUN,
        '--standalone',
        `--nproc_per_node=${P5_NODE.gpus}`,
        '-m',
        'dapt_trainer',
      ]),
      retryAttempts: training.retryAttempts,
      retryStrategies: TRAINER_RETRY_STRATEGIES,
      timeout: Duration.hours(training.jobTimeoutHours),
      propagateTags: true,
    });
    this.tokenize = createTokenizeJob(this, props, this.jobRole);
    if (training.maxNodes > 1) {
      this.multiNode = createMultiNodeJob(
        this,
        props,
        container('MultiNodeTrainer', ['bash', '-c', MULTI_NODE_LAUNCH]),
      );
    }
  }
}

/**
 * `tokenize` on the Fargate (CPU) queue: fills the shared token cache (`dapt-train
 * --tokenize-only`) so GPU jobs download tokens instead of tokenising.
 */
function createTokenizeJob(scope: Construct, props: TrainerJobsProps, jobRole: iam.IRole): batch.EcsJobDefinition {
  return new batch.EcsJobDefinition(scope, 'Tokenize', {
    jobDefinitionName: `${props.namePrefix}-tokenize`,
    container: new batch.EcsFargateContainerDefinition(scope, 'TokenizeContainer', {
      image: ecs.ContainerImage.fromDockerImageAsset(props.image),
      command: ['dapt-train', '--tokenize-only'],
      cpu: TOKENIZE_VCPUS,
      memory: TOKENIZE_MEMORY,
      // The token cache is built on local disk (DAPT_CACHE=/scratch/...) before it is uploaded.
      ephemeralStorageSize: TOKENIZE_DISK,
      jobRole,
      executionRole: props.executionRole,
      logging: ecs.LogDriver.awsLogs({ logGroup: props.logGroup, streamPrefix: 'tokenize' }),
      environment: trainerEnvironment(props.config, props.buckets),
      fargateCpuArchitecture: ecs.CpuArchitecture.X86_64,
    }),
    retryAttempts: TOKENIZE_ATTEMPTS,
    // Finished sources are found in the shared cache on a retry.
    retryStrategies: FARGATE_RETRY_STRATEGIES,
    timeout: TOKENIZE_TIMEOUT,
    propagateTags: true,
  });
}

/**
 * Multi-node training: torchrun on every node reads the node count, rank and main node's address
 * from the variables AWS Batch sets on each node of a multi-node parallel job.
 */
function createMultiNodeJob(
  scope: Construct,
  props: TrainerJobsProps,
  container: batch.EcsEc2ContainerDefinition,
): batch.MultiNodeJobDefinition {
  const training = props.config.training;
  const job = new batch.MultiNodeJobDefinition(scope, 'MultiNode', {
    jobDefinitionName: `${props.namePrefix}-train-multi-node`,
    containers: [{ startNode: 0, endNode: training.maxNodes - 1, container }],
    mainNode: 0,
    instanceType: new ec2.InstanceType(training.instanceTypes[0]!),
    retryAttempts: training.retryAttempts,
    retryStrategies: TRAINER_RETRY_STRATEGIES,
    timeout: Duration.hours(training.jobTimeoutHours),
    propagateTags: true,
  });
  // An open node range ('0:') lets a submission ask for fewer nodes (numNodes override);
  // Batch refuses the override on a closed range such as '0:3'.
  (job.node.defaultChild as batch.CfnJobDefinition).addPropertyOverride(
    'NodeProperties.NodeRangeProperties.0.TargetNodes',
    '0:',
  );
  return job;
}

/** What every trainer container is told about its environment (the trainer reads its config from DAPT_CONFIG). */
export function trainerEnvironment(
  config: ResolvedConfig,
  buckets: Pick<TrainingBuckets, 'models' | 'artifacts' | 'datasets'>,
): Record<string, string> {
  return {
    DAPT_STAGE: config.stage,
    DAPT_ENV_ID: config.envId,
    DAPT_MODELS_BUCKET: buckets.models.bucketName,
    DAPT_ARTIFACTS_BUCKET: buckets.artifacts.bucketName,
    DAPT_DATASETS_BUCKET: buckets.datasets.bucketName,
  };
}

/**
 * Retries of the CPU (Fargate) jobs, which resume their finished work: a task that could not
 * start (Fargate capacity, image pull) is retried; a job that ran and failed is not.
 */
export const FARGATE_RETRY_STRATEGIES = [
  batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.custom({ onStatusReason: 'ResourceInitializationError*' })),
  batch.RetryStrategy.of(batch.Action.EXIT, batch.Reason.NON_ZERO_EXIT_CODE),
];

/** One process tokenises the sources in turn; the fast tokenizer spreads each batch over the vCPUs. */
const TOKENIZE_VCPUS = 8;
const TOKENIZE_MEMORY = Size.gibibytes(32);

const TRAINER_RETRY_STRATEGIES = [
  // 'Host EC2*' is how Batch reports both a reclaimed Spot node and a lost on-demand host; the
  // trainer resumes from its last complete checkpoint, so only the steps since then are lost.
  batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.SPOT_INSTANCE_RECLAIMED),
  // A configuration error fails the same way every time: do not pay for retries.
  batch.RetryStrategy.of(batch.Action.EXIT, batch.Reason.custom({ onExitCode: String(CONFIG_ERROR_EXIT_CODE) })),
  // Any other failure is a bug or a bad input until proven otherwise: stop and look.
  batch.RetryStrategy.of(batch.Action.EXIT, batch.Reason.NON_ZERO_EXIT_CODE),
];

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/**
 * The trainer image (containers/trainer/Dockerfile, without its tests and benchmarks). The training
 * stack and every run stack build it with these props: one asset hash, one build, one push.
 */
export function trainerImage(scope: Construct): DockerImageAsset {
  return repositoryImage(scope, 'TrainerImage', {
    dockerfile: 'containers/trainer/Dockerfile',
    packages: ['trainer'],
    without: ['tests', 'bench'],
  });
}
/** Local disk of the tokenize task: the token cache is built here before it is uploaded. */
const TOKENIZE_DISK = Size.gibibytes(200);
/** Attempts of a tokenize task that could not start (Fargate capacity, image pull). */
const TOKENIZE_ATTEMPTS = 2;
/** Tokenising a 7B run's sources takes hours of CPU; a day means something is wrong. */
const TOKENIZE_TIMEOUT = Duration.hours(24);
