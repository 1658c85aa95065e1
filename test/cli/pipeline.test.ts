/** cli/pipeline.ts against moto (SSM, S3, Step Functions, Batch), and its pure parts on crafted inputs. */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { BatchClient } from '@aws-sdk/client-batch';
import { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs';
import { CreateBucketCommand, GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { SageMakerClient } from '@aws-sdk/client-sagemaker';
import {
  CreateStateMachineCommand,
  DescribeExecutionCommand,
  type HistoryEvent,
  ListExecutionsCommand,
  SFNClient,
  StopExecutionCommand,
} from '@aws-sdk/client-sfn';
import { PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { parseRunSpec } from '../../lambda/shared/spec';
import { explainCause, pipelineCommand } from '../../cli/pipeline';
import {
  buildPipelineInput,
  type DeployedPlatform,
  type PipelineInput,
  PipelineInputError,
  pipelineId,
  pipelineProgress,
  type PipelineRequest,
  PLACEHOLDER_MODEL,
} from '../../cli/pipeline-lib';
import { SsmParameterReader } from '../../cli/ssm';
import { jobNameFor, tokenizeJobName, validateTrainerConfig } from '../../cli/train-lib';
import { type Moto, python, startMoto } from '../lambda/helpers';
import { createTrainingStack, fakeModel, tempDir, TINY, useSimpleBatch, writeConfig } from './helpers';

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

const SPEC = { benchmark: { name: 'help-qa-mcq', version: '1.0.0' }, mode: 'letter' };

function spec(over: Record<string, unknown> = {}): ReturnType<typeof parseRunSpec> {
  return parseRunSpec({ models: [{ provider: 'simulated', model_id: PLACEHOLDER_MODEL }], ...SPEC, ...over }, 'spec');
}

const DEPLOYED: DeployedPlatform = {
  region: 'us-east-1',
  buckets: { artifacts: 'artifacts-b', models: 'models-b', datasets: 'datasets-b', eval: 'eval-b' },
  gpuQueueArn: 'arn:gpu',
  cpuQueueArn: 'arn:cpu',
  singleNodeJobDefinition: 'arn:single',
  multiNodeJobDefinition: 'arn:multi',
  tokenizeJobDefinition: 'arn:tokenize',
  dataPrepJobDefinition: 'arn:data-prep',
  endpointName: 'dapt-exp-demo-serving',
  baseComponent: 'dapt-exp-demo-base',
  modelPackageGroup: 'dapt-exp-demo-models',
  image: 'image:1',
  modelDataUrl: 's3://models-b/base/smollm2/',
};

/** Validated once per method (each validation starts the trainer's Python validator). */
const validated = new Map<string, ReturnType<typeof validateTrainerConfig>>();

function request(over: Partial<PipelineRequest> = {}, method: 'full' | 'lora' = 'lora'): PipelineRequest {
  if (!validated.has(method)) {
    const file = writeConfig(dir, `${method}.yaml`, { experiment: 'demo', model: tiny, method });
    validated.set(method, validateTrainerConfig(file));
  }
  return {
    stage: 'experiment',
    namePrefix: 'dapt-exp-demo',
    trainer: validated.get(method)!,
    evaluations: [{ spec: spec(), file: 'mcq.json' }],
    nodes: 1,
    baseline: 'anthropic.claude-3-haiku',
    policy: {},
    project: 'dapt-platform',
    ...over,
  };
}

test('the execution input: base model first, the candidate on its own component, the same job names as dapt train', () => {
  const req = request();
  const { input, uploads } = buildPipelineInput(req, DEPLOYED);
  const id = pipelineId(req);
  assert.equal(input.pipeline_id, id);
  assert.equal(input.ledger_uri, `s3://artifacts-b/runs/demo/pipeline/${id}/ledger`);
  assert.equal(input.tokenize.job_name, tokenizeJobName('demo', req.trainer.bytes));
  assert.equal(input.train.job_name, jobNameFor('demo', req.trainer.bytes));
  assert.equal(input.train.job_definition, 'arn:single');
  assert.deepEqual(
    input.train.environment.map((e) => e.Name),
    ['DAPT_CONFIG', 'DAPT_OUTPUT'],
  );
  assert.equal(
    input.train.environment[1]!.Value,
    's3://models-b/runs',
    'trained models go to the models zone the endpoint reads',
  );
  assert.equal(input.data, undefined);
  assert.equal(input.candidate.request.InferenceComponentName, `dapt-exp-demo-cand-${id}`);
  assert.equal(input.deploy.request.InferenceComponentName, `dapt-exp-demo-demo-${id}`);
  assert.equal(
    input.candidate.request.Specification?.Container?.ArtifactUrl,
    's3://models-b/runs/demo/dapt/final/adapter.tar.gz',
  );
  const uploadedSpec = JSON.parse(uploads.find((u) => u.key === input.evaluations[0]!.spec_key)!.body.toString()) as {
    models: { provider: string; inference_component_name?: string }[];
    run_id: string;
  };
  assert.deepEqual(
    uploadedSpec.models.map((m) => [m.provider, m.inference_component_name]),
    [
      ['sagemaker', 'dapt-exp-demo-base'],
      ['sagemaker', `dapt-exp-demo-cand-${id}`],
      ['bedrock', undefined],
    ],
  );
  assert.equal(uploadedSpec.run_id, input.evaluations[0]!.run_id);
  assert.equal(input.gate.base_label, 'sagemaker:dapt-exp-demo-base@base');
  assert.equal(input.gate.candidate_label, `sagemaker:demo@${id}`);
  assert.deepEqual(input.gate.public_sources, ['kb'], 'a source without a group counts as public');
  assert.equal(input.registration.adapter_url, 's3://models-b/runs/demo/dapt/final/adapter.tar.gz');
  assert.equal(input.registration.gate_inputs_uri, input.gate.output_uri);
});

test('the gate and registration events the CLI builds are what the steps Lambda and the registrar accept', () => {
  const { input } = buildPipelineInput(request(), DEPLOYED);
  // The Python models are the contract (dapt_eval.pipeline_steps.CollectEvent, dapt_eval.registry.Registration).
  const checked = python<{ collect: string; registration: string; check: string; mark: string }>(
    `import json, sys
from dapt_eval.pipeline_steps import EVENT
from dapt_eval.registry import Registration
e = json.load(sys.stdin)
print(json.dumps({
  "collect": type(EVENT.validate_python(e["gate"])).__name__,
  "registration": Registration.model_validate(e["registration"]).group,
  "check": type(EVENT.validate_python({"action": "check", "ledger_uri": e["ledger_uri"], "step": "train"})).__name__,
  "mark": type(EVENT.validate_python({"action": "mark", "ledger_uri": e["ledger_uri"], "step": "train", "execution": "x", "result": {"value": {}}})).__name__,
}))`,
    input,
  );
  assert.deepEqual(checked, {
    collect: 'CollectEvent',
    registration: 'dapt-exp-demo-models',
    check: 'CheckEvent',
    mark: 'MarkEvent',
  });
});

test('multi-node training takes the multi-node definition; a data config adds the data job', () => {
  const req = request({ nodes: 2, data: { bytes: Buffer.from('name: x\n'), fileName: 'data.yaml' } });
  const { input, uploads } = buildPipelineInput(req, DEPLOYED);
  assert.equal(input.train.job_definition, 'arn:multi');
  assert.equal(input.train.nodes, 2);
  assert.equal(input.data?.job_definition, 'arn:data-prep');
  assert.equal(input.data?.job_queue, 'arn:cpu');
  const dataUpload = uploads.find((u) => u.bucket === 'datasets-b');
  assert.ok(dataUpload, 'the data config goes to the datasets zone the data-prep role reads');
  assert.deepEqual(input.data?.environment, [{ Name: 'PIPELINE_CONFIG', Value: `s3://datasets-b/${dataUpload.key}` }]);
});

test('the pipeline id changes with any input and only then', () => {
  const req = request();
  assert.equal(pipelineId(req), pipelineId(request()));
  assert.notEqual(pipelineId(req), pipelineId(request({ nodes: 2 })));
  assert.notEqual(pipelineId(req), pipelineId(request({ baseline: 'other' })));
  assert.notEqual(
    pipelineId(req),
    pipelineId(request({ evaluations: [{ spec: spec({ mode: 'label' }), file: 'x' }] })),
  );
});

test('what would fail later is refused before anything starts, every problem at once', () => {
  const full = request({}, 'full');
  const withModels = spec({ models: [{ provider: 'bedrock', model_id: 'm' }] });
  assert.throws(
    () =>
      buildPipelineInput(
        {
          ...full,
          nodes: 3,
          evaluations: [
            { spec: withModels, file: 'a.json' },
            { spec: spec(), file: 'b.json' },
          ],
        },
        { ...DEPLOYED, multiNodeJobDefinition: 'none' },
      ),
    (err: unknown) => {
      assert.ok(err instanceof PipelineInputError);
      assert.equal(err.problems.length, 4, err.message);
      assert.match(err.message, /trains full weights/);
      assert.match(err.message, /no multi-node job definition/);
      assert.match(err.message, /help-qa-mcq given more than once/);
      assert.match(err.message, /a\.json: 'models' is set by the pipeline/);
      return true;
    },
  );
});

/** A history event of entering a state. */
function entered(name: string): HistoryEvent {
  return { timestamp: new Date(), type: 'TaskStateEntered', id: 0, stateEnteredEventDetails: { name } };
}

test('progress from the history: skipped, done, running (with its job), and not-applicable steps', () => {
  const events: HistoryEvent[] = [
    entered('Check-tokenize'),
    entered('Skip-tokenize'),
    entered('Done-tokenize'),
    entered('Check-train'),
    entered('Run-train'),
    {
      timestamp: new Date(),
      type: 'TaskSubmitted',
      id: 0,
      taskSubmittedEventDetails: {
        resource: 'submitJob.sync',
        resourceType: 'batch',
        output: JSON.stringify({ JobId: 'job-1', JobName: 'demo-abc' }),
      },
    },
  ];
  const progress = pipelineProgress(events, { production: false, hasData: false });
  const states = Object.fromEntries(progress.steps.map((s) => [s.step, s.state]));
  assert.equal(states.data, 'not-applicable');
  assert.equal(states.tokenize, 'skipped');
  assert.equal(states.train, 'running');
  assert.equal(states.evaluate, 'pending');
  assert.equal(states.approve, 'not-applicable', 'experiments deploy without approval');
  assert.deepEqual(progress.current, { step: 'train', jobId: 'job-1' });
  assert.equal(pipelineProgress(events, { production: true, hasData: false }).steps[7]!.state, 'pending');
});

test('a failure names its step and error; a Batch cause shows the job reason and its logs', () => {
  const cause = JSON.stringify({
    JobId: 'j-9',
    StatusReason: 'Essential container in task exited',
    Container: { LogStreamName: 'train/default/abc', Reason: 'OutOfMemoryError' },
  });
  const progress = pipelineProgress(
    [
      entered('Check-train'),
      entered('Failed-train'),
      {
        timestamp: new Date(),
        type: 'ExecutionFailed',
        id: 0,
        executionFailedEventDetails: { error: 'train.States.TaskFailed', cause },
      },
    ],
    { production: false, hasData: false },
  );
  assert.deepEqual(progress.failure && { step: progress.failure.step, error: progress.failure.error }, {
    step: 'train',
    error: 'States.TaskFailed',
  });
  assert.equal(progress.steps.find((s) => s.step === 'train')?.state, 'failed');
  const text = explainCause(cause, 'us-east-1');
  assert.match(text, /job j-9: Essential container in task exited \(OutOfMemoryError\)/);
  assert.match(text, /stream train\/default\/abc/);
  assert.match(text, /batch\/home\?region=us-east-1#jobs\/detail\/j-9/, 'the job in the console');
  assert.match(text, /dapt train logs --job-id j-9/);
  assert.equal(explainCause('plain words', 'us-east-1'), 'plain words');
});

/** The stacks a pipeline reads, as moto sees them: training (helpers), lake buckets, serving, the state machine. */
async function deployPipeline(envId: string): Promise<{ stateMachineArn: string }> {
  await createTrainingStack(moto, envId);
  const ssm = new SSMClient(moto.clientConfig);
  const put = (key: string, value: string) =>
    ssm.send(new PutParameterCommand({ Name: `/dapt/${envId}/${key}`, Value: value, Type: 'String' }));
  for (const zone of ['models', 'datasets', 'eval']) {
    await moto.s3.send(new CreateBucketCommand({ Bucket: `${zone}-${envId}` }));
    await put(`datalake/buckets/${zone}`, `${zone}-${envId}`);
  }
  await put('serving/endpoint-name', `dapt-${envId}-serving`);
  await put('serving/base-component', `dapt-${envId}-base`);
  await put('serving/model-package-group', `dapt-${envId}-models`);
  const sfn = new SFNClient(moto.clientConfig);
  const created = await sfn.send(
    new CreateStateMachineCommand({
      name: `dapt-${envId}-experiment-pipeline`,
      definition: JSON.stringify({ StartAt: 'Wait', States: { Wait: { Type: 'Wait', Seconds: 3600, End: true } } }),
      roleArn: 'arn:aws:iam::123456789012:role/pipeline',
    }),
  );
  await put('pipeline/state-machine-arn', created.stateMachineArn!);
  return { stateMachineArn: created.stateMachineArn! };
}

async function pipeline(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const command = pipelineCommand({
    out: (l) => out.push(l),
    err: (l) => err.push(l),
    pollMs: 10,
    pipelineClients: () => ({
      ssm: new SsmParameterReader({
        region: moto.clientConfig.region,
        endpoint: moto.endpoint,
        credentials: moto.clientConfig.credentials,
      }),
      s3: new S3Client({ ...moto.clientConfig, forcePathStyle: true }),
      sfn: new SFNClient(moto.clientConfig),
      batch: new BatchClient(moto.clientConfig),
      logs: new CloudWatchLogsClient(moto.clientConfig),
      sagemaker: new SageMakerClient(moto.clientConfig),
    }),
  });
  command.exitOverride();
  for (const sub of command.commands) sub.exitOverride();
  let code = 0;
  try {
    await command.parseAsync(argv, { from: 'user' });
  } catch (e) {
    err.push((e as Error).message);
    code = 1;
  }
  return { code, out: out.join('\n'), err: err.join('\n') };
}

test('start against moto: uploads, one execution per request, the next attempt after a stop', async () => {
  const { stateMachineArn } = await deployPipeline('exp-pipe');
  const config = writeConfig(dir, 'pipe.yaml', { experiment: 'pipe', model: tiny, method: 'lora' });
  const specFile = path.join(dir, 'mcq.json');
  writeFileSync(specFile, JSON.stringify(SPEC));
  const args = [
    'start',
    '--stage',
    'experiment',
    '--experiment',
    'pipe',
    '--config',
    config,
    '--eval-spec',
    specFile,
    '--image',
    'image:1',
    '--model-data',
    's3://models-exp-pipe/base/tiny/',
  ];
  const first = await pipeline(...args);
  assert.equal(first.code, 0, first.err + first.out);
  assert.match(first.out, /started pipeline [0-9a-f]{12}/);
  const sfn = new SFNClient(moto.clientConfig);
  const listed = (await sfn.send(new ListExecutionsCommand({ stateMachineArn }))).executions ?? [];
  assert.equal(listed.length, 1);
  const execution = await sfn.send(new DescribeExecutionCommand({ executionArn: listed[0]!.executionArn }));
  const input = JSON.parse(execution.input!) as PipelineInput;
  assert.equal(input.experiment, 'pipe');
  const s3 = new S3Client({ ...moto.clientConfig, forcePathStyle: true });
  const uploadedSpec = await s3.send(
    new GetObjectCommand({ Bucket: 'eval-exp-pipe', Key: input.evaluations[0]!.spec_key }),
  );
  const parsed = parseRunSpec(JSON.parse(await uploadedSpec.Body!.transformToString()), 'uploaded');
  assert.equal(parsed.models.length, 2, 'base and candidate (no --baseline)');
  const configKey = input.train.environment[0]!.Value.replace('s3://artifacts-exp-pipe/', '');
  await s3.send(new GetObjectCommand({ Bucket: 'artifacts-exp-pipe', Key: configKey }));

  const again = await pipeline(...args);
  assert.equal(again.code, 0, again.err);
  assert.match(again.out, /already running/);
  assert.equal(((await sfn.send(new ListExecutionsCommand({ stateMachineArn }))).executions ?? []).length, 1);

  await sfn.send(new StopExecutionCommand({ executionArn: listed[0]!.executionArn }));
  const retry = await pipeline(...args);
  assert.equal(retry.code, 0, retry.err);
  assert.match(retry.out, /started attempt 2 of pipeline/);
  assert.match(retry.out, /skipped/);

  const status = await pipeline('status', '--stage', 'experiment', '--experiment', 'pipe');
  assert.equal(status.code, 0, status.err);
  assert.match(status.out, /pipeline [0-9a-f]{12} of experiment 'pipe': RUNNING/);
  assert.match(status.out, /\[-\] approve/);
});

test('start refuses a stage without the pipeline stack, naming the parameter and the deploy command', async () => {
  await createTrainingStack(moto, 'exp-nopipe');
  const config = writeConfig(dir, 'nopipe.yaml', { experiment: 'nopipe', model: tiny, method: 'lora' });
  const specFile = path.join(dir, 'mcq2.json');
  writeFileSync(specFile, JSON.stringify(SPEC));
  const result = await pipeline(
    'start',
    '--stage',
    'experiment',
    '--experiment',
    'nopipe',
    '--config',
    config,
    '--eval-spec',
    specFile,
  );
  assert.equal(result.code, 1);
  assert.match(
    result.err,
    /SSM parameter \/dapt\/exp-nopipe\/pipeline\/state-machine-arn does not exist: is the pipeline stack/,
  );
  assert.match(result.err, /npx cdk deploy -c stage=experiment -c experiment=nopipe/);
});
