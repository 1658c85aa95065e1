/**
 * The pure parts of `dapt pipeline` (cli/pipeline.ts): the execution input of the experiment
 * pipeline's state machine (lib/constructs/experiment-pipeline.ts), built from the configs a user
 * gives and what the deployed stacks publish, and the stages of an execution read back from its
 * history. Nothing here calls AWS, so every name and request can be checked on crafted inputs.
 */
import { createHash } from 'node:crypto';
import type { CreateInferenceComponentCommandInput } from '@aws-sdk/client-sagemaker';
import type { HistoryEvent } from '@aws-sdk/client-sfn';
import { canonicalJson } from '../lambda/shared/canonical-json';
import { type RunSpec } from '../lambda/shared/spec';
import { trainerJobEnvironment } from '../lib/config/job-contract';
import { RUNS_PREFIX } from '../lib/config/parameter-names';
import { PIPELINE_STEPS, type PipelineStep } from '../lib/config/pipeline-steps';
import { runIdFor } from './eval-lib';
import type { TrainerConfig } from './train-fit';
import { jobNameFor, STAGE_STEPS_TAG, stageStepsTag, tokenizeJobName } from './train-lib';

/** One Batch job of the pipeline, as the state machine submits it (`submitJob.sync`). */
export interface PipelineJob {
  readonly job_name: string;
  readonly job_queue: string;
  readonly job_definition: string;
  /** Container overrides, `[{Name, Value}]` as Batch takes them. */
  readonly environment: readonly { readonly Name: string; readonly Value: string }[];
  readonly tags: Readonly<Record<string, string>>;
}

/** The training job: single- or multi-node (`nodes` > 1 takes the multi-node definition). */
export interface PipelineTrainJob extends PipelineJob {
  readonly nodes: number;
  /** The node range the container overrides apply to (every node). */
  readonly target_nodes: string;
}

/** The execution input; every field the state machine reads (`$.<field>`). */
export interface PipelineInput {
  readonly pipeline_id: string;
  readonly experiment: string;
  /** Prefix of this pipeline id's step markers (artifacts zone). */
  readonly ledger_uri: string;
  readonly data?: PipelineJob;
  readonly tokenize: PipelineJob;
  readonly train: PipelineTrainJob;
  /** The adapter served while it is evaluated. */
  readonly candidate: { readonly request: CreateInferenceComponentCommandInput };
  readonly evaluations: readonly { readonly benchmark: string; readonly run_id: string; readonly spec_key: string }[];
  /** The steps function's `collect` event (dapt_eval.pipeline_steps.CollectEvent). */
  readonly gate: Record<string, unknown>;
  /** The registrar's event (dapt_eval.registry.Registration). */
  readonly registration: Record<string, unknown>;
  /** The adapter component that serves the model once it passed (and, in production, was approved). */
  readonly deploy: { readonly request: CreateInferenceComponentCommandInput };
}

/** An object `pipeline start` uploads before it starts the execution. */
export interface Upload {
  readonly bucket: string;
  readonly key: string;
  readonly body: Buffer;
  readonly contentType: string;
}

/** What the user gives `pipeline start`. */
export interface PipelineRequest {
  readonly stage: 'production' | 'experiment';
  /** `<prefix>-<envId>`: component and job names start with it. */
  readonly namePrefix: string;
  readonly trainer: { readonly config: TrainerConfig; readonly bytes: Buffer; readonly raw: unknown };
  /** The data pipeline's config (dapt-data), when the pipeline prepares data first. */
  readonly data?: { readonly bytes: Buffer; readonly fileName: string };
  /** Run specs whose `models` the pipeline sets (base, candidate, baseline); one per benchmark. */
  readonly evaluations: readonly { readonly spec: RunSpec; readonly file: string }[];
  readonly nodes: number;
  /** The external baseline (Bedrock model id), evaluated beside the base model and the candidate. */
  readonly baseline?: string;
  /** The promotion gate's policy (dapt_eval.gate.GatePolicy), as JSON. */
  readonly policy: Record<string, unknown>;
  /** `eval` bucket key of the judge's calibration report, for judged benchmarks. */
  readonly judgeCalibrationKey?: string;
  readonly project: string;
}

/** What the deployed stacks publish (SSM), and what the base component runs. */
export interface DeployedPlatform {
  readonly region: string;
  readonly buckets: {
    readonly artifacts: string;
    readonly models: string;
    readonly datasets: string;
    readonly eval: string;
  };
  readonly gpuQueueArn: string;
  readonly cpuQueueArn: string;
  readonly singleNodeJobDefinition: string;
  readonly multiNodeJobDefinition: string;
  readonly tokenizeJobDefinition: string;
  /** Absent: the environment has no data-preparation job definition; a data config is then refused. */
  readonly dataPrepJobDefinition?: string;
  readonly endpointName: string;
  readonly baseComponent: string;
  readonly modelPackageGroup: string;
  /** The serving image and the base model's S3 prefix the registered package points at. */
  readonly image: string;
  readonly modelDataUrl: string;
}

/** A request the pipeline cannot run as given; every problem at once, each naming what to change. */
export class PipelineInputError extends Error {
  override readonly name = 'PipelineInputError';
  constructor(readonly problems: readonly string[]) {
    super(`the pipeline cannot start (${problems.length} problem(s)):\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

/**
 * The pipeline id: a hash of everything the pipeline does (configs, specs, nodes, baseline,
 * policy, environment). The same request is the same id, whose ledger makes a rerun skip what
 * finished; any change is a new id.
 */
export function pipelineId(request: PipelineRequest): string {
  const hash = createHash('sha256');
  hash.update(request.trainer.bytes);
  hash.update('\0');
  if (request.data) hash.update(request.data.bytes);
  hash.update('\0');
  hash.update(
    canonicalJson({
      evaluations: request.evaluations.map((e) => e.spec),
      nodes: request.nodes,
      baseline: request.baseline ?? null,
      policy: request.policy,
      calibration: request.judgeCalibrationKey ?? null,
      env: request.namePrefix,
    }),
  );
  return hash.digest('hex').slice(0, PIPELINE_ID_LENGTH);
}

/** What every attempt's execution name of one pipeline starts with (within Step Functions' 80 characters). */
export function executionPrefix(experiment: string, id: string): string {
  return `${experiment.slice(0, 50)}-${id}-`;
}

/** The execution's name: the pipeline's prefix and the attempt. */
export function executionName(experiment: string, id: string, attempt: number): string {
  return `${executionPrefix(experiment, id)}${attempt}`;
}

/** The input of one execution and the objects to upload first. */
export function buildPipelineInput(
  request: PipelineRequest,
  deployed: DeployedPlatform,
): { input: PipelineInput; uploads: Upload[] } {
  const problems = requestProblems(request, deployed);
  if (problems.length > 0) throw new PipelineInputError(problems);
  const { config, bytes } = request.trainer;
  const experiment = config.experiment;
  const id = pipelineId(request);
  const runPrefix = `${RUNS_PREFIX}${experiment}/`;
  const pipelinePrefix = `${runPrefix}pipeline/${id}/`;
  const uploads: Upload[] = [];
  const tags = { experiment, project: request.project, 'dapt:pipeline': id };

  // The trainer's config beside its outputs; the trainer writes <output>/<experiment>/<stage>/ in the models zone.
  const configKey = `${pipelinePrefix}trainer.yaml`;
  uploads.push({ bucket: deployed.buckets.artifacts, key: configKey, body: bytes, contentType: 'application/yaml' });
  const configUri = `s3://${deployed.buckets.artifacts}/${configKey}`;
  const outputUri = `s3://${deployed.buckets.models}/${RUNS_PREFIX.replace(/\/$/, '')}`;
  const trainerEnvironment = asBatchEnvironment(trainerJobEnvironment(configUri, outputUri));

  let data: PipelineJob | undefined;
  if (request.data) {
    const dataKey = `${pipelinePrefix}${request.data.fileName.endsWith('.json') ? 'data.json' : 'data.yaml'}`;
    uploads.push({
      bucket: deployed.buckets.datasets,
      key: dataKey,
      body: request.data.bytes,
      contentType: 'application/yaml',
    });
    data = {
      job_name: `${experiment.slice(0, 90)}-data-${id}`,
      job_queue: deployed.cpuQueueArn,
      job_definition: deployed.dataPrepJobDefinition!,
      environment: asBatchEnvironment({ PIPELINE_CONFIG: `s3://${deployed.buckets.datasets}/${dataKey}` }),
      tags,
    };
  }
  const tokenize: PipelineJob = {
    job_name: tokenizeJobName(experiment, bytes),
    job_queue: deployed.cpuQueueArn,
    job_definition: deployed.tokenizeJobDefinition,
    environment: trainerEnvironment,
    tags,
  };
  const train: PipelineTrainJob = {
    job_name: jobNameFor(experiment, bytes),
    job_queue: deployed.gpuQueueArn,
    job_definition: request.nodes > 1 ? deployed.multiNodeJobDefinition : deployed.singleNodeJobDefinition,
    environment: trainerEnvironment,
    tags: { ...tags, [STAGE_STEPS_TAG]: stageStepsTag(config) },
    nodes: request.nodes,
    target_nodes: '0:',
  };

  const lastStage = config.stages[config.stages.length - 1]!;
  const final = `s3://${deployed.buckets.models}/${runPrefix}${lastStage.name}/final/`;
  const adapterUrl = `${final}adapter.tar.gz`;
  const candidateName = componentName(request.namePrefix, 'cand', id);
  const deployedName = componentName(request.namePrefix, experiment, id);
  const component = (name: string, role: string): { request: CreateInferenceComponentCommandInput } => ({
    request: {
      InferenceComponentName: name,
      EndpointName: deployed.endpointName,
      Specification: { BaseInferenceComponentName: deployed.baseComponent, Container: { ArtifactUrl: adapterUrl } },
      Tags: [
        { Key: 'experiment', Value: experiment },
        { Key: 'dapt:pipeline', Value: id },
        { Key: 'dapt:role', Value: role },
      ],
    },
  });

  const base = {
    provider: 'sagemaker' as const,
    model_id: deployed.baseComponent,
    revision: 'base',
    endpoint_name: deployed.endpointName,
    inference_component_name: deployed.baseComponent,
  };
  const candidate = {
    provider: 'sagemaker' as const,
    model_id: experiment,
    revision: id,
    endpoint_name: deployed.endpointName,
    inference_component_name: candidateName,
  };
  const baseline = request.baseline
    ? [{ provider: 'bedrock' as const, model_id: request.baseline, revision: 'unpinned', region: deployed.region }]
    : [];
  const evaluations = request.evaluations.map(({ spec }) => {
    // The base model first: it is every paired test's baseline.
    const { run_id: _ignored, ...rest } = spec;
    void _ignored;
    const full = { ...rest, models: [base, candidate, ...baseline] } as RunSpec;
    const runId = runIdFor(full);
    const withId = { ...full, run_id: runId };
    const specKey = `runs/${runId}/spec.json`;
    uploads.push({
      bucket: deployed.buckets.eval,
      key: specKey,
      body: Buffer.from(JSON.stringify(withId, null, 2) + '\n'),
      contentType: 'application/json',
    });
    return { benchmark: spec.benchmark.name, run_id: runId, spec_key: specKey };
  });

  const gateFolder = `s3://${deployed.buckets.artifacts}/${pipelinePrefix}gate/`;
  const gate = {
    action: 'collect',
    eval_bucket: deployed.buckets.eval,
    runs: evaluations.map((e) => ({ benchmark: e.benchmark, run_id: e.run_id })),
    base_label: label(base),
    candidate_label: label(candidate),
    policy: request.policy,
    heldout_before_uri: `${final}heldout_before.json`,
    heldout_after_uri: `${final}heldout.json`,
    public_sources: publicSources(request.trainer.raw),
    ...(request.judgeCalibrationKey
      ? { judge_calibration_uri: `s3://${deployed.buckets.eval}/${request.judgeCalibrationKey}` }
      : {}),
    output_uri: `${gateFolder}gate_inputs.json`,
  };
  const registration = {
    group: deployed.modelPackageGroup,
    gate_inputs_uri: `${gateFolder}gate_inputs.json`,
    report_uri: `${gateFolder}evaluation.json`,
    lineage_uri: `${final}lineage.json`,
    model_data_url: deployed.modelDataUrl,
    adapter_url: adapterUrl,
    image: deployed.image,
    description: `Experiment ${experiment}, pipeline ${id} (stage ${lastStage.name})`.slice(0, 1000),
  };
  return {
    input: {
      pipeline_id: id,
      experiment,
      ledger_uri: `s3://${deployed.buckets.artifacts}/${pipelinePrefix}ledger`,
      ...(data ? { data } : {}),
      tokenize,
      train,
      candidate: component(candidateName, 'candidate'),
      evaluations,
      gate,
      registration,
      deploy: component(deployedName, 'deployed'),
    },
    uploads,
  };
}

/** Everything that would make the execution fail later, found before it starts. */
function requestProblems(request: PipelineRequest, deployed: DeployedPlatform): string[] {
  const problems: string[] = [];
  const stages = request.trainer.config.stages;
  const last = stages[stages.length - 1];
  if (last && last.method.name !== 'lora') {
    problems.push(
      `stage '${last.name}' trains full weights: the pipeline serves LoRA adapters on the endpoint's base model (set method.name: lora in its last stage, or serve full weights with the serving stack's baseModel)`,
    );
  }
  if (request.nodes > 1 && deployed.multiNodeJobDefinition === 'none') {
    problems.push(
      `--nodes ${request.nodes}: this environment has no multi-node job definition (training.maxNodes is 1)`,
    );
  }
  if (request.data && !deployed.dataPrepJobDefinition) {
    problems.push('--data-config: this environment publishes no data-preparation job definition');
  }
  if (request.evaluations.length === 0) problems.push('--eval-spec: give at least one run spec (one per benchmark)');
  const benchmarks = request.evaluations.map((e) => e.spec.benchmark.name);
  const repeated = [...new Set(benchmarks.filter((b, i) => benchmarks.indexOf(b) !== i))];
  if (repeated.length > 0) problems.push(`--eval-spec: benchmark(s) ${repeated.join(', ')} given more than once`);
  for (const { spec, file } of request.evaluations) {
    if (spec.models.length > 0 && !isPlaceholderModels(spec)) {
      problems.push(
        `${file}: 'models' is set by the pipeline (the base model, the candidate, --baseline); leave it out or as []`,
      );
    }
  }
  const judged = request.evaluations.filter((e) => e.spec.judge && !e.spec.judge.allow_uncalibrated);
  for (const { spec, file } of judged) {
    if (!spec.judge?.calibration_report && !request.judgeCalibrationKey) {
      problems.push(`${file}: its judge has no calibration_report (and no --judge-calibration was given)`);
    }
  }
  return problems;
}

/** A spec file may carry a placeholder model so it validates alone; the pipeline replaces it. */
function isPlaceholderModels(spec: RunSpec): boolean {
  return spec.models.every((m) => m.provider === 'simulated' && m.model_id === PLACEHOLDER_MODEL);
}

/** `provider:model_id@revision`, the label the evaluation's comparison uses (dapt_eval.fanout.model_label). */
export function label(model: { provider: string; model_id: string; revision: string }): string {
  return `${model.provider}:${model.model_id}@${model.revision}`;
}

/** `<prefix>-<envId>-<role>-<id>`, cut to SageMaker's 63 characters, keeping the id. */
function componentName(namePrefix: string, role: string, id: string): string {
  const safeRole = role.replace(/[^A-Za-z0-9-]/g, '-');
  const head = `${namePrefix}-${safeRole}`.slice(0, COMPONENT_NAME_MAX - id.length - 1);
  return `${head.replace(/-+$/, '')}-${id}`;
}

/** The last stage's sources that count as public (general ability; `group` unset counts as public). */
function publicSources(raw: unknown): string[] {
  const stages = (raw as { stages?: { data?: { sources?: { name?: string; group?: string | null }[] } }[] }).stages;
  const sources = stages?.[stages.length - 1]?.data?.sources ?? [];
  return sources.filter((s) => s.group !== 'domain' && typeof s.name === 'string').map((s) => s.name!);
}

function asBatchEnvironment(values: Record<string, string>): { Name: string; Value: string }[] {
  return Object.entries(values).map(([Name, Value]) => ({ Name, Value }));
}

/** Where one pipeline stands, read from its execution history. */
export interface PipelineProgress {
  readonly steps: readonly { readonly step: PipelineStep; readonly state: StepState }[];
  /** The step running now, and its own Batch job or evaluation runs, when known. */
  readonly current?: {
    readonly step: PipelineStep;
    readonly jobId?: string;
    readonly evaluationRuns?: readonly string[];
  };
  readonly failure?: { readonly step: string; readonly error: string; readonly cause: string };
  readonly waitingForApproval: boolean;
}

export type StepState = 'pending' | 'running' | 'done' | 'skipped' | 'failed' | 'not-applicable';

/**
 * The stages of an execution from its history events: a step is `done` when its mark ran,
 * `skipped` when the ledger said it finished before, `running` between its check and its mark,
 * `failed` where the failure handler names it. `approve` applies in production only, `data` only
 * when the input has a data job.
 */
export function pipelineProgress(
  events: readonly HistoryEvent[],
  options: { production: boolean; hasData: boolean },
): PipelineProgress {
  const entered = new Set<string>();
  let failure: PipelineProgress['failure'];
  let jobId: string | undefined;
  const evaluationRuns: string[] = [];
  let lastEntered: PipelineStep | undefined;
  for (const event of events) {
    const name = event.stateEnteredEventDetails?.name;
    if (name) {
      entered.add(name);
      const step = stepOfState(name);
      if (step) lastEntered = step;
    }
    const submitted = event.taskSubmittedEventDetails;
    if (submitted?.resourceType === 'batch' && submitted.output) {
      const parsed = safeJson(submitted.output) as { JobId?: string } | undefined;
      if (parsed?.JobId) jobId = parsed.JobId;
    }
    if (submitted?.resourceType === 'states' && submitted.output) {
      const parsed = safeJson(submitted.output) as { ExecutionArn?: string } | undefined;
      if (parsed?.ExecutionArn) evaluationRuns.push(parsed.ExecutionArn.split(':').pop()!);
    }
    const failed = event.executionFailedEventDetails;
    if (failed) {
      const [step, ...error] = (failed.error ?? '').split('.');
      failure = { step: step ?? '', error: error.join('.') || (failed.error ?? ''), cause: failed.cause ?? '' };
    }
  }
  const steps = PIPELINE_STEPS.map((step) => {
    let state: StepState;
    if ((step === 'approve' && !options.production) || (step === 'data' && !options.hasData)) state = 'not-applicable';
    else if (entered.has(`Skip-${step}`)) state = 'skipped';
    else if (entered.has(`Done-${step}`)) state = 'done';
    else if (failure?.step === step) state = 'failed';
    else if (entered.has(`Check-${step}`)) state = 'running';
    else state = 'pending';
    return { step, state };
  });
  const running = steps.find((s) => s.state === 'running');
  const currentStep = running?.step ?? (failure ? undefined : lastEntered);
  return {
    steps,
    ...(running && currentStep
      ? {
          current: {
            step: currentStep,
            ...(currentStep === 'train' || currentStep === 'tokenize' || currentStep === 'data'
              ? jobId
                ? { jobId }
                : {}
              : {}),
            ...(currentStep === 'evaluate' ? { evaluationRuns } : {}),
          },
        }
      : {}),
    ...(failure ? { failure } : {}),
    waitingForApproval: entered.has('WaitForApproval') && !entered.has('Done-approve') && !failure,
  };
}

/** The pipeline step a state belongs to, from the ledger states' names (`Check-train`, `Done-train`). */
function stepOfState(name: string): PipelineStep | undefined {
  const match = /^(?:Check|Done|Skip|Mark|Run)-([a-z]+)$/.exec(name);
  const step = match?.[1];
  return step && (PIPELINE_STEPS as readonly string[]).includes(step) ? (step as PipelineStep) : undefined;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Mark of a step's state in `status`. */
export const STATE_MARKS: Readonly<Record<StepState, string>> = {
  pending: '[ ]',
  running: '[>]',
  done: '[x]',
  skipped: '[=]',
  failed: '[!]',
  'not-applicable': '[-]',
};

/** The placeholder model a spec file may carry (`{"provider": "simulated", "model_id": "set-by-pipeline"}`). */
export const PLACEHOLDER_MODEL = 'set-by-pipeline';
const PIPELINE_ID_LENGTH = 12;
const COMPONENT_NAME_MAX = 63;
