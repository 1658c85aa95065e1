/**
 * The cost arithmetic on crafted inputs with round prices, each expected figure computed by
 * hand in the test; and the counts the environment estimate takes from the code.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../../lib/config/load';
import { INTERFACE_ENDPOINTS } from '../../lib/constructs/isolated-vpc';
import {
  estimateEnvironment,
  estimateEval,
  estimateTraining,
  flopsPerToken,
  idleEnvironment,
  type IdleEnvironment,
  parametersFromName,
  PLATFORM_KEYS,
  type TrainingJob,
  type TrainingStage,
} from '../../lib/cost/estimate';
import { type Price, type PriceTable, PriceTableError } from '../../lib/cost/prices';

const p = (usd: number, verified = true): Price =>
  verified
    ? { usd, verified, by: 'aws', source: 'test' }
    : { usd, verified, by: 'none', source: 'test', note: 'a guess' };

/** Round prices, so the expected figures can be worked out by hand. */
const TABLE: PriceTable = {
  currency: 'USD',
  source: 'test',
  retrieved: '2026-01-01',
  hoursPerMonth: 730,
  regions: {
    'us-east-1': {
      ec2OnDemandHourly: { 'p5.48xlarge': p(10, false) },
      sagemakerHostingHourly: { 'ml.g6e.2xlarge': p(2) },
      fargate: { vcpuHour: p(0.04), gbHour: p(0.004) },
      interfaceEndpoint: { azHour: p(0.01), gbProcessed: p(0.01) },
      kms: { keyMonth: p(1), per10kRequests: p(0.03) },
      cloudTrail: { dataEventsPer100k: p(0.1) },
      cloudWatchLogs: { ingestGb: p(0.5), storageGbMonth: p(0.03) },
      s3: { standardGbMonth: p(0.02) },
      stepFunctions: { per1kTransitions: p(0.025) },
      lambda: { arm64GbSecond: p(0.00001), x86GbSecond: p(0.00002), per1mRequests: p(0.2) },
      bedrockPer1kTokens: {
        'anthropic.claude-3-5-sonnet-20240620-v1:0': { input: p(0.003), output: p(0.015) },
        'meta.llama3-1-8b-instruct-v1:0': { input: p(0.001), output: p(0.002) },
      },
    },
  },
};

const near = (actual: number, expected: number, what: string): void =>
  assert.ok(Math.abs(actual - expected) < 1e-9 * Math.max(1, Math.abs(expected)), `${what}: ${actual} != ${expected}`);

const stage = (overrides: Partial<TrainingStage> = {}): TrainingStage => ({
  name: 'dapt',
  steps: 1125,
  seqLen: 4000,
  microBatchSize: 1,
  gradAccumSteps: 1,
  method: 'full',
  model: null,
  adapterParameters: null,
  ...overrides,
});

const job = (overrides: Partial<TrainingJob> = {}): TrainingJob => ({
  experiment: 'demo',
  stages: [stage()],
  nodes: 2,
  instanceType: 'p5.48xlarge',
  region: 'us-east-1',
  gpusPerNode: 8,
  peakFlopsPerGpu: 1.5e15,
  ...overrides,
});

test('training: 2 nodes x 10 h x $10, plus 2 x 0.5 h of startup', () => {
  // 1125 steps x (4000 x 1 x 1 x 16 GPUs) = 72 M tokens; at 1000 tokens/s on each of 2 nodes: 10 h.
  const estimate = estimateTraining(job(), TABLE, {
    tokensPerSecondPerNode: 1000,
    mfu: 0.4,
    startupHoursPerNode: 0.5,
    defaultParameters: 8e9,
  });
  const [work, startup] = estimate.lines;
  near(work!.quantity, 20, 'instance-hours of the stage');
  near(work!.usd, 200, 'stage cost');
  near(startup!.quantity, 1, 'startup instance-hours');
  near(estimate.totalUsd, 2 * 10 * 10 + 2 * 0.5 * 10, 'total');
  assert.equal(work!.verified, false);
  assert.match(work!.detail!, /1125 steps x 64,000 tokens\/step = 72\.0 M tokens/);
  assert.deepEqual(
    estimate.facts.find((f) => f.name === 'wall clock'),
    { name: 'wall clock', value: '10.5 h' },
  );
  assert.ok(estimate.assumptions.some((a) => a.name === "stage 'dapt' throughput" && a.origin === 'given'));
  assert.deepEqual(
    estimate.prices.used.map((u) => u.ref),
    ['us-east-1 ec2OnDemandHourly p5.48xlarge'],
  );
});

test('training: the throughput follows from the MFU and the FLOPs per token, as the trainer counts them', () => {
  const model = { parameters: 1.2e9, matmulParameters: 1e9, origin: 'test' };
  near(flopsPerToken(model, 'full', null, 4096), 6e9, 'full: 6N');
  near(flopsPerToken(model, 'lora', 1e8, 4096), 4e9 + 6e8, 'LoRA: 4N + 6 N_lora');
  const withAttention = { ...model, attention: { layers: 10, heads: 10, headDim: 100 } };
  near(flopsPerToken(withAttention, 'full', null, 1000), 6e9 + 12 * 10 * 10 * 100 * 1000, 'attention: 12·L·H·Q·T');
  // 0.5 x 1.5e15 FLOP/s x 8 GPUs / 6e9 FLOPs per token = 1e6 tokens/s per node;
  // 1125 x 4000 x 8 GPUs = 36 M tokens on 1 node: 36 s = 0.01 h x $10 = $0.10.
  const estimate = estimateTraining(job({ nodes: 1, stages: [stage({ model })] }), TABLE, {
    mfu: 0.5,
    startupHoursPerNode: 0,
    defaultParameters: 8e9,
  });
  near(estimate.lines[0]!.quantity, 0.01, 'instance-hours');
  near(estimate.totalUsd, 0.1, 'total');
  assert.match(estimate.assumptions.find((a) => a.name === "stage 'dapt' throughput")!.value, /^1,000,000 tokens\/s/);
});

test('training: an unknown model size takes the stated default; limits and capacity modes become notices', () => {
  const estimate = estimateTraining(
    job({
      nodes: 3,
      maxNodes: 2,
      jobTimeoutHours: 1,
      capacityMode: 'capacity-block',
      stages: [stage({ method: 'lora', steps: 100_000 })],
    }),
    TABLE,
    { mfu: 0.4, startupHoursPerNode: 0.25, defaultParameters: 8e9 },
  );
  assert.match(
    estimate.assumptions.find((a) => a.name === "stage 'dapt' model")!.origin,
    /unknown: 8 B parameters assumed/,
  );
  const notices = estimate.notices.join('\n');
  assert.match(notices, /--nodes 3 exceeds training\.maxNodes = 2/);
  assert.match(notices, /exceeds training\.jobTimeoutHours = 1/);
  assert.match(notices, /Capacity Block is paid up front/);
  assert.match(notices, /adapter FLOPs not counted/);
  assert.throws(() => estimateTraining(job({ instanceType: 'p5en.48xlarge' }), TABLE), PriceTableError);
});

test('model sizes read from model names', () => {
  assert.equal(parametersFromName('s3://models/llama-2-7b'), 7e9);
  assert.equal(parametersFromName('s3://models/base/llama-3-1-8b-instruct/'), 8e9);
  assert.equal(parametersFromName('/models/Llama-3.1-70B-Instruct'), 70e9);
  assert.equal(parametersFromName('./SmolLM2-135M-Instruct'), 135e6);
  assert.equal(parametersFromName('s3://models/qwen2.5-0.5b'), 0.5e9);
  assert.equal(parametersFromName('s3://models/mistral-v3'), null);
  assert.equal(parametersFromName('s3://bucket-4b/models/base'), null);
});

const idle = (overrides: Partial<IdleEnvironment> = {}): IdleEnvironment => ({
  stage: 'production',
  envId: 'prod',
  region: 'us-east-1',
  availabilityZones: 2,
  interfaceEndpoints: 10,
  kmsKeys: ['a', 'b', 'c', 'd', 'e'],
  cloudTrail: true,
  serving: { instanceType: 'ml.g6e.2xlarge', minInstances: 1, maxInstances: 4 },
  logRetentionDays: 30,
  capacityMode: 'on-demand',
  ...overrides,
});

test('environment: endpoints x AZs x 730 h, keys, logs, lake and the serving minimum', () => {
  const estimate = estimateEnvironment(idle(), TABLE, {
    logIngestGbPerMonth: 2,
    logHorizonDays: 365,
    lakeGb: 1000,
    endpointGbPerMonth: 10,
    s3DataEventsPerMonth: 200_000,
  });
  const cost = (item: RegExp): number => estimate.lines.find((l) => item.test(l.item))!.usd;
  near(cost(/^interface VPC endpoints: 10 x 2/), 10 * 2 * 730 * 0.01, 'endpoints');
  near(cost(/data processed/), 10 * 0.01, 'endpoint data');
  near(cost(/^KMS keys/), 5 * 1, 'keys');
  near(cost(/CloudTrail/), 2 * 0.1, 'data events');
  near(cost(/Logs ingestion/), 2 * 0.5, 'log ingestion');
  // 30 days of retention: 2 GB/month x 30 / (365/12) months stored.
  near(cost(/Logs storage/), ((2 * 30) / (365 / 12)) * 0.03, 'log storage');
  near(cost(/S3 lake/), 1000 * 0.02, 'lake');
  near(cost(/serving endpoint: 1 x/), 730 * 2, 'serving');
  near(estimate.totalUsd, 146 + 0.1 + 5 + 0.2 + 1 + (60 / (365 / 12)) * 0.03 + 20 + 1460, 'total');
  assert.equal(estimate.period, 'month');
  assert.match(estimate.facts[0]!.value, /^\$/);
});

test('environment: an experiment scales its endpoint to zero and has no trail', () => {
  const estimate = estimateEnvironment(
    idle({
      stage: 'experiment',
      cloudTrail: false,
      serving: { instanceType: 'ml.g6e.2xlarge', minInstances: 0, maxInstances: 1 },
    }),
    TABLE,
  );
  assert.equal(estimate.lines.find((l) => /serving endpoint/.test(l.item))!.usd, 0);
  assert.ok(!estimate.lines.some((l) => /CloudTrail/.test(l.item)));
  assert.match(estimate.notices.join('\n'), /scales to zero: while awake it costs \$2\.00 per instance-hour/);
});

test('environment: the stage configs give AZs, keys, trail and serving minimum; endpoints come from the VPC construct', () => {
  const experiment = idleEnvironment(loadConfig({ stage: 'experiment', experiment: 'cost' }), 10);
  assert.equal(experiment.availabilityZones, 2);
  assert.equal(experiment.serving?.minInstances, 0);
  assert.equal(experiment.cloudTrail, false);
  assert.deepEqual(experiment.kmsKeys, [
    'network-stack/LogsKey',
    'data-lake-stack/LakeKey',
    'eval-stack/EvalKey',
    'training-stack/TrainingKey',
    'serving-stack/ServingKey',
    'pipeline-stack/PipelineKey',
    'lifecycle-stack/LifecycleKey',
  ]);
  const production = idleEnvironment(loadConfig({ stage: 'production' }), 10);
  assert.equal(production.serving?.minInstances, 1);
  assert.ok(production.kmsKeys.includes('audit-stack/TrailKey'));
  assert.equal(
    Object.keys(INTERFACE_ENDPOINTS).length,
    10,
    'the VPC construct changed its endpoints: check docs/operations.md',
  );
});

test('PLATFORM_KEYS counts every PlatformKey the stacks create', () => {
  const dir = path.join(__dirname, '..', '..', 'lib', 'stacks');
  const created = readdirSync(dir)
    .filter((f) => f.endsWith('.ts'))
    .flatMap((file) =>
      [...readFileSync(path.join(dir, file), 'utf8').matchAll(/new PlatformKey\(this, '(\w+)'/g)].map(
        (m) => `${file}/${m[1]}`,
      ),
    );
  const counted = PLATFORM_KEYS.map((k) => `${k.stack}/${k.id}`);
  const missing = created.filter((key) => !counted.includes(key));
  assert.deepEqual(missing, [], 'keys a stack creates that lib/cost/estimate.ts PLATFORM_KEYS does not count');
  // A counted key whose stack is in this checkout must still be created there.
  const present = new Set(readdirSync(dir));
  const stale = counted.filter((key) => present.has(key.split('/')[0]!) && !created.includes(key));
  assert.deepEqual(stale, [], 'PLATFORM_KEYS entries no stack creates');
});

test('evaluation: tokens x prices per model and judge, plus the fan-out', () => {
  const estimate = estimateEval(
    {
      region: 'us-east-1',
      benchmark: 'help-qa@1',
      items: 100,
      task: 'qa',
      models: [
        { provider: 'bedrock', modelId: 'meta.llama3-1-8b-instruct-v1:0' },
        { provider: 'sagemaker', modelId: 'support' },
      ],
      judge: { provider: 'bedrock', modelId: 'anthropic.claude-3-5-sonnet-20240620-v1:0' },
      shardSize: 100,
      workerConcurrency: 10,
      workerMemoryMb: 1024,
    },
    {
      promptTokens: 500,
      completionTokens: 100,
      judgePromptTokens: 1000,
      judgeCompletionTokens: 50,
      origins: { promptTokens: 't', completionTokens: 't', judgePromptTokens: 't', judgeCompletionTokens: 't' },
    },
    TABLE,
    { secondsPerCall: 2, planSeconds: 10, aggregateSeconds: 10 },
  );
  const cost = (item: RegExp): number => estimate.lines.find((l) => item.test(l.item))!.usd;
  near(cost(/model meta\.llama3-1-8b-instruct-v1:0: input/), 100 * 500 * (0.001 / 1000), 'model input');
  near(cost(/model meta\.llama3-1-8b-instruct-v1:0: output/), 100 * 100 * (0.002 / 1000), 'model output');
  // The judge grades every unit: 100 items x 2 models.
  near(cost(/judge .*: input/), 200 * 1000 * (0.003 / 1000), 'judge input');
  near(cost(/judge .*: output/), 200 * 50 * (0.015 / 1000), 'judge output');
  // 2 shards of 100 units, 10 at a time, 2 calls (model, judge) of 2 s: 2 x 10 x 2 x 2 s = 80 s at 1 GB.
  near(cost(/Lambda worker/), 80 * 0.00001, 'worker');
  near(cost(/plan and aggregate/), (10 * 1 + 10 * (3008 / 1024)) * 0.00001, 'plan and aggregate');
  near(cost(/Lambda requests/), (4 / 1e6) * 0.2, 'requests');
  near(cost(/Step Functions/), ((10 + 3 * 2) / 1000) * 0.025, 'transitions');
  assert.match(estimate.notCounted.join('\n'), /support \(sagemaker\): the endpoint's instance-hours/);
});

test('evaluation: a judge on a task it does not score costs nothing; an unpriced model is an error', () => {
  const run = {
    region: 'us-east-1',
    benchmark: 'mcq@1',
    items: 10,
    task: 'mcq',
    models: [{ provider: 'bedrock', modelId: 'meta.llama3-1-8b-instruct-v1:0' }],
    judge: { provider: 'bedrock', modelId: 'anthropic.claude-3-5-sonnet-20240620-v1:0' },
    shardSize: 100,
    workerConcurrency: 16,
    workerMemoryMb: 1024,
  };
  const tokens = {
    promptTokens: 10,
    completionTokens: 1,
    judgePromptTokens: 10,
    judgeCompletionTokens: 1,
    origins: { promptTokens: 't', completionTokens: 't', judgePromptTokens: 't', judgeCompletionTokens: 't' },
  };
  const estimate = estimateEval(run, tokens, TABLE);
  assert.ok(!estimate.lines.some((l) => l.item.startsWith('judge')));
  assert.match(estimate.notices.join('\n'), /task 'mcq' is not scored by a judge/);
  assert.throws(
    () => estimateEval({ ...run, models: [{ provider: 'bedrock', modelId: 'amazon.nova-pro-v1:0' }] }, tokens, TABLE),
    /no Bedrock price for model 'amazon\.nova-pro-v1:0' in us-east-1/,
  );
});
