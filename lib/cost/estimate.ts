/**
 * What an experiment costs before it runs: pure functions over a training job, a stage's idle
 * environment and an evaluation run, priced from the bundled table (`prices.json`). No AWS
 * call; every figure is an itemized line, and every assumption behind it is listed with where
 * it comes from and how to override it (`dapt cost ... --help`).
 */
import type { PlatformConfig } from '../config/schema';
import { bedrockPrices, instancePrice, type PriceTable, servicePrice, type UsedPrice } from './prices';

/** One itemized cost: quantity x unit price. */
export interface CostLine {
  /** What is paid for, e.g. `stage 'dapt': 1 x p5.48xlarge`. */
  readonly item: string;
  readonly quantity: number;
  /** Unit of the quantity, e.g. `instance-hours`. */
  readonly unit: string;
  /** USD per unit. */
  readonly unitUsd: number;
  readonly usd: number;
  /** The price used (`us-east-1 ec2OnDemandHourly p5.48xlarge`). */
  readonly price: string;
  /** Whether a retrievable page states that price. */
  readonly verified: boolean;
  /** How the quantity was computed. */
  readonly detail?: string;
}

/** A stated assumption behind the figures. */
export interface Assumption {
  readonly name: string;
  readonly value: string;
  /** Where the value comes from. */
  readonly origin: string;
  /** The option that overrides it. */
  readonly flag?: string;
}

/** An itemized estimate with everything it rests on. */
export interface CostEstimate {
  readonly kind: 'train' | 'env' | 'eval';
  readonly title: string;
  readonly region: string;
  /** `run`: the total is one job or run; `month`: the total is per month. */
  readonly period: 'run' | 'month';
  readonly lines: readonly CostLine[];
  readonly totalUsd: number;
  /** Key figures besides money (wall-clock hours, tokens, units). */
  readonly facts: readonly { readonly name: string; readonly value: string }[];
  readonly assumptions: readonly Assumption[];
  /** Things that change what is billed (capacity mode, limits the job would hit). */
  readonly notices: readonly string[];
  /** What is billed but not in the total. */
  readonly notCounted: readonly string[];
  readonly prices: {
    readonly retrieved: string;
    readonly source: string;
    /** Every price the lines used, with its source. */
    readonly used: readonly UsedPrice[];
  };
}

// ---------------------------------------------------------------------------------------- training

/** How big a stage's model is, for its FLOPs per token. */
export interface ModelSize {
  /** All parameters. */
  readonly parameters: number;
  /** Parameters that do matmuls (all but the input embedding): N of the FLOP count. */
  readonly matmulParameters: number;
  /** Layers, heads and head dim, for the attention term 12·L·H·Q·T; absent: not counted. */
  readonly attention?: { readonly layers: number; readonly heads: number; readonly headDim: number };
  /** How the size was found (a config.json, the model's name, the default). */
  readonly origin: string;
}

/** One trainer stage, as the cost sees it. */
export interface TrainingStage {
  readonly name: string;
  readonly steps: number;
  readonly seqLen: number;
  readonly microBatchSize: number;
  readonly gradAccumSteps: number;
  readonly method: 'full' | 'lora';
  /** The stage's model; null: unknown (the default size is assumed). */
  readonly model: ModelSize | null;
  /** LoRA adapter parameters; null: unknown (their FLOPs are then not counted). */
  readonly adapterParameters: number | null;
}

/** A training job: its stages and where it runs. */
export interface TrainingJob {
  readonly experiment: string;
  readonly stages: readonly TrainingStage[];
  readonly nodes: number;
  readonly instanceType: string;
  readonly region: string;
  readonly gpusPerNode: number;
  /** Peak FLOP/s of one GPU (the trainer's `compute.peak_flops`). */
  readonly peakFlopsPerGpu: number;
  /** `training.capacity.mode` of the stage, when known. */
  readonly capacityMode?: string;
  /** `training.maxNodes` of the stage, when known. */
  readonly maxNodes?: number;
  /** `training.jobTimeoutHours` of the stage, when known. */
  readonly jobTimeoutHours?: number;
  /** `training.retryAttempts` of the stage, when known. */
  readonly retryAttempts?: number;
}

/** The assumptions of a training estimate; every one is overridable. */
export interface TrainingAssumptions {
  /** Tokens per second per node for every stage; absent: from the MFU. */
  readonly tokensPerSecondPerNode?: number;
  /** Model FLOPs utilisation assumed when the throughput is derived. */
  readonly mfu: number;
  /** Hours per node per job before the first step: boot, image pull, token cache, model load. */
  readonly startupHoursPerNode: number;
  /** Parameters assumed for a stage whose model size is unknown. */
  readonly defaultParameters: number;
}

/**
 * Defaults. MFU 0.40: below the trainer's goal (>= 50% on one H100, containers/trainer/README.md
 * and docs/benchmarks.md), which no GPU run has measured yet. Startup 15 minutes per node: P5
 * boot, the trainer image pull, the token cache download and the model load; not measured.
 * 8B parameters: the platform's reference models (README: 7B on one P5; the serving base is
 * Llama 3.1 8B).
 */
export const DEFAULT_TRAINING_ASSUMPTIONS: TrainingAssumptions = {
  mfu: 0.4,
  startupHoursPerNode: 0.25,
  defaultParameters: 8e9,
};

/** A P5 node (p5, p5e, p5en): 8 GPUs. */
export const GPUS_PER_P5_NODE = 8;

/**
 * FLOPs per trained token by the trainer's convention (dapt_trainer.model.FlopCount,
 * torchtitan's): full `6N + 12·L·H·Q·T`; LoRA `4N + 6N_lora + 12·L·H·Q·T`.
 */
export function flopsPerToken(
  model: ModelSize,
  method: 'full' | 'lora',
  adapterParameters: number | null,
  seqLen: number,
): number {
  const attention = model.attention
    ? 12 * model.attention.layers * model.attention.heads * model.attention.headDim * seqLen
    : 0;
  const weights =
    method === 'full' ? 6 * model.matmulParameters : 4 * model.matmulParameters + 6 * (adapterParameters ?? 0);
  return weights + attention;
}

/**
 * Parameters named in a model path: `llama-2-7b` -> 7e9, `Llama-3.1-70B-Instruct` -> 70e9,
 * `SmolLM2-135M` -> 135e6; null when the name holds no size.
 */
export function parametersFromName(name: string): number | null {
  const base = name.replace(/\/+$/, '').split('/').pop() ?? '';
  const match = /(?:^|[^a-z0-9.])(\d+(?:\.\d+)?)([bm])(?![a-z0-9])/i.exec(base);
  if (!match) return null;
  return Number(match[1]) * (match[2]!.toLowerCase() === 'b' ? 1e9 : 1e6);
}

/** The itemized cost of one training job at on-demand prices. */
export function estimateTraining(
  job: TrainingJob,
  table: PriceTable,
  assumptions: TrainingAssumptions = DEFAULT_TRAINING_ASSUMPTIONS,
): CostEstimate {
  if (!Number.isInteger(job.nodes) || job.nodes < 1) throw new RangeError(`nodes = ${job.nodes}: must be >= 1`);
  const price = instancePrice(table, job.region, 'ec2OnDemandHourly', job.instanceType);
  const gpus = job.nodes * job.gpusPerNode;
  const lines: CostLine[] = [];
  const stageAssumptions: Assumption[] = [];
  const notices: string[] = [];
  let wallHours = 0;
  let tokens = 0;
  for (const stage of job.stages) {
    const model: ModelSize = stage.model ?? {
      parameters: assumptions.defaultParameters,
      matmulParameters: assumptions.defaultParameters,
      origin: `unknown: ${billions(assumptions.defaultParameters)} parameters assumed`,
    };
    const tokensPerStep = stage.seqLen * stage.microBatchSize * stage.gradAccumSteps * gpus;
    const stageTokens = stage.steps * tokensPerStep;
    const flops = flopsPerToken(model, stage.method, stage.adapterParameters, stage.seqLen);
    const perNode =
      assumptions.tokensPerSecondPerNode ?? (assumptions.mfu * job.peakFlopsPerGpu * job.gpusPerNode) / flops;
    const hours = stageTokens / (perNode * job.nodes) / 3600;
    wallHours += hours;
    tokens += stageTokens;
    const nodeHours = hours * job.nodes;
    lines.push({
      item: `stage '${stage.name}' (${stage.method}): ${job.nodes} x ${job.instanceType}`,
      quantity: nodeHours,
      unit: 'instance-hours',
      unitUsd: price.usd,
      usd: nodeHours * price.usd,
      price: price.ref,
      verified: price.verified,
      detail: `${stage.steps} steps x ${count(tokensPerStep)} tokens/step = ${count(stageTokens)} tokens / (${count(perNode)} tokens/s/node x ${job.nodes} node(s)) = ${round(hours, 2)} h`,
    });
    stageAssumptions.push({
      name: `stage '${stage.name}' model`,
      value: `${billions(model.parameters)} parameters${stage.method === 'lora' ? `, ${stage.adapterParameters === null ? 'adapter size unknown (adapter FLOPs not counted)' : `${billions(stage.adapterParameters)} adapter parameters`}` : ''}`,
      origin: model.origin,
    });
    stageAssumptions.push({
      name: `stage '${stage.name}' throughput`,
      value: `${count(perNode)} tokens/s per node`,
      origin:
        assumptions.tokensPerSecondPerNode !== undefined
          ? 'given'
          : `MFU ${assumptions.mfu} x ${sci(job.peakFlopsPerGpu)} FLOP/s x ${job.gpusPerNode} GPUs / ${sci(flops)} FLOPs per token (${stage.method === 'full' ? '6N' : '4N + 6N_lora'}${model.attention ? ' + 12·L·H·Q·T' : ', attention not counted'}: the trainer's FlopCount)`,
      flag: '--tokens-per-second, --mfu',
    });
    if (stage.method === 'lora' && stage.adapterParameters === null)
      notices.push(
        `stage '${stage.name}': adapter FLOPs not counted (model dimensions unknown): the time is somewhat underestimated`,
      );
  }
  const startupHours = assumptions.startupHoursPerNode * job.nodes;
  lines.push({
    item: `startup: ${job.nodes} x ${job.instanceType} before the first step`,
    quantity: startupHours,
    unit: 'instance-hours',
    unitUsd: price.usd,
    usd: startupHours * price.usd,
    price: price.ref,
    verified: price.verified,
    detail: `${assumptions.startupHoursPerNode} h per node (boot, image pull, token cache, model load)`,
  });
  wallHours += assumptions.startupHoursPerNode;

  if (job.maxNodes !== undefined && job.nodes > job.maxNodes)
    notices.push(
      `--nodes ${job.nodes} exceeds training.maxNodes = ${job.maxNodes} of the stage: train submit would refuse it`,
    );
  if (job.jobTimeoutHours !== undefined && wallHours > job.jobTimeoutHours)
    notices.push(
      `about ${round(wallHours, 1)} h of wall clock exceeds training.jobTimeoutHours = ${job.jobTimeoutHours}: each attempt is stopped at the limit (the trainer resumes from its checkpoint on a retry, paying another startup)`,
    );
  notices.push(...capacityNotices(job.capacityMode));

  return {
    kind: 'train',
    title: `training job '${job.experiment}' on ${job.nodes} x ${job.instanceType} (${job.region})`,
    region: job.region,
    period: 'run',
    lines,
    totalUsd: sum(lines),
    facts: [
      { name: 'wall clock', value: `${round(wallHours, 2)} h` },
      {
        name: 'instance-hours',
        value: round(
          lines.reduce((n, l) => n + l.quantity, 0),
          2,
        ).toString(),
      },
      { name: 'tokens processed', value: count(tokens) },
      { name: 'GPUs', value: `${gpus} (${job.nodes} node(s) x ${job.gpusPerNode})` },
    ],
    assumptions: [
      {
        name: 'tokens per step',
        value: 'seq_len x micro_batch_size x grad_accum_steps x GPUs',
        origin:
          "the trainer's global batch (containers/trainer/README.md): micro_batch_size x grad_accum_steps x WORLD_SIZE rows of seq_len token positions, padding included; more nodes mean more tokens per step, not fewer hours",
      },
      ...stageAssumptions,
      {
        name: 'startup',
        value: `${assumptions.startupHoursPerNode} h per node per job`,
        origin: 'assumed, not measured: P5 boot, trainer image pull, token cache download, model load',
        flag: '--startup-hours',
      },
      {
        name: 'scaling',
        value: 'every node at the same tokens/s',
        origin: 'assumed: no multi-node communication loss',
      },
      {
        name: 'price',
        value: `${usd(price.usd)} per instance-hour`,
        origin: `EC2 Linux on-demand, ${price.ref}: ${price.verified ? price.source : 'unverified (see the prices below)'}`,
        flag: '--refresh-prices',
      },
    ],
    notices,
    notCounted: [
      `retries: an attempt that loses its host resumes from the last checkpoint (up to training.retryAttempts${job.retryAttempts === undefined ? '' : ` = ${job.retryAttempts}`} attempts), repeating the steps since it and a startup`,
      'held-out evaluations (eval_every, eval_at_start), checkpoint saves and the final export',
      'EBS root volumes, S3 storage of checkpoints and outputs, CloudWatch Logs of the job',
      'time in RUNNABLE waiting for capacity (not billed) and `dapt train tokenize` on Fargate',
    ],
    prices: { retrieved: table.retrieved, source: table.source, used: [price] },
  };
}

function capacityNotices(mode: string | undefined): string[] {
  switch (mode) {
    case 'spot':
      return [
        'capacity mode spot: billed at the Spot price, which varies and is usually below on-demand; the on-demand rate here is an upper bound',
      ];
    case 'reservation':
      return [
        'capacity mode reservation: the capacity reservation is billed for every hour it exists, used or not; the on-demand rate here covers only the hours this job uses',
      ];
    case 'capacity-block':
      return [
        'capacity mode capacity-block: a Capacity Block is paid up front for its whole window at its own rate (aws.amazon.com/ec2/capacityblocks/pricing); the on-demand rate here is not what the block costs',
      ];
    default:
      return [];
  }
}

// ------------------------------------------------------------------------------------- environment

/**
 * The KMS keys the stacks create (`new PlatformKey` in lib/stacks/, checked by
 * test/cost/estimate.test.ts against the source): which stack, and whether the stage has it.
 */
export const PLATFORM_KEYS: readonly {
  readonly stack: string;
  readonly id: string;
  readonly when: (config: PlatformConfig) => boolean;
}[] = [
  { stack: 'network-stack.ts', id: 'LogsKey', when: () => true },
  { stack: 'data-lake-stack.ts', id: 'LakeKey', when: () => true },
  { stack: 'eval-stack.ts', id: 'EvalKey', when: () => true },
  { stack: 'training-stack.ts', id: 'TrainingKey', when: () => true },
  { stack: 'serving-stack.ts', id: 'ServingKey', when: (c) => c.serving !== undefined },
  // The experiment pipeline is built where there is serving (it registers and deploys there).
  { stack: 'pipeline-stack.ts', id: 'PipelineKey', when: (c) => c.serving !== undefined },
  { stack: 'audit-stack.ts', id: 'TrailKey', when: (c) => c.audit.cloudTrail },
  // The lifecycle stack's (one per account and region, shared by every experiment there).
  { stack: 'lifecycle-stack.ts', id: 'LifecycleKey', when: () => true },
  // The delivery pipeline's stack, built where the stage config has a `delivery` section.
  {
    stack: 'delivery-stack.ts',
    id: 'DeliveryKey',
    when: (c) => (c as { readonly delivery?: unknown }).delivery !== undefined,
  },
];

/** What a deployed stage keeps while nothing runs. */
export interface IdleEnvironment {
  readonly stage: string;
  readonly envId: string;
  readonly region: string;
  readonly availabilityZones: number;
  /** Interface VPC endpoints (one per AZ each). */
  readonly interfaceEndpoints: number;
  readonly kmsKeys: readonly string[];
  readonly cloudTrail: boolean;
  /** The serving endpoint and its instances at the minimum; absent: no serving stack. */
  readonly serving?: { readonly instanceType: string; readonly minInstances: number; readonly maxInstances: number };
  readonly logRetentionDays: number;
  readonly capacityMode: string;
}

/** The usage an idle environment still has; every one is overridable. */
export interface EnvironmentAssumptions {
  /** GB of logs ingested per month while idle (flow logs, the trail's management events, Lambda). */
  readonly logIngestGbPerMonth: number;
  /** Days of logs accumulated for the storage line (capped by the retention). */
  readonly logHorizonDays: number;
  /** GB stored in the lake's buckets. */
  readonly lakeGb: number;
  /** GB through the interface endpoints per month while idle. */
  readonly endpointGbPerMonth: number;
  /** S3 data events the trail records per month while idle. */
  readonly s3DataEventsPerMonth: number;
}

/** Defaults: an idle environment moves next to nothing; the lake's size is yours to give. */
export const DEFAULT_ENVIRONMENT_ASSUMPTIONS: EnvironmentAssumptions = {
  logIngestGbPerMonth: 1,
  logHorizonDays: 365,
  lakeGb: 0,
  endpointGbPerMonth: 0,
  s3DataEventsPerMonth: 0,
};

/** The serving endpoint's minimum instances: production keeps one, other stages scale to zero (ServingStack). */
export function minServingInstances(stage: string): number {
  return stage === 'production' ? 1 : 0;
}

/** What a stage's config deploys that bills by the hour or month (pure: the endpoint count is given). */
export function idleEnvironment(
  config: PlatformConfig & { readonly envId: string },
  interfaceEndpoints: number,
): IdleEnvironment {
  return {
    stage: config.stage,
    envId: config.envId,
    region: config.region,
    availabilityZones: config.network.maxAzs,
    interfaceEndpoints,
    kmsKeys: PLATFORM_KEYS.filter((k) => k.when(config)).map((k) => `${k.stack.replace('.ts', '')}/${k.id}`),
    cloudTrail: config.audit.cloudTrail,
    ...(config.serving
      ? {
          serving: {
            instanceType: config.serving.instanceType,
            minInstances: minServingInstances(config.stage),
            maxInstances: config.serving.maxInstances,
          },
        }
      : {}),
    logRetentionDays: config.logRetentionDays,
    capacityMode: config.training.capacity.mode,
  };
}

/** Monthly (and hourly) cost of an environment while no job, run or request is active. */
export function estimateEnvironment(
  env: IdleEnvironment,
  table: PriceTable,
  assumptions: EnvironmentAssumptions = DEFAULT_ENVIRONMENT_ASSUMPTIONS,
): CostEstimate {
  const hours = table.hoursPerMonth;
  const used: UsedPrice[] = [];
  const lines: CostLine[] = [];
  const add = (item: string, quantity: number, unit: string, price: UsedPrice, detail?: string): void => {
    used.push(price);
    lines.push({
      item,
      quantity,
      unit,
      unitUsd: price.usd,
      usd: quantity * price.usd,
      price: price.ref,
      verified: price.verified,
      ...(detail ? { detail } : {}),
    });
  };
  const r = env.region;
  add(
    `interface VPC endpoints: ${env.interfaceEndpoints} x ${env.availabilityZones} AZ(s)`,
    env.interfaceEndpoints * env.availabilityZones * hours,
    'endpoint-AZ-hours',
    servicePrice(table, r, 'interfaceEndpoint', 'azHour'),
    `${env.interfaceEndpoints} endpoints x ${env.availabilityZones} AZs x ${hours} h`,
  );
  add(
    'interface VPC endpoints: data processed',
    assumptions.endpointGbPerMonth,
    'GB',
    servicePrice(table, r, 'interfaceEndpoint', 'gbProcessed'),
  );
  add(
    `KMS keys: ${env.kmsKeys.length}`,
    env.kmsKeys.length,
    'key-months',
    servicePrice(table, r, 'kms', 'keyMonth'),
    env.kmsKeys.join(', '),
  );
  if (env.cloudTrail)
    add(
      'CloudTrail S3 data events',
      assumptions.s3DataEventsPerMonth / 100_000,
      '100k events',
      servicePrice(table, r, 'cloudTrail', 'dataEventsPer100k'),
      `${count(assumptions.s3DataEventsPerMonth)} events; management events: first copy free`,
    );
  add(
    'CloudWatch Logs ingestion',
    assumptions.logIngestGbPerMonth,
    'GB',
    servicePrice(table, r, 'cloudWatchLogs', 'ingestGb'),
  );
  const storedMonths = Math.min(env.logRetentionDays, assumptions.logHorizonDays) / (365 / 12);
  add(
    'CloudWatch Logs storage',
    assumptions.logIngestGbPerMonth * storedMonths,
    'GB-months',
    servicePrice(table, r, 'cloudWatchLogs', 'storageGbMonth'),
    `${assumptions.logIngestGbPerMonth} GB/month kept ${round(storedMonths, 2)} months (retention ${env.logRetentionDays} days, after ${assumptions.logHorizonDays} days)`,
  );
  add('S3 lake (Standard)', assumptions.lakeGb, 'GB-months', servicePrice(table, r, 's3', 'standardGbMonth'));
  const notices: string[] = [];
  if (env.serving) {
    const price = instancePrice(table, r, 'sagemakerHostingHourly', env.serving.instanceType);
    add(
      `serving endpoint: ${env.serving.minInstances} x ${env.serving.instanceType} (its minimum)`,
      env.serving.minInstances * hours,
      'instance-hours',
      price,
      env.serving.minInstances === 0
        ? 'scales to zero when idle; each instance awake costs its hourly rate'
        : 'production keeps at least one instance',
    );
    if (env.serving.minInstances === 0)
      notices.push(
        `the serving endpoint scales to zero: while awake it costs ${usd(price.usd)} per instance-hour (up to ${env.serving.maxInstances} instance(s): ${usd(price.usd * env.serving.maxInstances)}/h)`,
      );
  } else notices.push('no serving section in the stage config: no serving endpoint');
  if (env.capacityMode === 'reservation' || env.capacityMode === 'capacity-block')
    notices.push(
      `training.capacity.mode ${env.capacityMode}: the reservation or block is billed for its whole window whether jobs run or not; not in this total`,
    );
  const total = sum(lines);
  return {
    kind: 'env',
    title: `idle environment ${env.envId} (${env.stage}, ${env.region})`,
    region: r,
    period: 'month',
    lines,
    totalUsd: total,
    facts: [
      { name: 'per hour', value: usd(total / hours) },
      { name: 'per month', value: usd(total) },
      { name: 'hours per month', value: String(hours) },
    ],
    assumptions: [
      {
        name: 'interface endpoints',
        value: `${env.interfaceEndpoints} services x ${env.availabilityZones} AZs`,
        origin: 'INTERFACE_ENDPOINTS in lib/constructs/isolated-vpc.ts, one per endpoint subnet (network.maxAzs)',
      },
      {
        name: 'KMS keys',
        value: String(env.kmsKeys.length),
        origin: 'PLATFORM_KEYS in lib/cost/estimate.ts (the PlatformKey of each stack the stage builds)',
      },
      {
        name: 'serving minimum',
        value: env.serving ? `${env.serving.minInstances} instance(s)` : 'no endpoint',
        origin: 'production keeps one instance; experiments scale to zero (lib/stacks/serving-stack.ts)',
      },
      {
        name: 'log ingestion while idle',
        value: `${assumptions.logIngestGbPerMonth} GB/month`,
        origin: 'assumed: flow logs of an idle VPC, the trail, Lambda logs; measure with CloudWatch IncomingBytes',
        flag: '--log-gb-per-month',
      },
      {
        name: 'log storage horizon',
        value: `${assumptions.logHorizonDays} days`,
        origin: 'storage accumulates until the retention; the figure is the month after this many days',
        flag: '--log-horizon-days',
      },
      { name: 'lake size', value: `${assumptions.lakeGb} GB`, origin: 'given (default 0)', flag: '--lake-gb' },
      {
        name: 'endpoint traffic while idle',
        value: `${assumptions.endpointGbPerMonth} GB/month`,
        origin: 'assumed: nothing runs',
        flag: '--endpoint-gb-per-month',
      },
      ...(env.cloudTrail
        ? [
            {
              name: 'S3 data events while idle',
              value: String(assumptions.s3DataEventsPerMonth),
              origin: 'assumed: nothing reads or writes the lake',
              flag: '--s3-events-per-month',
            },
          ]
        : []),
    ],
    notices,
    notCounted: [
      '$0 while idle: the GPU compute environment (0 vCPUs), the Fargate queue, Lambda, Step Functions, the S3 and DynamoDB gateway endpoints; there is no NAT gateway',
      'KMS requests (20,000 a month are free), KMS key rotation ($1/month per rotated backing key from the second year), CloudWatch alarms and dashboards, SSM parameters, ECR image storage, S3 requests',
    ],
    prices: { retrieved: table.retrieved, source: table.source, used: dedupe(used) },
  };
}

// -------------------------------------------------------------------------------------- evaluation

/** A model or judge of a run spec. */
export interface EvalModel {
  readonly provider: string;
  readonly modelId: string;
  /** The model's region; absent: the run's. */
  readonly region?: string;
}

/** An evaluation run, as the cost sees it. */
export interface EvalRun {
  readonly region: string;
  readonly benchmark: string;
  readonly items: number;
  /** The benchmark's task; null: unknown (a judge in the spec is then assumed to be used). */
  readonly task: string | null;
  readonly models: readonly EvalModel[];
  readonly judge: EvalModel | null;
  readonly shardSize: number;
  readonly workerConcurrency: number;
  readonly workerMemoryMb: number;
}

/** Token counts per call, each with where it comes from. */
export interface EvalTokens {
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly judgePromptTokens: number;
  readonly judgeCompletionTokens: number;
  /** Where each figure comes from, shown as the assumption's origin. */
  readonly origins: {
    readonly promptTokens: string;
    readonly completionTokens: string;
    readonly judgePromptTokens: string;
    readonly judgeCompletionTokens: string;
  };
}

/** Timings of the fan-out; every one is overridable. */
export interface EvalAssumptions {
  /** Seconds one provider call takes (the worker waits on it). */
  readonly secondsPerCall: number;
  /** Seconds the Plan Lambda runs. */
  readonly planSeconds: number;
  /** Seconds the Aggregate Lambda runs. */
  readonly aggregateSeconds: number;
}

/** Defaults: a few seconds per LLM call; plan and aggregate take tens of seconds (not measured). */
export const DEFAULT_EVAL_ASSUMPTIONS: EvalAssumptions = { secondsPerCall: 3, planSeconds: 30, aggregateSeconds: 60 };

/** Memory of the Plan and Aggregate Lambdas (lib/constructs/eval-functions.ts). */
export const EVAL_PLAN_MEMORY_MB = 1024;
export const EVAL_AGGREGATE_MEMORY_MB = 3008;

/** The itemized cost of one evaluation run. */
export function estimateEval(
  run: EvalRun,
  tokens: EvalTokens,
  table: PriceTable,
  assumptions: EvalAssumptions = DEFAULT_EVAL_ASSUMPTIONS,
): CostEstimate {
  const used: UsedPrice[] = [];
  const lines: CostLine[] = [];
  const notCounted: string[] = [];
  const notices: string[] = [];
  const perToken = (item: string, calls: number, tokensPerCall: number, price: UsedPrice): void => {
    used.push(price);
    const total = calls * tokensPerCall;
    lines.push({
      item,
      quantity: total / 1000,
      unit: '1k tokens',
      unitUsd: price.usd,
      usd: (total / 1000) * price.usd,
      price: price.ref,
      verified: price.verified,
      detail: `${count(calls)} calls x ${count(tokensPerCall)} tokens`,
    });
  };
  const providerCost = (model: EvalModel, calls: number, input: number, output: number, role: string): void => {
    if (model.provider !== 'bedrock') {
      notCounted.push(
        model.provider === 'sagemaker'
          ? `${role} ${model.modelId} (sagemaker): the endpoint's instance-hours while the run is awake, not per token (see dapt cost env)`
          : `${role} ${model.modelId} (${model.provider}): not billed through AWS`,
      );
      return;
    }
    const prices = bedrockPrices(table, model.region ?? run.region, model.modelId);
    perToken(`${role} ${model.modelId}: input`, calls, input, prices.input);
    perToken(`${role} ${model.modelId}: output`, calls, output, prices.output);
  };
  for (const model of run.models) providerCost(model, run.items, tokens.promptTokens, tokens.completionTokens, 'model');
  const judged = run.judge !== null && (run.task === null || run.task === 'qa');
  if (run.judge !== null && run.task === null)
    notices.push("the benchmark's task is unknown: the judge is assumed to grade every unit (only task 'qa' uses it)");
  if (run.judge !== null && !judged)
    notices.push(`task '${run.task}' is not scored by a judge: the spec's judge is never called`);
  const units = run.items * run.models.length;
  if (judged && run.judge)
    providerCost(run.judge, units, tokens.judgePromptTokens, tokens.judgeCompletionTokens, 'judge');

  // The fan-out: one worker invocation per shard; a worker runs workerConcurrency units at a time.
  const shards = Math.ceil(units / run.shardSize);
  const callsPerUnit = judged ? 2 : 1;
  let workerSeconds = 0;
  for (let start = 0; start < units; start += run.shardSize) {
    const inShard = Math.min(run.shardSize, units - start);
    workerSeconds += Math.ceil(inShard / run.workerConcurrency) * callsPerUnit * assumptions.secondsPerCall;
  }
  const arm = servicePrice(table, run.region, 'lambda', 'arm64GbSecond');
  const workerGbSeconds = workerSeconds * (run.workerMemoryMb / 1024);
  const sideGbSeconds =
    assumptions.planSeconds * (EVAL_PLAN_MEMORY_MB / 1024) +
    assumptions.aggregateSeconds * (EVAL_AGGREGATE_MEMORY_MB / 1024);
  used.push(arm);
  lines.push({
    item: `Lambda worker: ${shards} shard(s)`,
    quantity: workerGbSeconds,
    unit: 'GB-seconds',
    unitUsd: arm.usd,
    usd: workerGbSeconds * arm.usd,
    price: arm.ref,
    verified: arm.verified,
    detail: `${round(workerSeconds, 0)} s x ${run.workerMemoryMb} MB`,
  });
  lines.push({
    item: 'Lambda plan and aggregate',
    quantity: sideGbSeconds,
    unit: 'GB-seconds',
    unitUsd: arm.usd,
    usd: sideGbSeconds * arm.usd,
    price: arm.ref,
    verified: arm.verified,
    detail: `${assumptions.planSeconds} s x ${EVAL_PLAN_MEMORY_MB} MB + ${assumptions.aggregateSeconds} s x ${EVAL_AGGREGATE_MEMORY_MB} MB`,
  });
  const requests = servicePrice(table, run.region, 'lambda', 'per1mRequests');
  used.push(requests);
  const invocations = shards + 2;
  lines.push({
    item: 'Lambda requests',
    quantity: invocations / 1e6,
    unit: '1M requests',
    unitUsd: requests.usd,
    usd: (invocations / 1e6) * requests.usd,
    price: requests.ref,
    verified: requests.verified,
    detail: `${invocations} invocations (one per shard, plan, aggregate)`,
  });
  const sfn = servicePrice(table, run.region, 'stepFunctions', 'per1kTransitions');
  used.push(sfn);
  const transitions = STATE_TRANSITIONS_PER_RUN + STATE_TRANSITIONS_PER_SHARD * shards;
  lines.push({
    item: 'Step Functions state transitions',
    quantity: transitions / 1000,
    unit: '1k transitions',
    unitUsd: sfn.usd,
    usd: (transitions / 1000) * sfn.usd,
    price: sfn.ref,
    verified: sfn.verified,
    detail: `${STATE_TRANSITIONS_PER_RUN} + ${STATE_TRANSITIONS_PER_SHARD} per shard`,
  });
  return {
    kind: 'eval',
    title: `evaluation run of ${run.benchmark}: ${run.items} items x ${run.models.length} model(s)${judged ? ' + judge' : ''} (${run.region})`,
    region: run.region,
    period: 'run',
    lines,
    totalUsd: sum(lines),
    facts: [
      { name: 'units', value: `${count(units)} (${run.items} items x ${run.models.length} models)` },
      { name: 'shards', value: String(shards) },
      { name: 'provider calls', value: count(units * callsPerUnit) },
    ],
    assumptions: [
      {
        name: 'prompt tokens per item',
        value: count(tokens.promptTokens),
        origin: tokens.origins.promptTokens,
        flag: '--prompt-tokens',
      },
      {
        name: 'completion tokens per item',
        value: count(tokens.completionTokens),
        origin: tokens.origins.completionTokens,
        flag: '--completion-tokens',
      },
      ...(judged
        ? [
            {
              name: 'judge prompt tokens per unit',
              value: count(tokens.judgePromptTokens),
              origin: tokens.origins.judgePromptTokens,
            },
            {
              name: 'judge completion tokens per unit',
              value: count(tokens.judgeCompletionTokens),
              origin: tokens.origins.judgeCompletionTokens,
            },
          ]
        : []),
      {
        name: 'provider call',
        value: `${assumptions.secondsPerCall} s`,
        origin: 'assumed; a real run reports it as the ProviderLatency metric',
        flag: '--seconds-per-call',
      },
      {
        name: 'plan and aggregate',
        value: `${assumptions.planSeconds} s and ${assumptions.aggregateSeconds} s`,
        origin: 'assumed, not measured',
      },
      {
        name: 'state transitions',
        value: `${STATE_TRANSITIONS_PER_RUN} + ${STATE_TRANSITIONS_PER_SHARD} per shard`,
        origin: 'approximation of the state machine (plan, map, aggregate; start, task, end per shard)',
      },
    ],
    notices,
    notCounted: [
      ...notCounted,
      'retries of throttled or failed calls (retry.max_attempts), records already cached from earlier runs (skipped, so cheaper)',
      'S3 requests and storage of shards, records and reports; DynamoDB; CloudWatch Logs of the Lambdas',
    ],
    prices: { retrieved: table.retrieved, source: table.source, used: dedupe(used) },
  };
}

const STATE_TRANSITIONS_PER_RUN = 10;
const STATE_TRANSITIONS_PER_SHARD = 3;

// ----------------------------------------------------------------------------------------- helpers

function sum(lines: readonly CostLine[]): number {
  return lines.reduce((total, line) => total + line.usd, 0);
}

function dedupe(prices: readonly UsedPrice[]): UsedPrice[] {
  return [...new Map(prices.map((p) => [p.ref, p])).values()];
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** `1,234,567`, or `12.3 M` above ten million. */
export function count(value: number): string {
  if (Math.abs(value) >= 1e10) return `${(value / 1e9).toFixed(1)} B`;
  if (Math.abs(value) >= 1e7) return `${(value / 1e6).toFixed(1)} M`;
  return Math.round(value).toLocaleString('en-US');
}

function billions(value: number): string {
  return value >= 1e9 ? `${round(value / 1e9, 2)} B` : `${round(value / 1e6, 1)} M`;
}

function sci(value: number): string {
  return value.toExponential(2);
}

/** `$1,234.56`; amounts under a cent keep two significant digits (`$0.0042`). */
export function usd(value: number): string {
  if (value !== 0 && Math.abs(value) < 0.01) return `$${Number(value.toPrecision(2))}`;
  return `$${value.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
}

/** A unit price as the table has it: `$55.04`, `$2.8026`, `$0.023`, `$0.0000133334`. */
export function unitUsd(value: number): string {
  if (value >= 0.01) return `$${value.toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 4 })}`;
  return `$${value.toFixed(10).replace(/0+$/, '')}`;
}
