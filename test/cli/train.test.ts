/** cli/train.ts against moto (SSM, Batch, S3, CloudWatch Logs), and its pure parts directly. */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import {
  BatchClient,
  DescribeJobsCommand,
  type JobDetail,
  ListJobsCommand,
  RegisterJobDefinitionCommand,
} from '@aws-sdk/client-batch';
import { PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import {
  CloudWatchLogsClient,
  CreateLogGroupCommand,
  CreateLogStreamCommand,
  PutLogEventsCommand,
} from '@aws-sdk/client-cloudwatch-logs';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import {
  estimateMemory,
  llamaDimensions,
  llamaParameterCount,
  loraParameterCount,
  nodeProblems,
} from '../../cli/train-fit';
import {
  conflictingJobs,
  explainStatus,
  formatStatus,
  jobNameFor,
  nodeCountOverride,
  parseStageSteps,
  runParameterNames,
  stopAction,
  stopJob,
  trainingParameterNames,
  validateTrainerConfig,
} from '../../cli/train-lib';
import { parseTrainerLine, renderLogLines, renderStep } from '../../cli/train-watch';
import { type Moto, startMoto } from '../lambda/helpers';
import { cli, createTrainingStack, fakeModel, LLAMA_70B, tempDir, TINY, useSimpleBatch, writeConfig } from './helpers';

let moto: Moto;
let dir: string;
let tiny: string;

before(async () => {
  moto = await startMoto();
  await useSimpleBatch(moto);
  dir = tempDir();
  tiny = fakeModel(dir, 'tiny', TINY);
});
after(async () => {
  await moto?.stop();
});

const stage = (name: string): string[] => ['--stage', 'experiment', '--experiment', name];

async function jobsNamed(queueArn: string, prefix: string): Promise<string[]> {
  const page = await new BatchClient(moto.clientConfig).send(
    new ListJobsCommand({ jobQueue: queueArn, filters: [{ name: 'JOB_NAME', values: [`${prefix}*`] }] }),
  );
  return (page.jobSummaryList ?? []).map((j) => j.jobName ?? '');
}

async function describe(jobId: string): Promise<JobDetail> {
  const job = (await new BatchClient(moto.clientConfig).send(new DescribeJobsCommand({ jobs: [jobId] }))).jobs?.[0];
  assert.ok(job, `no job ${jobId}`);
  return job;
}

function jobIdOf(out: string): string {
  const match = /^job id: (\S+)$/m.exec(out);
  assert.ok(match, `no job id in:\n${out}`);
  return match[1]!;
}

test('parameter names follow /<prefix>/<envId>/training/... and the lake artifacts bucket', () => {
  const names = trainingParameterNames({ stage: 'production', prefix: 'dapt', region: 'us-east-1' });
  assert.equal(names.gpuQueueArn, '/dapt/prod/training/gpu-queue-arn');
  assert.equal(names.multiNodeJobDefinition, '/dapt/prod/training/job-definitions/multi-node');
  assert.equal(names.artifactsBucket, '/dapt/prod/datalake/buckets/artifacts');
});

test('the same config submitted twice is one job; a changed config is a new job', async () => {
  const stack = await createTrainingStack(moto, 'exp-idem');
  const config = writeConfig(dir, 'idem.yaml', { experiment: 'idem', model: tiny });

  const first = await cli(moto, 'train', '--config', config, ...stage('idem'));
  assert.equal(first.code, 0, first.err);
  assert.match(first.out, /submitted idem-[0-9a-f]{8} on 1 node\(s\)/);
  assert.match(
    first.out,
    /console: https:\/\/us-east-1\.console\.aws\.amazon\.com\/batch\/home\?region=us-east-1#jobs\/detail\//,
  );
  assert.match(first.out, /results: s3:\/\/artifacts-exp-idem\/runs\/idem\/dapt\//);
  const jobId = jobIdOf(first.out);

  const second = await cli(moto, 'train', '--config', config, ...stage('idem'));
  assert.equal(second.code, 0, second.err);
  assert.match(
    second.out,
    /already submitted \(same config, same job name\): idem-[0-9a-f]{8} is SUCCEEDED; not submitting again/,
  );
  assert.equal(jobIdOf(second.out), jobId);
  assert.equal((await jobsNamed(stack.gpuQueueArn, 'idem-')).length, 1);

  // What the job gets: the uploaded config, the output prefix, tags for cost and progress.
  const job = await describe(jobId);
  const env = Object.fromEntries((job.container?.environment ?? []).map((e) => [e.name, e.value]));
  assert.equal(env.DAPT_CONFIG, 's3://artifacts-exp-idem/runs/idem/config.yaml');
  assert.equal(env.DAPT_OUTPUT, 's3://artifacts-exp-idem/runs');
  assert.deepEqual(job.tags, { experiment: 'idem', project: 'dapt-platform', 'stage-steps': 'dapt=100' });
  const uploaded = await moto.s3.send(new GetObjectCommand({ Bucket: stack.bucket, Key: 'runs/idem/config.yaml' }));
  assert.match((await uploaded.Body?.transformToString()) ?? '', /experiment: idem/);

  const changed = writeConfig(dir, 'idem-changed.yaml', { experiment: 'idem', model: tiny, steps: 200 });
  const third = await cli(moto, 'train', '--config', changed, ...stage('idem'));
  assert.equal(third.code, 0, third.err);
  assert.match(third.out, /^submitted idem-/m);
  assert.notEqual(jobIdOf(third.out), jobId);
  assert.equal((await jobsNamed(stack.gpuQueueArn, 'idem-')).length, 2);
});

test('job names are <experiment>-<first 8 hex of sha256(config bytes)>', () => {
  assert.equal(jobNameFor('demo', Buffer.from('a')), 'demo-ca978112');
  assert.equal(jobNameFor('x'.repeat(200), Buffer.from('a')).length, 128);
});

test('a dry run validates and plans but uploads and submits nothing', async () => {
  const stack = await createTrainingStack(moto, 'exp-dry');
  const config = writeConfig(dir, 'dry.yaml', { experiment: 'dry', model: tiny });
  const result = await cli(moto, 'train', '--config', config, ...stage('dry'), '--dry-run');
  assert.equal(result.code, 0, result.err);
  assert.match(result.out, /dry run: would submit dry-[0-9a-f]{8}/);
  assert.deepEqual(await jobsNamed(stack.gpuQueueArn, 'dry-'), []);
});

test('multi-node jobs: refused without a multi-node definition, on Spot and above max-nodes; all problems together', async () => {
  await createTrainingStack(moto, 'exp-mn', { maxNodes: 1, multiNode: false, capacityMode: 'spot' });
  const config = writeConfig(dir, 'mn.yaml', { experiment: 'mn', model: tiny });
  const result = await cli(moto, 'train', '--config', config, ...stage('mn'), '--nodes', '2');
  assert.equal(result.code, 1);
  assert.match(result.err, /the job would not fit \(3 problem\(s\)\)/);
  assert.match(result.err, /--nodes = 2: the stack allows at most max-nodes = 1/);
  assert.match(result.err, /job-definitions\/multi-node = 'none'/);
  assert.match(result.err, /Spot is for single-node jobs only/);
});

test('a multi-node job overrides the node count on the multi-node definition', async () => {
  const stack = await createTrainingStack(moto, 'exp-mn2', { maxNodes: 4 });
  const config = writeConfig(dir, 'mn2.yaml', { experiment: 'mn2', model: tiny });
  const result = await cli(moto, 'train', '--config', config, ...stage('mn2'), '--nodes', '2');
  assert.equal(result.code, 0, result.err);
  assert.match(result.out, /submitted mn2-[0-9a-f]{8} on 2 node\(s\)/);
  const job = await describe(jobIdOf(result.out));
  assert.match(job.jobDefinition ?? '', /train-multi-node/);
  assert.equal((await jobsNamed(stack.gpuQueueArn, 'mn2-')).length, 1);
});

test('Batch overrides numNodes only with an open node range: a closed one is explained', () => {
  assert.equal(nodeCountOverride(4, { numNodes: 4, openRange: false }, 'def'), undefined);
  assert.equal(nodeCountOverride(2, { numNodes: 4, openRange: true }, 'def'), 2);
  assert.equal(nodeCountOverride(2, null, 'def'), 2, 'an unknown layout is left to Batch');
  assert.throws(
    () => nodeCountOverride(2, { numNodes: 4, openRange: false }, 'def'),
    /closed node range of 4 nodes.*use --nodes 4/,
  );
});

test('a 70B full fine-tune on one node is refused with the numbers; LoRA fits', async () => {
  await createTrainingStack(moto, 'exp-big');
  const big = fakeModel(dir, 'llama-70b', LLAMA_70B);
  const full = await cli(
    moto,
    'train',
    '--config',
    writeConfig(dir, 'big.yaml', { experiment: 'big', model: big }),
    ...stage('big'),
  );
  assert.equal(full.code, 1);
  assert.match(full.out, /memory estimate \(parameters: N = V\*h\*\(2 if untied else 1\) \+ L\*/);
  assert.match(
    full.err,
    /stage 'dapt' \(full\): 16 B\/param x 70\.55B params \/ 8 GPUs = 141\.1 GB per GPU \(limit 72\.0 GB = 90% of 80\.0 GB/,
  );
  assert.match(full.err, /try method\.name: lora .*, or more nodes \(--nodes 2/);

  const lora = await cli(
    moto,
    'train',
    '--config',
    writeConfig(dir, 'big-lora.yaml', { experiment: 'big', model: big, method: 'lora' }),
    ...stage('big'),
    '--dry-run',
  );
  assert.equal(lora.code, 0, lora.err);
  assert.match(
    lora.out,
    /stage 'dapt' \(lora\): \(2 B\/param x 70\.55B frozen \+ 16 B\/param x 3\.31B adapter\) \/ 8 GPUs = 24\.3 GB per GPU/,
  );
});

test('an S3 model is not estimated, with a notice', async () => {
  await createTrainingStack(moto, 'exp-s3m');
  const result = await cli(
    moto,
    'train',
    '--config',
    writeConfig(dir, 's3m.yaml', { experiment: 's3m', model: 's3://models/llama' }),
    ...stage('s3m'),
    '--dry-run',
  );
  assert.equal(result.code, 0, result.err);
  assert.match(
    result.out,
    /notice: stages\.0 'dapt': memory estimate skipped \(model\.path = s3:\/\/models\/llama is on S3/,
  );
});

test('LLaMA parameter counts: 70B from its dimensions, tied embeddings counted once', () => {
  const d = llamaDimensions(LLAMA_70B, 'config.json');
  assert.equal(llamaParameterCount(d), 70_553_706_496);
  const tied = llamaDimensions({ ...TINY, tie_word_embeddings: true }, 'tiny');
  assert.equal(llamaParameterCount(tied), 1000 * 64 + 2 * (4 * 64 * 64 + 3 * 64 * 128 + 2 * 64) + 64);
  assert.equal(loraParameterCount(tied, 8, ['q_proj', 'down_proj']), 2 * 8 * (64 + 64 + 128 + 64));
  assert.throws(
    () => llamaDimensions({ hidden_size: 1 }, 'x/config.json'),
    /x\/config\.json: not a LLaMA-style config \(num_hidden_layers/,
  );
  const twoNodes = estimateMemory('s', 'full', 70e9, 0, 2);
  assert.equal(twoNodes.bytesPerGpu, 70e9);
  assert.equal(twoNodes.fits, true, '70 GB per GPU is under 90% of 80 GB');
  assert.equal(estimateMemory('s', 'full', 73e9, 0, 2).fits, false);
});

test("the memory estimate is the trainer's accounting: every case of its conformance file", () => {
  // The trainer's tests measure the tiny cases' allocations on CPU (one process, FSDP2 on two).
  const file = path.join(__dirname, '..', '..', 'containers', 'trainer', 'conformance', 'memory.json');
  const { cases } = JSON.parse(readFileSync(file, 'utf8')) as { cases: MemoryCase[] };
  assert.ok(cases.length >= 5);
  for (const c of cases) {
    const d = llamaDimensions(c.model, c.name);
    const parameters = llamaParameterCount(d);
    const adapter = c.method === 'lora' ? loraParameterCount(d, c.lora.rank, c.lora.target_modules) : 0;
    assert.equal(parameters, c.expect.parameters, c.name);
    assert.equal(adapter, c.expect.adapter_parameters, c.name);
    const estimate = estimateMemory(
      's',
      c.method,
      parameters,
      adapter,
      1,
      {
        precision: c.precision,
        gradAccumSteps: c.grad_accum_steps,
      },
      { gpusPerNode: c.gpus, gpuBytes: 80e9 },
    );
    assert.deepEqual(
      estimate.breakdown,
      {
        weights: c.expect.weights,
        gradients: c.expect.gradients,
        optimizer: c.expect.optimizer,
        accumulation: c.expect.accumulation,
      },
      c.name,
    );
    assert.equal(estimate.bytesPerGpu, c.expect.total, c.name);
  }
});

test('7B LoRA r=256 (issue 14): 23.7 GB on one GPU, and a node holds the unsharded adapter gradients', () => {
  const d = llamaDimensions(LLAMA_2_7B, 'llama-2-7b');
  const adapter = loraParameterCount(d, 256, ALL_PROJECTIONS);
  const one = estimateMemory(
    's',
    'lora',
    llamaParameterCount(d),
    adapter,
    1,
    { precision: 'bf16', gradAccumSteps: 8 },
    { gpusPerNode: 1, gpuBytes: 80e9 },
  );
  assert.match(one.summary, /= 23\.7 GB per GPU/);
  const fp32 = estimateMemory(
    's',
    'lora',
    llamaParameterCount(d),
    adapter,
    1,
    { precision: 'fp32', gradAccumSteps: 8 },
    { gpusPerNode: 1, gpuBytes: 80e9 },
  );
  assert.match(
    fp32.summary,
    /\(4 B\/param x 6\.74B frozen \+ 16 B\/param x 0\.6396B adapter\) \/ 1 GPUs = 37\.2 GB per GPU/,
  );
  const node = estimateMemory('s', 'lora', llamaParameterCount(d), adapter, 1, {
    precision: 'bf16',
    gradAccumSteps: 8,
  });
  assert.match(
    node.summary,
    /\/ 8 GPUs \+ 4 B\/param x 0\.6396B unsharded adapter gradients \(grad_accum_steps 8\) = 5\.5 GB per GPU/,
  );
});

test('node checks need no AWS', () => {
  const limits = { maxNodes: 4, multiNodeJobDefinition: 'arn', capacityMode: 'on-demand' };
  assert.deepEqual(nodeProblems(4, limits, 'gpu'), []);
  assert.match(nodeProblems(2, limits, 'cpu').join(), /Fargate, which has no multi-node jobs/);
  assert.deepEqual(nodeProblems(1, { ...limits, capacityMode: 'spot', multiNodeJobDefinition: 'none' }, 'gpu'), []);
});

test("the trainer's validator problems are relayed verbatim, each naming its key", async () => {
  const bad = path.join(dir, 'bad.yaml');
  writeFileSync(
    bad,
    'experiment: demo\nstages:\n  - name: dapt\n    model: {path: /m, from_stage: x}\n    data: {sources: [{name: a, kind: completion}]}\n    steps: 0\n',
  );
  const result = await cli(moto, 'train', '--config', bad, ...stage('any'));
  assert.equal(result.code, 1);
  assert.match(result.err, /Invalid trainer config '.*bad\.yaml' \(3 problem\(s\)\)/);
  assert.match(result.err, /- stages\.0\.model = .*set exactly one of 'path' and 'from_stage'/);
  assert.match(result.err, /- stages\.0\.data\.sources\.0 = .*set 'paths' or 'manifest'/);
  assert.match(result.err, /- stages\.0\.steps = 0: Input should be greater than or equal to 1/);

  const notYaml = path.join(dir, 'not-yaml.yaml');
  writeFileSync(notYaml, 'experiment: [unclosed\n');
  assert.throws(() => validateTrainerConfig(notYaml), /<root>: not valid YAML/);
  assert.throws(() => validateTrainerConfig(bad, '/nonexistent/.venv/bin/python'), /not found: .*run make install/);
  assert.throws(
    () => validateTrainerConfig(path.join(dir, 'missing.yaml')),
    /--config = .*missing\.yaml: no such file/,
  );
});

test('a missing SSM parameter asks whether the stack is deployed in the region', async () => {
  await createTrainingStack(moto, 'exp-part', { skip: 'datalake/buckets/artifacts' });
  const config = writeConfig(dir, 'ssm.yaml', { experiment: 'ssm', model: tiny });
  const none = await cli(moto, 'train', '--config', config, ...stage('nowhere'));
  assert.equal(none.code, 1);
  assert.match(
    none.err,
    /SSM parameter \/dapt\/exp-nowhere\/training\/max-nodes does not exist: is the experiment training stack \(envId 'exp-nowhere'\) deployed in region us-east-1\?/,
  );
  const partial = await cli(moto, 'train', '--config', config, ...stage('part'));
  assert.match(
    partial.err,
    /\/dapt\/exp-part\/datalake\/buckets\/artifacts does not exist: is the experiment data-lake stack/,
  );
});

test('bad arguments exit with 2 and the usage', async () => {
  for (const argv of [
    ['train'],
    ['train', '--config', 'x.yaml', '--stage', 'staging'],
    ['train', '--config', 'x.yaml', '--stage', 'production', '--nodes', 'two'],
    ['train', '--bogus'],
    ['fly'],
    ['status'],
    ['cancel'],
  ]) {
    const result = await cli(moto, ...argv);
    assert.equal(result.code, 2, `${argv.join(' ')}: ${result.err}`);
    assert.match(result.err, /Usage: train|add --help for usage/, 'says how to get the usage');
  }
  const badExperiment = await cli(
    moto,
    'train',
    '--config',
    'x.yaml',
    '--stage',
    'experiment',
    '--experiment',
    'Bad_Name',
  );
  assert.equal(badExperiment.code, 2);
  assert.match(badExperiment.err, /--experiment = "Bad_Name": must be 1-20 lowercase letters/);
});

test('status by job id and by experiment; cancel of a finished job stops nothing', async () => {
  await createTrainingStack(moto, 'exp-st');
  const submitted = await cli(
    moto,
    'train',
    '--config',
    writeConfig(dir, 'st.yaml', { experiment: 'st', model: tiny }),
    ...stage('st'),
  );
  const jobId = jobIdOf(submitted.out);

  const byId = await cli(moto, 'status', '--job-id', jobId);
  assert.equal(byId.code, 0, byId.err);
  assert.match(byId.out, new RegExp(`^job st-[0-9a-f]{8} \\(${jobId}\\): SUCCEEDED$`, 'm'));
  assert.match(byId.out, /^nodes: 1$/m);
  assert.match(byId.out, /^attempts: 1/m);
  assert.match(byId.out, /^created: \d{4}-.*; started: \d{4}-.*; stopped: \d{4}-/m);

  const byRun = await cli(moto, 'status', '--run', 'st', ...stage('st'));
  assert.equal(byRun.code, 0, byRun.err);
  assert.match(byRun.out, new RegExp(jobId));
  const none = await cli(moto, 'status', '--run', 'other', ...stage('st'));
  assert.equal(none.code, 1);
  assert.match(none.err, /no job of experiment 'other'/);

  const unknown = await cli(moto, 'status', '--job-id', 'no-such-job');
  assert.equal(unknown.code, 1);
  assert.match(unknown.err, /no job 'no-such-job' in region us-east-1: wrong --region/);

  const cancel = await cli(moto, 'cancel', '--job-id', jobId);
  assert.equal(cancel.code, 0, cancel.err);
  assert.match(cancel.out, /is already SUCCEEDED: nothing to stop/);
});

test('cancel queued jobs, terminate running ones', async () => {
  assert.deepEqual(['SUBMITTED', 'PENDING', 'RUNNABLE', 'STARTING', 'RUNNING', 'SUCCEEDED', 'FAILED'].map(stopAction), [
    'cancel',
    'cancel',
    'cancel',
    'terminate',
    'terminate',
    'none',
    'none',
  ]);
  const sent: string[] = [];
  const batch = {
    send: async (command: object) =>
      void sent.push(`${command.constructor.name}:${JSON.stringify((command as { input: unknown }).input)}`),
  } as unknown as BatchClient;
  assert.equal(await stopJob(batch, { jobId: 'j1', status: 'RUNNABLE' } as JobDetail, 'why'), 'cancel');
  assert.equal(await stopJob(batch, { jobId: 'j2', status: 'RUNNING' } as JobDetail, 'why'), 'terminate');
  assert.deepEqual(sent, [
    'CancelJobCommand:{"jobId":"j1","reason":"why"}',
    'TerminateJobCommand:{"jobId":"j2","reason":"why"}',
  ]);
});

test('a second config is refused while a job of the same experiment with another config is unfinished', async () => {
  // moto finishes every job at once, so the running job is a stubbed ListJobs reply.
  const batch = {
    send: async () => ({
      jobSummaryList: [
        { jobId: 'a', jobName: 'demo-11111111', status: 'RUNNING' },
        { jobId: 'b', jobName: 'demo-22222222', status: 'SUCCEEDED' },
        { jobId: 'c', jobName: 'demo-x-33333333', status: 'RUNNING' },
      ],
    }),
  } as unknown as BatchClient;
  const conflicts = await conflictingJobs(batch, 'queue', 'demo', 'demo-44444444');
  assert.deepEqual(
    conflicts.map((j) => j.jobId),
    ['a'],
  );
});

test('status explains capacity waits', () => {
  assert.match(
    explainStatus('RUNNABLE', 'CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - no p5.48xlarge'),
    /waiting for P5 capacity/,
  );
  assert.match(explainStatus('RUNNABLE', undefined), /waiting for a node/);
  const lines = formatStatus({
    jobId: 'j',
    jobName: 'n',
    status: 'RUNNABLE',
    statusReason: 'CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - x',
    nodeProperties: { numNodes: 4, mainNode: 0 },
  } as JobDetail);
  assert.match(lines.join('\n'), /reason: CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY - x -- waiting for P5 capacity/);
  assert.match(lines.join('\n'), /^nodes: 4$/m);
});

const EMF = (step: number, loss: number): string =>
  JSON.stringify({
    _aws: {
      Timestamp: 1,
      CloudWatchMetrics: [{ Namespace: 'DaptPlatform/Training', Dimensions: [['Experiment', 'Stage']], Metrics: [] }],
    },
    Experiment: 'demo',
    Stage: 'dapt',
    loss,
    lr: 2e-5,
    grad_norm: 1.5,
    tokens: 4096,
    tokens_per_s: 123456.7,
    step_time_s: 0.5,
    mfu: 0.4123,
    packing_efficiency: 0.98,
    step,
  });

test("watch parses the trainer's EMF step lines, held-out records and events, and draws progress", () => {
  assert.deepEqual(parseTrainerLine(EMF(50, 2.5)), {
    kind: 'step',
    stage: 'dapt',
    step: 50,
    loss: 2.5,
    lr: 2e-5,
    gradNorm: 1.5,
    tokensPerS: 123456.7,
    mfu: 0.4123,
  });
  assert.deepEqual(parseTrainerLine('{"Stage": "dapt", "heldout_loss/kb": 1.25, "step": 100}'), {
    kind: 'heldout',
    stage: 'dapt',
    step: 100,
    losses: { kb: 1.25 },
  });
  assert.deepEqual(parseTrainerLine('{"event": "resumed", "stage": "dapt", "step": 40}'), {
    kind: 'event',
    event: 'resumed',
    stage: 'dapt',
    fields: { step: 40 },
  });
  assert.equal(parseTrainerLine('NCCL INFO Using network AWS Libfabric'), null);
  assert.equal(parseTrainerLine('{"step": 3}'), null);
  assert.equal(parseTrainerLine('{not json'), null);

  const step = parseTrainerLine(EMF(50, 2.5));
  assert.ok(step?.kind === 'step');
  assert.equal(
    renderStep(step, 100),
    'dapt  [###############...............]  50.0%  step 50/100  loss 2.5000  lr 2.00e-5  123,457 tok/s  MFU 41.2%',
  );
  assert.equal(renderStep(step), 'dapt  step 50  loss 2.5000  lr 2.00e-5  123,457 tok/s  MFU 41.2%');
  assert.deepEqual(parseStageSteps('dapt=100 sft=20 bad'), { dapt: 100, sft: 20 });

  const lines = [EMF(1, 3), 'noise', EMF(2, 2.9), '{"event": "data", "stage": "dapt", "quarantined": 0}', EMF(3, 2.8)];
  assert.equal(renderLogLines(lines, { dapt: 3 }).length, 4);
  const latest = renderLogLines(lines, { dapt: 3 }, true);
  assert.equal(latest.length, 3);
  assert.match(latest[0]!, /step 2\/3/);
  assert.match(latest[2]!, /\[#{30}\] 100\.0% {2}step 3\/3/);
});

test('watch follows a job to its end; logs prints its stream', async () => {
  await createTrainingStack(moto, 'exp-w');
  const submitted = await cli(
    moto,
    'train',
    '--config',
    writeConfig(dir, 'w.yaml', { experiment: 'w', model: tiny, steps: 4 }),
    ...stage('w'),
  );
  const jobId = jobIdOf(submitted.out);
  const job = await describe(jobId);
  const logs = new CloudWatchLogsClient(moto.clientConfig);
  const location = { logGroupName: '/dapt/exp-w/training-jobs', logStreamName: job.container?.logStreamName ?? '' };
  await logs.send(new CreateLogGroupCommand({ logGroupName: location.logGroupName }));
  await logs.send(new CreateLogStreamCommand(location));
  const messages = [EMF(2, 3.1), EMF(4, 2.7), '{"event": "done", "stages": []}'];
  await logs.send(
    new PutLogEventsCommand({
      ...location,
      logEvents: messages.map((message, i) => ({ timestamp: Date.now() + i, message })),
    }),
  );

  const watch = await cli(moto, 'watch', '--job-id', jobId);
  assert.equal(watch.code, 0, watch.err);
  assert.match(watch.out, /SUCCEEDED/);
  assert.match(watch.out, /^dapt {2}\[#{30}\] 100\.0% {2}step 4\/4 {2}loss 2\.7000/m);
  assert.doesNotMatch(watch.out, /step 2\/4/);
  assert.match(watch.out, /event done/);

  const raw = await cli(moto, 'logs', '--job-id', jobId, '--follow');
  assert.equal(raw.code, 0, raw.err);
  assert.equal(raw.out, messages.join('\n'));
  assert.match(raw.err, /log stream \/dapt\/exp-w\/training-jobs \//);
});

test("production jobs use their run stack's job definitions: refused without one, used with one", async () => {
  await createTrainingStack(moto, 'prod');
  const config = writeConfig(dir, 'prodrun.yaml', { experiment: 'prodrun', model: tiny });
  const refused = await cli(moto, 'train', '--config', config, '--stage', 'production', '--dry-run');
  assert.equal(refused.code, 1);
  assert.match(
    refused.err,
    /may write only under runs\/prodrun\/\. Deploy it first: npx cdk deploy -c stage=production -c run=prodrun/,
  );

  // GIVEN what `cdk deploy -c stage=production -c run=prodrun` publishes
  const container = {
    image: 'trainer',
    resourceRequirements: [
      { type: 'VCPU' as const, value: '1' },
      { type: 'MEMORY' as const, value: '512' },
    ],
  };
  const definition = await new BatchClient(moto.clientConfig).send(
    new RegisterJobDefinitionCommand({
      jobDefinitionName: 'dapt-prod-run-prodrun-train-single-node',
      type: 'container',
      containerProperties: container,
    }),
  );
  const ssm = new SSMClient(moto.clientConfig);
  const names = runParameterNames({ stage: 'production', prefix: 'dapt', region: 'us-east-1' }, 'prodrun');
  await ssm.send(
    new PutParameterCommand({ Name: names.singleNode, Value: definition.jobDefinitionArn ?? '', Type: 'String' }),
  );
  await ssm.send(new PutParameterCommand({ Name: names.multiNode, Value: 'none', Type: 'String' }));
  // WHEN submitting, THEN the run's definition (and so its scoped role) is used
  const result = await cli(moto, 'train', '--config', config, '--stage', 'production');
  assert.equal(result.code, 0, result.err);
  assert.match(result.out, /job definitions: run stack: writes only under runs\/prodrun\//);
  assert.match((await describe(jobIdOf(result.out))).jobDefinition ?? '', /run-prodrun-train-single-node/);
});

test('tokenize submits the token-cache job on the CPU queue once per config, with its own copy of the config', async () => {
  const stack = await createTrainingStack(moto, 'exp-tok');
  const config = writeConfig(dir, 'tok.yaml', { experiment: 'tok', model: tiny });
  const first = await cli(moto, 'tokenize', '--config', config, ...stage('tok'));
  assert.equal(first.code, 0, first.err);
  assert.match(first.out, /submitted tok-[0-9a-f]{8}-tokenize to arn:\S+dapt-exp-tok-cpu/);
  assert.match(first.out, /token cache: s3:\/\/artifacts-exp-tok\/runs\/tok\/token-cache\//);
  const job = await describe(jobIdOf(first.out));
  assert.match(job.jobDefinition ?? '', /dapt-exp-tok-tokenize/);
  const env = Object.fromEntries((job.container?.environment ?? []).map((e) => [e.name, e.value]));
  // Not runs/tok/config.yaml: a training job of the experiment may be reading that one.
  assert.match(env.DAPT_CONFIG ?? '', /^s3:\/\/artifacts-exp-tok\/runs\/tok\/tokenize-[0-9a-f]{8}\.yaml$/);
  assert.equal(env.DAPT_OUTPUT, 's3://artifacts-exp-tok/runs');
  const key = (env.DAPT_CONFIG ?? '').replace('s3://artifacts-exp-tok/', '');
  const uploaded = await moto.s3.send(new GetObjectCommand({ Bucket: stack.bucket, Key: key }));
  assert.match((await uploaded.Body?.transformToString()) ?? '', /experiment: tok/);

  const again = await cli(moto, 'tokenize', '--config', config, ...stage('tok'));
  assert.match(again.out, /already submitted \(same config\): tok-[0-9a-f]{8}-tokenize/);
  assert.equal((await jobsNamed(stack.cpuQueueArn, 'tok-')).length, 1);
  assert.equal((await jobsNamed(stack.gpuQueueArn, 'tok-')).length, 0);
});

/** One case of containers/trainer/conformance/memory.json. */
interface MemoryCase {
  readonly name: string;
  readonly model: unknown;
  readonly method: 'full' | 'lora';
  readonly lora: { readonly rank: number; readonly target_modules: string[] };
  readonly gpus: number;
  readonly precision: 'bf16' | 'fp32';
  readonly grad_accum_steps: number;
  readonly expect: Record<
    'parameters' | 'adapter_parameters' | 'weights' | 'gradients' | 'optimizer' | 'accumulation' | 'total',
    number
  >;
}

const LLAMA_2_7B = {
  hidden_size: 4096,
  num_hidden_layers: 32,
  vocab_size: 32000,
  intermediate_size: 11008,
  num_attention_heads: 32,
  num_key_value_heads: 32,
};
const ALL_PROJECTIONS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
