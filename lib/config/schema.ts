/**
 * The platform's configuration: one validated object per stage.
 *
 * Stage files live in `config/<stage>.json` and hold every setting; `cdk.json` context only
 * selects a stage (`-c stage=...`) and, for ephemeral stages, an experiment (`-c experiment=NAME`).
 * Behaviour that must not drift with a typo (removal policies, termination protection, audit in
 * production) is derived from the stage in `stageBehaviour`, not configurable.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';

/** Stages this platform knows. */
export const STAGES = ['experiment', 'production'] as const;
export type Stage = (typeof STAGES)[number];

/** CloudWatch Logs accepts only these retention periods (days). */
export const LOG_RETENTION_DAYS = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
] as const;

const TAG_VALUE = /^[\p{L}\p{N} _.:/=+\-@]{1,256}$/u;
const tagValue = z.string().regex(TAG_VALUE, 'must be 1-256 letters, digits, spaces or _.:/=+-@');

const retentionDays = z.number().refine((d) => (LOG_RETENTION_DAYS as readonly number[]).includes(d), {
  message: `must be one of CloudWatch Logs' retention periods: ${LOG_RETENTION_DAYS.join(', ')}`,
});

const positiveDays = z.int().min(1, 'must be at least 1 day').max(3650, 'must be at most 3650 days');

export const NetworkConfigSchema = z.strictObject({
  /** IPv4 CIDR of the VPC; /16 leaves room for P5's 32 EFA interfaces per node. */
  cidr: z
    .string()
    .regex(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/, 'must be an IPv4 CIDR such as 10.40.0.0/16')
    .refine((c) => {
      const mask = Number(c.split('/')[1]);
      return mask >= 16 && mask <= 20;
    }, 'prefix length must be between /16 and /20'),
  /** Availability zones to spread the subnets over. */
  maxAzs: z.int().min(1, 'must be at least 1').max(6, 'must be at most 6'),
  /** Prefix length of each training subnet (one per AZ); P5 nodes take 32 addresses each. */
  trainingSubnetMask: z.int().min(16).max(24),
  /** Prefix length of each evaluation subnet (Lambda ENIs, eval jobs). */
  evalSubnetMask: z.int().min(16).max(26),
  /** Prefix length of each subnet that holds the interface endpoints. */
  endpointSubnetMask: z.int().min(20).max(27),
});

export const DataLakeConfigSchema = z.strictObject({
  /** Days after which an unfinished multipart upload is aborted. */
  abortIncompleteUploadDays: positiveDays,
  /** Days a replaced or deleted object version is kept before it expires. */
  noncurrentVersionExpirationDays: positiveDays,
  /** Days server access logs are kept. */
  accessLogExpirationDays: positiveDays,
});

/** The rule packs a conformance pack can mirror (cdk-nag's plugin names, checked at synth time too). */
export const CONFORMANCE_PACKS = ['NIST.800.53.R5', 'HIPAA.Security'] as const;

/** An EventBridge Scheduler expression: `rate(1 day)`, `cron(0 6 * * ? *)`. */
const scheduleExpression = z
  .string()
  .regex(
    /^(rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\([^()]+\))$/,
    'must be an EventBridge Scheduler expression such as rate(1 day) or cron(0 6 * * ? *)',
  );

export const ContinuousComplianceConfigSchema = z.strictObject({
  /**
   * `create`: this stack creates the region's AWS Config recorder and delivery channel (one of
   * each per account and region); `existing`: the account already records (AWS Control Tower,
   * an organization-wide setup), and only the conformance packs are added.
   */
  configRecorder: z.enum(['create', 'existing']),
  /** Conformance packs mirroring the synth-time cdk-nag packs of the same name. */
  conformancePacks: z.array(z.enum(CONFORMANCE_PACKS)).min(1, 'must name at least one pack'),
  /** When every platform stack is checked for drift from its template. */
  driftDetectionSchedule: scheduleExpression,
  /** Addresses subscribed to the compliance topic (drift, non-compliant resources); each must confirm. */
  notificationEmails: z.array(z.email('must be an email address')).max(10),
});

export const AuditConfigSchema = z.strictObject({
  /** Record management events and the lake's S3 data events in a CloudTrail trail. */
  cloudTrail: z.boolean(),
  /** Record read events too (GetObject); write events are always recorded when the trail is on. */
  recordS3ReadEvents: z.boolean(),
  /** AWS Config recording, conformance packs and scheduled drift detection; absent: none (experiments). */
  continuousCompliance: ContinuousComplianceConfigSchema.optional(),
});

export const DeliveryConfigSchema = z.strictObject({
  /**
   * Where the reviewed commits come from: `connection`, a repository (`owner/name`, `branch`)
   * reached through an AWS CodeConnections connection whose ARN the platform team stores once in
   * the SSM parameter `<ssmRoot>/delivery/connection-arn` (creating a connection needs a person
   * to authorize it with the provider); or `s3`, for air-gapped setups, a zip of the repository
   * at `objectKey` in a versioned bucket.
   */
  source: z.discriminatedUnion('kind', [
    z.strictObject({
      kind: z.literal('connection'),
      repository: z.string().regex(/^[\w.-]+\/[\w.-]+$/, 'must be owner/name'),
      branch: z.string().min(1).max(255),
    }),
    z.strictObject({
      kind: z.literal('s3'),
      bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'must be an S3 bucket name'),
      objectKey: z.string().min(1).max(1024),
    }),
  ]),
  /** CodeBuild compute type of the synth step, which runs the whole test suite. */
  synthComputeType: z.enum(['BUILD_GENERAL1_MEDIUM', 'BUILD_GENERAL1_LARGE', 'BUILD_GENERAL1_XLARGE']),
  /** Addresses told when a deployment waits for approval, succeeds or fails; each must confirm. */
  notificationEmails: z.array(z.email('must be an email address')).max(10),
});

export const LifecycleConfigSchema = z.strictObject({
  /**
   * Hours an experiment environment (or a run stack) lives after its latest deploy when
   * `-c ttl=HOURS` is not given. Production itself never expires: in production the lifecycle
   * applies to run stacks (`-c run=NAME`) only.
   */
  defaultTtlHours: z.int().min(1, 'must be at least 1 hour').max(8760, 'must be at most 8760 hours (a year)'),
  /** Longest ttl a deploy (`-c ttl`) or `dapt env extend` may set, counted from now. */
  maxTtlHours: z.int().min(1, 'must be at least 1 hour').max(8760, 'must be at most 8760 hours (a year)'),
  /** Hours before the expiry the notification emails are warned (once per expiry). */
  warningHours: z.int().min(1, 'must be at least 1 hour').max(168, 'must be at most 168 hours (a week)'),
  /** When the sweeper looks for expired stacks (EventBridge Scheduler); an expired stack waits at most this long. */
  sweepSchedule: scheduleExpression,
  /** Addresses subscribed to the lifecycle topic (warnings, deletions, failed deletions); each must confirm. */
  notificationEmails: z.array(z.email('must be an email address')).max(10),
  /** An AWS Budgets cost budget per experiment environment and per run stack, by its `experiment` tag. */
  budget: z.strictObject({
    /** Monthly cost in USD; notified at 80% actual and 100% forecasted. */
    monthlyUsd: z.number().min(1, 'must be at least 1 USD').max(1_000_000, 'must be at most 1,000,000 USD'),
  }),
});

export const EvalConfigSchema = z.strictObject({
  /** Most shards the Distributed Map runs at once; the plan may choose fewer to respect provider limits. */
  maxShardConcurrency: z.int().min(1).max(10000),
  /**
   * Reserved concurrency of the worker Lambda; absent: none reserved (in-flight shards are bounded
   * by maxShardConcurrency either way). Lambda keeps 100 of the account's concurrency unreserved,
   * so a reservation fails to deploy where the account's quota is below 100 plus the reservation
   * (new accounts may start at 10): check `aws lambda get-account-settings` first.
   */
  workerReservedConcurrency: z.int().min(1).max(1000).optional(),
  /** Worker Lambda timeout; a shard must finish within it (Lambda allows at most 900 s). */
  workerTimeoutSeconds: z.int().min(30).max(900),
  /** Worker Lambda memory in MB. */
  workerMemoryMb: z.int().min(256).max(10240),
  /** Bedrock foundation models the fan-out may call (as model or judge); IAM is scoped to these. */
  bedrockModelIds: z.array(
    z
      .string()
      .regex(
        /^[a-z0-9-]+\.[A-Za-z0-9.:_-]+$/,
        'must be a Bedrock model id such as anthropic.claude-3-5-sonnet-20240620-v1:0',
      ),
  ),
});

/** GPU instance types the training compute environment may use (8 GPUs, EFA). */
export const TRAINING_INSTANCE_TYPES = ['p5.48xlarge', 'p5e.48xlarge', 'p5en.48xlarge'] as const;

/** How training capacity is bought. */
export const TrainingCapacitySchema = z.discriminatedUnion('mode', [
  z.strictObject({ mode: z.literal('on-demand') }),
  z.strictObject({
    mode: z.literal('reservation'),
    /** On-demand capacity reservation to launch into. */
    reservationId: z
      .string()
      .regex(/^cr-[0-9a-f]{8,17}$/, 'must be a capacity reservation id such as cr-0123456789abcdef0'),
  }),
  z.strictObject({
    mode: z.literal('capacity-block'),
    /** Capacity Block for ML (a reservation of the capacity-block type). */
    reservationId: z
      .string()
      .regex(/^cr-[0-9a-f]{8,17}$/, 'must be a capacity reservation id such as cr-0123456789abcdef0'),
  }),
  z.strictObject({ mode: z.literal('spot') }),
]);

export const TrainingConfigSchema = z.strictObject({
  /** Instance types of the GPU compute environment. */
  instanceTypes: z.array(z.enum(TRAINING_INSTANCE_TYPES)).min(1),
  /** Most nodes running at once (maxvCpus = maxNodes x 192); 0 nodes run while idle. */
  maxNodes: z.int().min(1).max(64),
  capacity: TrainingCapacitySchema,
  /** A job waiting this long in RUNNABLE for lack of capacity is cancelled with a clear reason (10-1440). */
  runnableTimeoutMinutes: z
    .int()
    .min(10, 'must be at least 10 (AWS Batch minimum)')
    .max(1440, 'must be at most 1440 (24 hours)'),
  /** Wall-clock limit of one training attempt. */
  jobTimeoutHours: z.int().min(1).max(336),
  /** Attempts for a job whose host or Spot instance was lost (the trainer resumes from its checkpoint). */
  retryAttempts: z.int().min(1).max(10),
  /** Encrypted root volume size in GiB (images, logs); checkpoints go to S3, scratch to NVMe. */
  rootVolumeGiB: z.int().min(100).max(16384),
  /** vCPUs of the Fargate queue for data-preparation jobs. */
  cpuQueueMaxvCpus: z.int().min(1).max(4096),
  /**
   * Most resources the data pipeline's EMR Serverless application holds at once, summed over all
   * its workers (its `maximumCapacity`); it holds none while idle. A Spark worker has 1-16 vCPUs
   * with 2-8 GiB each and 20-200 GiB of disk; new accounts are limited to 16 concurrent vCPUs
   * until the service quota is raised.
   */
  sparkMaxCapacity: z
    .strictObject({
      vCpus: z.int().min(1).max(20000),
      memoryGiB: z.int().min(2).max(160000),
      diskGiB: z.int().min(20).max(4000000),
    })
    .refine((c) => c.memoryGiB >= 2 * c.vCpus, {
      message: 'memoryGiB must be at least 2 per vCPU (the smallest Spark worker has 2 GiB a vCPU)',
      path: ['memoryGiB'],
    }),
  /**
   * Estimated cost in USD (`npx dapt cost train`) above which `dapt train submit` asks before
   * submitting; `--yes` accepts without asking, and without a terminal it refuses. Absent: 500.
   */
  confirmSpendAboveUsd: z.number().min(0, 'must be an amount in USD >= 0').optional(),
  /**
   * Availability zone of the GPU nodes, e.g. us-east-1b: the zone of the capacity reservation or
   * Capacity Block when there is one. Absent: the VPC's first zone. One zone always, because the
   * nodes of a multi-node job share a cluster placement group, which cannot span zones.
   */
  availabilityZone: z
    .string()
    .regex(/^[a-z]{2}(-gov)?-[a-z]+-\d[a-z]$/, 'must be an availability zone name such as us-east-1b')
    .optional(),
});

/** A model or adapter as served: a name and its artifact under the models zone. */
const ServedArtifactSchema = z.strictObject({
  /** Names the inference component `<prefix>-<envId>-<name>`; lowercase letters, digits, dashes. */
  name: z
    .string()
    .regex(/^[a-z](?:-?[a-z0-9])*$/, 'must be lowercase letters, digits or single dashes, starting with a letter')
    .max(30, 'must be at most 30 characters (SageMaker names are limited to 63)'),
  /** Key prefix in the models zone: an imported base model (`base/...`) or a run's output (`runs/<run>/...`), ending in `/`. */
  artifact: z
    .string()
    .regex(/^(base|runs)\/[A-Za-z0-9._/-]+\/$/, "must be a key prefix under 'base/' or 'runs/' ending in '/'"),
});

export const ServingConfigSchema = z.strictObject({
  /** The domain the models are adapted to; names its model package group `<prefix>-<envId>-<domain>`. */
  domain: z
    .string()
    .regex(/^[a-z](?:-?[a-z0-9])*$/, 'must be lowercase letters, digits or single dashes, starting with a letter')
    .max(30, 'must be at most 30 characters'),
  /** Instance type of the endpoint's instances, e.g. ml.g6e.2xlarge. */
  instanceType: z
    .string()
    .regex(/^ml\.[a-z0-9-]+\.[a-z0-9]+$/, 'must be a SageMaker instance type such as ml.g6e.2xlarge'),
  /** Most instances the endpoint's managed instance scaling may run. */
  maxInstances: z.int().min(1).max(20),
  /**
   * The large-model-inference container (AWS Deep Learning Containers' LMI image), pinned: its
   * account (763104351884 in most regions), repository and tag. docs/operations.md lists the
   * image this platform was written against.
   */
  image: z.strictObject({
    account: z.string().regex(/^\d{12}$/, 'must be a 12-digit AWS account id'),
    repository: z.string().regex(/^[a-z0-9][a-z0-9._/-]*$/, 'must be an ECR repository name'),
    tag: z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/, 'must be an image tag'),
  }),
  /**
   * The SageMaker inference AMI of the instances, whose GPU driver must run the image's CUDA
   * (al2-ami-sagemaker-inference-gpu-3-1: driver 550, CUDA 12.4).
   */
  inferenceAmiVersion: z.enum([
    'al2-ami-sagemaker-inference-gpu-2',
    'al2-ami-sagemaker-inference-gpu-2-1',
    'al2-ami-sagemaker-inference-gpu-3-1',
    'al2023-ami-sagemaker-inference-gpu-4-1',
  ]),
  /** The base model every adapter runs on. */
  baseModel: ServedArtifactSchema,
  /**
   * LoRA adapters served on the base model, one inference component each. SageMaker takes an
   * adapter as one `.tar.gz` (adapter_config.json and the adapter weights at its root). Empty in
   * production, where adapters arrive only as Approved packages (`dapt serve deploy`).
   */
  adapters: z
    .array(
      ServedArtifactSchema.extend({
        /** Key of the adapter's archive in the models zone, e.g. `runs/sft7b/adapter.tar.gz`. */
        artifact: z
          .string()
          .regex(/^runs\/[A-Za-z0-9._/-]+\.tar\.gz$/, "must be a key under 'runs/' ending in '.tar.gz'"),
      }),
    )
    .max(50),
  /** GPUs one copy of the base model takes. */
  acceleratorsPerCopy: z.int().min(1).max(8),
  /** Host memory one copy of the base model takes, in MB. */
  memoryPerCopyMb: z.int().min(1024).max(2_000_000),
  /** Most copies of the base model (scaling's upper bound). */
  maxCopies: z.int().min(1).max(100),
  /** Concurrent requests per copy that target tracking holds (production, and experiments once awake). */
  targetConcurrentRequestsPerCopy: z.int().min(1).max(1000),
  /** Adapters one copy keeps loaded at once (LMI's OPTION_MAX_LORAS). */
  maxLoadedAdapters: z.int().min(1).max(64),
  /** Largest LoRA rank an adapter may have (LMI's OPTION_MAX_LORA_RANK). */
  maxLoraRank: z.int().min(1).max(512),
  /** Percent of requests and responses captured to the eval zone (`capture/`); 0 turns capture off. */
  dataCapturePercent: z.int().min(0).max(100),
  /** Alarm thresholds. */
  alarms: z.strictObject({
    /** 5xx responses (server errors) per 5 minutes that raise the alarm. */
    max5xxPer5Minutes: z.int().min(1),
    /** Average model latency, in milliseconds, that raises the alarm. */
    maxModelLatencyMs: z.int().min(1),
  }),
});

export const PlatformConfigSchema = z.strictObject({
  /** Which stage this file configures; must match the file name. */
  stage: z.enum(STAGES),
  /** AWS account id; when absent, the CLI's default account (CDK_DEFAULT_ACCOUNT) is used. */
  account: z
    .string()
    .regex(/^\d{12}$/, 'must be a 12-digit AWS account id')
    .optional(),
  /** AWS region; P5 instances are offered in a subset of regions. */
  region: z.string().regex(/^[a-z]{2}(-gov)?-[a-z]+-\d$/, 'must be an AWS region such as us-east-1'),
  /** Prefix of every stack, SSM parameter and resource name: lowercase letters, digits, dashes. */
  prefix: z
    .string()
    .regex(/^[a-z][a-z0-9-]{1,14}$/, 'must be 2-15 lowercase letters, digits or dashes, starting with a letter'),
  /** Cost-allocation tags put on every resource (stage and experiment are added from the stage). */
  tags: z.strictObject({ project: tagValue, owner: tagValue, costCenter: tagValue }),
  /** Retention of every CloudWatch log group the platform creates (VPC flow logs, trail, Lambda). */
  logRetentionDays: retentionDays,
  network: NetworkConfigSchema,
  dataLake: DataLakeConfigSchema,
  audit: AuditConfigSchema,
  eval: EvalConfigSchema,
  training: TrainingConfigSchema,
  /** The SageMaker endpoint the adapted models are served from; absent: no serving stack. */
  serving: ServingConfigSchema.optional(),
  /**
   * Expiry, warnings, sweeping and budgets of experiment environments and run stacks (production's
   * platform stacks never expire; its run stacks do).
   */
  lifecycle: LifecycleConfigSchema,
  /**
   * The delivery pipeline that deploys this stage from reviewed commits only (production);
   * absent: the stage is deployed with `cdk deploy` from a workstation (experiments).
   */
  delivery: DeliveryConfigSchema.optional(),
});

/**
 * Rules that relate several fields. They run on the raw input too, so a file with both a type
 * error and a cross-field problem reports both at once (zod skips object refinements once a
 * field fails).
 */
export function crossFieldProblems(raw: unknown): { path: string[]; message: string }[] {
  const problems: { path: string[]; message: string }[] = [];
  const config = (raw ?? {}) as {
    stage?: unknown;
    network?: { cidr?: unknown; [k: string]: unknown };
    audit?: { cloudTrail?: unknown; continuousCompliance?: unknown };
    delivery?: unknown;
  };
  const cidr = config.network?.cidr;
  const vpcMask = typeof cidr === 'string' ? Number(cidr.split('/')[1]) : NaN;
  for (const key of ['trainingSubnetMask', 'evalSubnetMask', 'endpointSubnetMask']) {
    const mask = config.network?.[key];
    if (typeof mask === 'number' && !Number.isNaN(vpcMask) && mask <= vpcMask) {
      problems.push({ path: ['network', key], message: `must be longer than the VPC's /${vpcMask}` });
    }
  }
  const evalConfig = (raw as { eval?: { maxShardConcurrency?: unknown; workerReservedConcurrency?: unknown } } | null)
    ?.eval;
  if (
    typeof evalConfig?.maxShardConcurrency === 'number' &&
    typeof evalConfig.workerReservedConcurrency === 'number' &&
    evalConfig.workerReservedConcurrency < evalConfig.maxShardConcurrency
  ) {
    problems.push({
      path: ['eval', 'workerReservedConcurrency'],
      message: `must be at least eval.maxShardConcurrency (${evalConfig.maxShardConcurrency}): each in-flight shard holds one worker`,
    });
  }
  const training = (raw as { training?: { maxNodes?: unknown; capacity?: { mode?: unknown } } } | null)?.training;
  if (training?.capacity?.mode === 'spot' && typeof training.maxNodes === 'number' && training.maxNodes > 1) {
    problems.push({
      path: ['training', 'capacity', 'mode'],
      message: `spot is for single-node jobs only (training.maxNodes is ${training.maxNodes}): a reclaimed node would stop every node of a multi-node job; set maxNodes to 1 or use on-demand, reservation or capacity-block`,
    });
  }
  const adapters = (raw as { serving?: { adapters?: unknown } } | null)?.serving?.adapters;
  if (config.stage === 'production' && Array.isArray(adapters) && adapters.length > 0) {
    problems.push({
      path: ['serving', 'adapters'],
      message:
        'must be empty in production: adapters reach production only as Approved model packages, with `dapt serve deploy` (which checks the approval the promotion gate set)',
    });
  }
  const lifecycle = (raw as { lifecycle?: { defaultTtlHours?: unknown; maxTtlHours?: unknown } } | null)?.lifecycle;
  if (
    typeof lifecycle?.defaultTtlHours === 'number' &&
    typeof lifecycle.maxTtlHours === 'number' &&
    lifecycle.defaultTtlHours > lifecycle.maxTtlHours
  ) {
    problems.push({
      path: ['lifecycle', 'defaultTtlHours'],
      message: `must be at most lifecycle.maxTtlHours (${lifecycle.maxTtlHours}): a deploy without -c ttl would be refused`,
    });
  }
  const production = config.stage === 'production';
  if (production && config.delivery === undefined) {
    problems.push({
      path: ['delivery'],
      message:
        'is required in production: the audited environment is deployed only by its pipeline, from reviewed commits',
    });
  }
  if (production && config.audit !== undefined && config.audit.continuousCompliance === undefined) {
    problems.push({
      path: ['audit', 'continuousCompliance'],
      message: 'is required in production: AWS Config and drift detection keep checking what cdk-nag checked once',
    });
  }
  if (config.stage === 'production' && config.audit?.cloudTrail === false) {
    problems.push({
      path: ['audit', 'cloudTrail'],
      message: 'must be true in production: the audited environment records every API call',
    });
  }
  return problems;
}

export type PlatformConfig = z.infer<typeof PlatformConfigSchema>;
export type NetworkConfig = z.infer<typeof NetworkConfigSchema>;
export type DataLakeConfig = z.infer<typeof DataLakeConfigSchema>;
export type EvalConfig = z.infer<typeof EvalConfigSchema>;
export type TrainingConfig = z.infer<typeof TrainingConfigSchema>;
export type ServingConfig = z.infer<typeof ServingConfigSchema>;
export type DeliveryConfig = z.infer<typeof DeliveryConfigSchema>;
export type ContinuousComplianceConfig = z.infer<typeof ContinuousComplianceConfigSchema>;
export type LifecycleConfig = z.infer<typeof LifecycleConfigSchema>;

/**
 * The one naming rule of experiment and run names, kept in the trainer's package (whose config
 * `experiment` names the job and its `runs/<name>/` prefix) and read here by the stacks and CLIs.
 */
export const NAME_RULE_FILE = path.join(
  __dirname,
  '..',
  '..',
  'containers',
  'trainer',
  'src',
  'dapt_trainer',
  'names.json',
);
const NAME_RULE = JSON.parse(readFileSync(NAME_RULE_FILE, 'utf8')) as {
  pattern: string;
  maxLength: number;
  rule: string;
};
/** The rule in words, for error messages: `1-20 lowercase letters, ...`. */
export const NAME_RULE_TEXT = NAME_RULE.rule;

/** An experiment or run name (`-c experiment=NAME`, `-c run=NAME`, `--experiment`); part of stack, bucket and job names. */
export const ExperimentNameSchema = z
  .string()
  .max(NAME_RULE.maxLength, `must be ${NAME_RULE.rule}`)
  .regex(new RegExp(NAME_RULE.pattern), `must be ${NAME_RULE.rule}`);
