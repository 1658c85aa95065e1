/**
 * The experiment pipeline of a deployed environment: `npx dapt pipeline <command>` (`--help` on each).
 *
 *   dapt pipeline start   --config TRAINER.yaml --eval-spec SPEC.json [--eval-spec ...] [--data-config DATA.yaml]
 *                         [--nodes N] [--baseline BEDROCK_MODEL_ID] [--gate-policy POLICY.json] [--yes] [--dry-run]
 *   dapt pipeline status  [--execution NAME|ARN]     the stages, the current step's own progress
 *   dapt pipeline watch   [--execution NAME|ARN]     the same, until the execution ends
 *   dapt pipeline approve --execution ARN --token T  production: deploy what the gate passed
 *   dapt pipeline reject  --execution ARN --token T [--reason TEXT]
 *
 * `start` validates the trainer config (the trainer's own schema) and every run spec (the Plan
 * Lambda's schema), reads what the stacks publish (SSM), prints the cost estimate (asking above
 * the stage's threshold; `--yes` for automation), uploads the configs and specs, and starts one
 * execution of the state machine at SSM `<root>/pipeline/state-machine-arn`. The pipeline id is a
 * hash of the whole request: `start` again with the same request while it runs reports the running
 * execution; after a failure or a stop it starts the next attempt, which skips every step the
 * ledger marked finished (the trainer is never run twice for the same config).
 *
 * Exit codes: 0 ok, 1 a problem to fix (config, stack not deployed, execution failed), 2 bad arguments.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { BatchClient } from '@aws-sdk/client-batch';
import { CloudWatchLogsClient, GetLogEventsCommand } from '@aws-sdk/client-cloudwatch-logs';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { DescribeInferenceComponentCommand, DescribeModelCommand, SageMakerClient } from '@aws-sdk/client-sagemaker';
import {
  DescribeExecutionCommand,
  type ExecutionListItem,
  GetExecutionHistoryCommand,
  type HistoryEvent,
  ListExecutionsCommand,
  SendTaskFailureCommand,
  SendTaskSuccessCommand,
  SFNClient,
  StartExecutionCommand,
} from '@aws-sdk/client-sfn';
import { Command } from 'commander';
import { parseRunSpec, type RunSpec } from '../lambda/shared/spec';
import { loadConfig } from '../lib/config/load';
import { parameterRoot, platformParameterName, runParameterName } from '../lib/config/parameter-names';
import { checkTrainingSpend } from './cost';
import {
  countRecords,
  envId,
  readRunRecord,
  type Environment,
  environmentOptions,
  progressBar,
  readParameter,
} from './eval-lib';
import {
  buildPipelineInput,
  type DeployedPlatform,
  executionName,
  executionPrefix,
  PLACEHOLDER_MODEL,
  type PipelineInput,
  pipelineId,
  pipelineProgress,
  type PipelineRequest,
  STATE_MARKS,
} from './pipeline-lib';
import { servingParameterNames } from './serve-lib';
import { ParameterNotFound, SsmParameterReader } from './ssm';
import {
  consoleUrl,
  describeJob,
  formatStatus,
  jobDefinitionsFor,
  logLocation,
  parseStageSteps,
  readTrainingStack,
  STAGE_STEPS_TAG,
  tokenizeJobDefinitionFor,
  UsageError,
  UserError,
  validateTrainerConfig,
} from './train-lib';
import { parseTrainerLine } from './train-watch';

/** The AWS clients of one region (tests point them at moto). */
export interface PipelineClients {
  readonly ssm: SsmParameterReader;
  readonly s3: S3Client;
  readonly sfn: SFNClient;
  readonly batch: BatchClient;
  readonly logs: CloudWatchLogsClient;
  readonly sagemaker: SageMakerClient;
}

export interface PipelineIo {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
  /** @default - the regional AWS endpoints with the default credential chain */
  readonly pipelineClients?: (region: string) => PipelineClients;
  /** @default DEFAULT_VENV_PYTHON (the trainer's validator) */
  readonly python?: string;
  /** @default DEFAULT_POLL_MS */
  readonly pollMs?: number;
}

interface PipelineValues {
  stage: 'production' | 'experiment';
  experiment?: string;
  region: string;
  prefix: string;
  config?: string;
  dataConfig?: string;
  evalSpec: string[];
  nodes: string;
  baseline?: string;
  gatePolicy?: string;
  judgeCalibration?: string;
  image?: string;
  modelData?: string;
  yes: boolean;
  dryRun: boolean;
  execution?: string;
  token?: string;
  reason: string;
}

/** The `pipeline` command group. */
export function pipelineCommand(io: PipelineIo): Command {
  const group = new Command('pipeline').description(
    'The experiment pipeline: data, tokens, training, evaluation, gate, registry and deployment as one Step Functions execution',
  );
  const collect = (value: string, previous: string[]): string[] => [...previous, value];
  environmentOptions(
    group
      .command('start')
      .description('Validate the configs and specs, upload them and start the pipeline (once per request)'),
    'experiment',
  )
    .requiredOption('--config <file>', 'trainer config (YAML); its last stage must train a LoRA adapter')
    .requiredOption(
      '--eval-spec <file>',
      'run spec of one benchmark (repeat per benchmark); its models are set by the pipeline',
      collect,
      [],
    )
    .option('--data-config <file>', 'data pipeline config (dapt-data): prepare the data first, on the CPU queue')
    .option('--nodes <n>', 'training nodes (more than 1: the multi-node job definition)', '1')
    .option('--baseline <model-id>', 'an external baseline model on Amazon Bedrock, evaluated beside the base model')
    .option('--gate-policy <file>', 'promotion gate policy (JSON, dapt_eval.gate.GatePolicy); default: its defaults')
    .option('--judge-calibration <key>', "eval bucket key of the judge's calibration report (judged benchmarks)")
    .option('--image <uri>', "serving image the model package names (default: the base component's)")
    .option('--model-data <s3-uri>', "the base model's S3 prefix the package names (default: the base component's)")
    .option('--yes', "start without asking when the cost estimate is above the stage's confirmation threshold", false)
    .option(
      '--dry-run',
      'validate, read the deployed stacks (SSM: needs read credentials) and print the execution input; upload and start nothing',
      false,
    )
    .action(async (values: PipelineValues) => start(values, io));
  environmentOptions(
    group.command('status').description('The stages of an execution and the current step’s own progress'),
    'experiment',
  )
    .option('--execution <name-or-arn>', 'the execution (default: the latest)')
    .action(async (values: PipelineValues) => status(values, io, false));
  environmentOptions(group.command('watch').description('Status until the execution ends'), 'experiment')
    .option('--execution <name-or-arn>', 'the execution (default: the latest)')
    .action(async (values: PipelineValues) => status(values, io, true));
  for (const [name, description] of [
    ['approve', 'Production: approve the deployment a pipeline waits for (the task token from its notification)'],
    ['reject', 'Production: reject it (the pipeline fails, nothing is deployed)'],
  ] as const) {
    environmentOptions(group.command(name).description(description))
      .requiredOption('--execution <arn>', 'the waiting execution')
      .requiredOption('--token <token>', 'the task token in the approval notification')
      .option('--reason <text>', 'recorded with the decision', `${name}d with dapt pipeline ${name}`)
      .action(async (values: PipelineValues) => decide(values, io, name));
  }
  return group;
}

function environmentOf(values: PipelineValues): Environment {
  const env: Environment = {
    stage: values.stage,
    ...(values.experiment ? { experiment: values.experiment } : {}),
    prefix: values.prefix,
    region: values.region,
  };
  try {
    envId(env);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  return env;
}

function clientsOf(io: PipelineIo, region: string): PipelineClients {
  return (
    io.pipelineClients?.(region) ?? {
      ssm: new SsmParameterReader({ region }),
      s3: new S3Client({ region }),
      sfn: new SFNClient({ region }),
      batch: new BatchClient({ region }),
      logs: new CloudWatchLogsClient({ region }),
      sagemaker: new SageMakerClient({ region }),
    }
  );
}

async function start(values: PipelineValues, io: PipelineIo): Promise<void> {
  const env = environmentOf(values);
  const nodes = Number(values.nodes);
  if (!/^\d+$/.test(values.nodes) || nodes < 1)
    throw new UsageError(`--nodes = ${JSON.stringify(values.nodes)}: must be a whole number >= 1`);
  const trainer = validateTrainerConfig(values.config!, io.python);
  io.out(`config ${values.config}: valid (experiment '${trainer.config.experiment}')`);
  const evaluations = values.evalSpec.map((file) => ({ file, spec: readSpec(file) }));
  io.out(`run specs: ${evaluations.map((e) => `${e.spec.benchmark.name}@${e.spec.benchmark.version}`).join(', ')}`);
  const config = loadConfig({ stage: env.stage, ...(env.experiment ? { experiment: env.experiment } : {}) });
  const request: PipelineRequest = {
    stage: env.stage,
    namePrefix: `${env.prefix}-${envId(env)}`,
    trainer,
    ...(values.dataConfig
      ? { data: { bytes: readInput(values.dataConfig, '--data-config'), fileName: path.basename(values.dataConfig) } }
      : {}),
    evaluations,
    nodes,
    ...(values.baseline ? { baseline: values.baseline } : {}),
    policy: values.gatePolicy ? readJsonObject(values.gatePolicy, '--gate-policy') : {},
    ...(values.judgeCalibration ? { judgeCalibrationKey: values.judgeCalibration } : {}),
    project: config.tags.project,
  };
  const id = pipelineId(request);
  const clients = clientsOf(io, env.region);
  const names = pipelineParameterNames(env);
  const stateMachineArn = await clients.ssm.get(names.stateMachineArn).catch((err: unknown) => {
    if (!(err instanceof ParameterNotFound)) throw err;
    throw new UserError(
      `SSM parameter ${names.stateMachineArn} does not exist: is the pipeline stack of envId '${envId(env)}' deployed in region ${env.region}? (with the stage's serving section: npx cdk deploy -c stage=${env.stage}${env.experiment ? ` -c experiment=${env.experiment}` : ''})`,
    );
  });
  const deployed = await readDeployedPlatform(clients, env, trainer.config.experiment, values);
  const { input, uploads } = buildPipelineInput(request, deployed);
  const executions = await executionsOf(clients.sfn, stateMachineArn, executionPrefix(trainer.config.experiment, id));
  const running = executions.find((e) => e.status === 'RUNNING');
  const succeeded = executions.find((e) => e.status === 'SUCCEEDED');
  if (running || succeeded) {
    const found = (running ?? succeeded)!;
    io.out(
      `pipeline ${id} is already ${found.status === 'RUNNING' ? 'running' : 'done'} (same configs and specs): ${found.executionArn}; not starting again`,
    );
    io.out(`follow it: npx dapt pipeline watch --execution ${found.name} ${envFlags(env)}`);
    return;
  }
  await checkTrainingSpend({
    file: values.config!,
    nodes,
    stage: env.stage,
    ...(env.experiment ? { experiment: env.experiment } : {}),
    region: env.region,
    yes: values.yes,
    dryRun: values.dryRun,
    out: io.out,
    validated: trainer.raw,
    ...(io.python ? { python: io.python } : {}),
  });
  const attempt = executions.length + 1;
  const name = executionName(trainer.config.experiment, id, attempt);
  if (values.dryRun) {
    io.out(`dry run: would upload ${uploads.map((u) => `s3://${u.bucket}/${u.key}`).join(', ')}`);
    io.out(`dry run: would start execution ${name} of ${stateMachineArn} with input:`);
    io.out(JSON.stringify(input, null, 2));
    return;
  }
  for (const upload of uploads) {
    await clients.s3.send(
      new PutObjectCommand({
        Bucket: upload.bucket,
        Key: upload.key,
        Body: upload.body,
        ContentType: upload.contentType,
      }),
    );
  }
  const started = await clients.sfn.send(
    new StartExecutionCommand({ stateMachineArn, name, input: JSON.stringify(input) }),
  );
  io.out(
    attempt > 1
      ? `started attempt ${attempt} of pipeline ${id} (the steps earlier attempts finished are skipped): ${started.executionArn}`
      : `started pipeline ${id}: ${started.executionArn}`,
  );
  io.out(
    `candidate: ${String(input.gate.candidate_label)} served as ${input.candidate.request.InferenceComponentName} while it is evaluated`,
  );
  io.out(`follow it: npx dapt pipeline watch --execution ${name} ${envFlags(env)}`);
}

/** A run spec from a file; `models` may be left out (the pipeline sets them). */
function readSpec(file: string): RunSpec {
  const data = readJsonObject(file, '--eval-spec');
  if (data.models === undefined || (Array.isArray(data.models) && data.models.length === 0)) {
    data.models = [{ provider: 'simulated', model_id: PLACEHOLDER_MODEL }];
  }
  try {
    return parseRunSpec(data, file);
  } catch (err) {
    throw new UserError((err as Error).message);
  }
}

function readInput(file: string, flag: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new UsageError(
      `${flag} ${file}: cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
  }
}

function readJsonObject(file: string, flag: string): Record<string, unknown> {
  const text = readInput(file, flag).toString('utf8');
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new UserError(`${flag} ${file}: not JSON (${(err as Error).message})`);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data))
    throw new UserError(`${flag} ${file}: must be a JSON object`);
  return data as Record<string, unknown>;
}

/** SSM parameters `pipeline` reads besides the training and serving ones. */
function pipelineParameterNames(
  env: Environment,
): Record<'stateMachineArn' | 'models' | 'datasets' | 'eval' | 'dataPrep', string> {
  const root = parameterRoot(env.prefix, envId(env));
  return {
    stateMachineArn: platformParameterName(root, 'pipelineStateMachineArn'),
    models: platformParameterName(root, 'modelsBucket'),
    datasets: platformParameterName(root, 'datasetsBucket'),
    eval: platformParameterName(root, 'evalBucket'),
    dataPrep: platformParameterName(root, 'trainingDataPrepJobDefinitionArn'),
  };
}

/** What the deployed stacks publish; the serving image and base model data come from the base component. */
async function readDeployedPlatform(
  clients: PipelineClients,
  env: Environment,
  experiment: string,
  values: PipelineValues,
): Promise<DeployedPlatform> {
  const { ssm } = clients;
  const names = pipelineParameterNames(env);
  const serving = servingParameterNames(env);
  const training = await readTrainingStack(ssm, env);
  const definitions = await jobDefinitionsFor(ssm, env, experiment, training);
  const tokenize = await tokenizeJobDefinitionFor(ssm, env, experiment);
  const root = parameterRoot(env.prefix, envId(env));
  const optional = async (...candidates: string[]): Promise<string | undefined> => {
    for (const name of candidates) {
      try {
        return await ssm.get(name);
      } catch (err) {
        if (!(err instanceof ParameterNotFound)) throw err;
      }
    }
    return undefined;
  };
  // Production: the run stack's data-prep definition (writes under runs/<experiment>/ only).
  const dataPrep =
    env.stage === 'production'
      ? await optional(runParameterName(root, experiment, 'data-prep'))
      : await optional(runParameterName(root, experiment, 'data-prep'), names.dataPrep);
  const endpointName = await readParameter(ssm, serving.endpoint, env);
  const baseComponent = await readParameter(ssm, serving.baseComponent, env);
  let image = values.image;
  let modelDataUrl = values.modelData;
  if (!image || !modelDataUrl) {
    const component = await clients.sagemaker.send(
      new DescribeInferenceComponentCommand({ InferenceComponentName: baseComponent }),
    );
    const model = await clients.sagemaker.send(
      new DescribeModelCommand({ ModelName: component.Specification?.ModelName }),
    );
    image ??= model.PrimaryContainer?.Image;
    modelDataUrl ??=
      model.PrimaryContainer?.ModelDataUrl ?? model.PrimaryContainer?.ModelDataSource?.S3DataSource?.S3Uri;
    if (!image || !modelDataUrl)
      throw new UserError(
        `the base component ${baseComponent} names no ${image ? 'model data' : 'image'}: pass --image and --model-data`,
      );
  }
  return {
    region: env.region,
    buckets: {
      artifacts: training.artifactsBucket,
      models: await readParameter(ssm, names.models, env),
      datasets: await readParameter(ssm, names.datasets, env),
      eval: await readParameter(ssm, names.eval, env),
    },
    gpuQueueArn: training.gpuQueueArn,
    cpuQueueArn: training.cpuQueueArn,
    singleNodeJobDefinition: definitions.singleNode,
    multiNodeJobDefinition: definitions.multiNode,
    tokenizeJobDefinition: tokenize.jobDefinition,
    ...(dataPrep && dataPrep !== 'none' ? { dataPrepJobDefinition: dataPrep } : {}),
    endpointName,
    baseComponent,
    modelPackageGroup: await readParameter(ssm, serving.group, env),
    image,
    modelDataUrl,
  };
}

/** Every execution whose name starts with `prefix`, newest first. */
async function executionsOf(sfn: SFNClient, stateMachineArn: string, prefix: string): Promise<ExecutionListItem[]> {
  const found: ExecutionListItem[] = [];
  let nextToken: string | undefined;
  do {
    const page = await sfn.send(new ListExecutionsCommand({ stateMachineArn, ...(nextToken ? { nextToken } : {}) }));
    found.push(...(page.executions ?? []).filter((e) => e.name?.startsWith(prefix)));
    nextToken = page.nextToken;
  } while (nextToken);
  return found.sort((a, b) => (b.startDate?.getTime() ?? 0) - (a.startDate?.getTime() ?? 0));
}

async function status(values: PipelineValues, io: PipelineIo, follow: boolean): Promise<void> {
  const env = environmentOf(values);
  const clients = clientsOf(io, env.region);
  const stateMachineArn = await readParameter(clients.ssm, pipelineParameterNames(env).stateMachineArn, env);
  const executionArn = await resolveExecution(clients.sfn, stateMachineArn, values.execution);
  let printed = '';
  for (;;) {
    const execution = await clients.sfn.send(new DescribeExecutionCommand({ executionArn }));
    const input = JSON.parse(execution.input ?? '{}') as PipelineInput;
    const events = await historyOf(clients.sfn, executionArn);
    const progress = pipelineProgress(events, { production: env.stage === 'production', hasData: !!input.data });
    const lines = [
      `pipeline ${input.pipeline_id ?? '?'} of experiment '${input.experiment ?? '?'}': ${execution.status ?? 'UNKNOWN'} (${execution.name})`,
    ];
    const applicable = progress.steps.filter((s) => s.state !== 'not-applicable');
    const finished = applicable.filter((s) => s.state === 'done' || s.state === 'skipped').length;
    lines.push(`${progressBar(finished, applicable.length)}  ${finished} / ${applicable.length} steps`);
    for (const { step, state } of progress.steps) {
      lines.push(`  ${STATE_MARKS[state]} ${step}${state === 'skipped' ? ' (finished by an earlier attempt)' : ''}`);
    }
    if (progress.current) lines.push(...(await currentStepLines(clients, env, input, progress.current)));
    if (progress.waitingForApproval)
      lines.push('waiting for approval: the notification carries the command (npx dapt pipeline approve ...)');
    if (progress.failure) {
      lines.push(`FAILED at ${progress.failure.step}: ${progress.failure.error}`);
      lines.push(`  cause: ${explainCause(progress.failure.cause, env.region)}`);
    }
    const text = lines.join('\n');
    if (text !== printed) {
      if (follow) io.out(`-- ${new Date().toISOString()}`);
      io.out(text);
      printed = text;
    }
    if (!follow || execution.status !== 'RUNNING') {
      if (execution.status === 'FAILED' || execution.status === 'TIMED_OUT' || execution.status === 'ABORTED')
        throw new UserError(`execution ${execution.name} ${execution.status}`);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, io.pollMs ?? DEFAULT_POLL_MS));
  }
}

/** The execution named, or by ARN, or the latest of the state machine. */
async function resolveExecution(sfn: SFNClient, stateMachineArn: string, given: string | undefined): Promise<string> {
  if (given?.startsWith('arn:')) return given;
  if (given) return `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${given}`;
  const latest = (await executionsOf(sfn, stateMachineArn, ''))[0];
  if (!latest?.executionArn)
    throw new UserError(`no execution of ${stateMachineArn} yet: start one with dapt pipeline start`);
  return latest.executionArn;
}

async function historyOf(sfn: SFNClient, executionArn: string): Promise<HistoryEvent[]> {
  const events: HistoryEvent[] = [];
  let nextToken: string | undefined;
  do {
    const page = await sfn.send(
      new GetExecutionHistoryCommand({ executionArn, maxResults: 1000, ...(nextToken ? { nextToken } : {}) }),
    );
    events.push(...(page.events ?? []));
    nextToken = page.nextToken;
  } while (nextToken);
  return events;
}

/** The running step's own progress: its Batch job (and the trainer's latest step), or its evaluation runs. */
async function currentStepLines(
  clients: PipelineClients,
  env: Environment,
  input: PipelineInput,
  current: NonNullable<ReturnType<typeof pipelineProgress>['current']>,
): Promise<string[]> {
  const lines: string[] = [];
  if (current.jobId) {
    const job = await describeJob(clients.batch, current.jobId, env.region);
    lines.push(`current step ${current.step}: ${formatStatus(job)[0]}`);
    if (current.step === 'train') {
      const totals = parseStageSteps(job.tags?.[STAGE_STEPS_TAG]);
      const latest = await latestTrainerStep(clients, job, env.region);
      if (latest) {
        const total = latest.stage ? totals[latest.stage] : undefined;
        lines.push(
          `  training${latest.stage ? ` stage ${latest.stage}` : ''}: step ${latest.step}${total ? ` / ${total} ${progressBar(latest.step, total)}` : ''}, loss ${latest.loss.toFixed(4)}`,
        );
      }
    }
    lines.push(`  logs: npx dapt train logs --job-id ${current.jobId} --region ${env.region}`);
  }
  if (current.step === 'evaluate') {
    for (const run of input.evaluations ?? []) {
      const plan = await readRunRecord(clients.s3, evalBucketOf(input), run.run_id);
      if (!plan) {
        lines.push(`  ${run.benchmark} (${run.run_id}): planning`);
        continue;
      }
      const done = await countRecords(clients.s3, evalBucketOf(input), plan.cache_keys);
      lines.push(
        `  ${run.benchmark}: ${progressBar(done, plan.expected_units)}  ${done} / ${plan.expected_units} units`,
      );
    }
  }
  return lines;
}

/** The trainer's latest step line in its log stream (the last page only). */
async function latestTrainerStep(
  clients: PipelineClients,
  job: Awaited<ReturnType<typeof describeJob>>,
  region: string,
): Promise<{ stage?: string; step: number; loss: number } | undefined> {
  let location: { logGroup: string; logStream: string };
  try {
    location = await logLocation(clients.batch, job, region);
  } catch (err) {
    if (err instanceof UserError) return undefined; // not started yet
    throw err;
  }
  const page = await clients.logs.send(
    new GetLogEventsCommand({
      logGroupName: location.logGroup,
      logStreamName: location.logStream,
      startFromHead: false,
      limit: 200,
    }),
  );
  for (const event of [...(page.events ?? [])].reverse()) {
    const line = parseTrainerLine(event.message ?? '');
    if (line?.kind === 'step')
      return { ...(line.stage ? { stage: line.stage } : {}), step: line.step, loss: line.loss };
  }
  return undefined;
}

function evalBucketOf(input: PipelineInput): string {
  return String(input.gate?.eval_bucket ?? '');
}

/**
 * A failure's cause in plain words: a Batch job's cause is the job description (JSON), from which
 * its status reason and log stream (as a console link) are shown; other causes as they are.
 */
export function explainCause(cause: string, region: string): string {
  let job:
    { JobId?: string; StatusReason?: string; Container?: { LogStreamName?: string; Reason?: string } } | undefined;
  try {
    job = JSON.parse(cause) as typeof job;
  } catch {
    return cause;
  }
  if (!job?.JobId) return cause;
  const stream = job.Container?.LogStreamName;
  return [
    `job ${job.JobId}: ${job.StatusReason ?? 'no reason given'}${job.Container?.Reason ? ` (${job.Container.Reason})` : ''}`,
    `job: ${consoleUrl(region, job.JobId)}${stream ? ` (log stream ${stream})` : ''}`,
    `logs: npx dapt train logs --job-id ${job.JobId}`,
  ].join('; ');
}

async function decide(values: PipelineValues, io: PipelineIo, decision: 'approve' | 'reject'): Promise<void> {
  const env = environmentOf(values);
  const { sfn } = clientsOf(io, env.region);
  const execution = await sfn.send(new DescribeExecutionCommand({ executionArn: values.execution }));
  if (execution.status !== 'RUNNING')
    throw new UserError(`execution ${execution.name} is ${execution.status}: it waits for no decision`);
  if (decision === 'approve') {
    await sfn.send(
      new SendTaskSuccessCommand({
        taskToken: values.token,
        output: JSON.stringify({ approved: true, reason: values.reason, by: process.env.USER ?? 'unknown' }),
      }),
    );
    io.out(`approved: ${execution.name} deploys the model now`);
  } else {
    await sfn.send(
      new SendTaskFailureCommand({ taskToken: values.token, error: 'Rejected', cause: values.reason.slice(0, 32_000) }),
    );
    io.out(`rejected: ${execution.name} fails at the approval; nothing is deployed`);
  }
}

function envFlags(env: Environment): string {
  return `--stage ${env.stage}${env.experiment ? ` --experiment ${env.experiment}` : ''} --region ${env.region}`;
}

const DEFAULT_POLL_MS = 30_000;
