/**
 * The AWS-facing parts of `dapt train` (cli/train.ts), kept apart so they can be tested with moto: the stack's
 * SSM parameters, the trainer's own config validator, idempotent job submission, status, stop and
 * log reading.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import {
  type BatchClient,
  CancelJobCommand,
  DescribeJobDefinitionsCommand,
  DescribeJobsCommand,
  type JobDefinition,
  type JobDetail,
  type JobStatus,
  type JobSummary,
  type KeyValuePair,
  ListJobsCommand,
  SubmitJobCommand,
  TerminateJobCommand,
} from '@aws-sdk/client-batch';
import { type CloudWatchLogsClient, GetLogEventsCommand } from '@aws-sdk/client-cloudwatch-logs';
import {
  parameterRoot,
  platformParameterName,
  type PlatformParameterKey,
  runParameterName,
} from '../lib/config/parameter-names';
import { ExperimentNameSchema, NAME_RULE_TEXT } from '../lib/config/schema';
import { envId, type Environment } from './eval-lib';
import { ParameterNotFound, type SsmParameterReader } from './ssm';
import { type StackLimits, type TrainerConfig, TrainerConfigSchema } from './train-fit';

/** Bad arguments: exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** A problem the user can fix (config, fit, missing stack, unknown job): exit code 1. */
export class UserError extends Error {
  override readonly name = 'UserError';
}

/** SSM parameter names the training CLI reads (published by TrainingStack and DataLakeStack). */
export function trainingParameterNames(env: Environment): Record<keyof TrainingStack, string> {
  const root = parameterRoot(env.prefix, envId(env));
  const name = (key: PlatformParameterKey): string => platformParameterName(root, key);
  return {
    gpuQueueArn: name('trainingGpuQueueArn'),
    cpuQueueArn: name('trainingCpuQueueArn'),
    singleNodeJobDefinition: name('trainingSingleNodeJobDefinitionArn'),
    multiNodeJobDefinition: name('trainingMultiNodeJobDefinitionArn'),
    maxNodes: name('trainingMaxNodes'),
    capacityMode: name('trainingCapacityMode'),
    artifactsBucket: name('artifactsBucket'),
  };
}

/** What the deployed training stack (and the lake's artifacts bucket) offers. */
export interface TrainingStack extends StackLimits {
  readonly gpuQueueArn: string;
  readonly cpuQueueArn: string;
  readonly singleNodeJobDefinition: string;
  readonly artifactsBucket: string;
}

/** Reads every parameter; a missing one means the stack is not deployed there (or in another region). */
export async function readTrainingStack(ssm: SsmParameterReader, env: Environment): Promise<TrainingStack> {
  const names = trainingParameterNames(env);
  const read = async (key: keyof TrainingStack): Promise<string> => {
    try {
      return await ssm.get(names[key]);
    } catch (err) {
      if (!(err instanceof ParameterNotFound)) throw err;
      const stack = key === 'artifactsBucket' ? 'data-lake' : 'training';
      throw new UserError(
        `SSM parameter ${names[key]} does not exist: is the ${env.stage} ${stack} stack (envId '${envId(env)}') deployed in region ${env.region}? (set --region or AWS_REGION)`,
        { cause: err },
      );
    }
  };
  const maxNodes = Number(await read('maxNodes'));
  if (!Number.isInteger(maxNodes) || maxNodes < 1)
    throw new UserError(`SSM parameter ${names.maxNodes} = ${JSON.stringify(maxNodes)}: must be a whole number >= 1`);
  return {
    gpuQueueArn: await read('gpuQueueArn'),
    cpuQueueArn: await read('cpuQueueArn'),
    singleNodeJobDefinition: await read('singleNodeJobDefinition'),
    multiNodeJobDefinition: await read('multiNodeJobDefinition'),
    maxNodes,
    capacityMode: await read('capacityMode'),
    artifactsBucket: await read('artifactsBucket'),
  };
}

/** Where a run stack (`cdk deploy -c run=NAME`) publishes its job definitions (lib/stacks/run-stack.ts). */
export function runParameterNames(env: Environment, experiment: string): { singleNode: string; multiNode: string } {
  const root = parameterRoot(env.prefix, envId(env));
  return {
    singleNode: runParameterName(root, experiment, 'single-node'),
    multiNode: runParameterName(root, experiment, 'multi-node'),
  };
}

/**
 * The job definitions a job of `experiment` must use. A run stack's definitions carry a job role
 * that may write only under `runs/<experiment>/`; production refuses to run without one. In an
 * experiment stage the environment's own definitions are used when there is none: the whole
 * environment already belongs to one experiment.
 */
export async function jobDefinitionsFor(
  ssm: SsmParameterReader,
  env: Environment,
  experiment: string,
  stack: TrainingStack,
): Promise<{ singleNode: string; multiNode: string; scope: string }> {
  const names = runParameterNames(env, experiment);
  try {
    const singleNode = await ssm.get(names.singleNode);
    const multiNode = await ssm.get(names.multiNode);
    return { singleNode, multiNode, scope: `run stack: writes only under runs/${experiment}/` };
  } catch (err) {
    if (!(err instanceof ParameterNotFound)) throw err;
  }
  if (env.stage === 'production') {
    if (!ExperimentNameSchema.safeParse(experiment).success) {
      throw new UserError(
        `experiment = ${JSON.stringify(experiment)}: in production it names a run stack, so it must be ${NAME_RULE_TEXT}`,
      );
    }
    throw new UserError(
      `SSM parameter ${names.singleNode} does not exist: in production every experiment runs with its own job role, which may write only under runs/${experiment}/. Deploy it first: npx cdk deploy -c stage=production -c run=${experiment} (region ${env.region})`,
    );
  }
  return {
    singleNode: stack.singleNodeJobDefinition,
    multiNode: stack.multiNodeJobDefinition,
    scope: `environment ${envId(env)}: the experiment stage's own buckets`,
  };
}

/**
 * The job definition that fills the shared token cache for `experiment` (CPU queue): the run
 * stack's, else, outside production, the environment's own.
 */
export async function tokenizeJobDefinitionFor(
  ssm: SsmParameterReader,
  env: Environment,
  experiment: string,
): Promise<{ jobDefinition: string; scope: string }> {
  const root = parameterRoot(env.prefix, envId(env));
  const runName = runParameterName(root, experiment, 'tokenize');
  try {
    return { jobDefinition: await ssm.get(runName), scope: `run stack: writes only under runs/${experiment}/` };
  } catch (err) {
    if (!(err instanceof ParameterNotFound)) throw err;
  }
  if (env.stage === 'production') {
    throw new UserError(
      `SSM parameter ${runName} does not exist: in production the token cache is written by the experiment's own run stack (deployed before the tokenize job existed? deploy it again): npx cdk deploy -c stage=production -c run=${experiment} (region ${env.region})`,
    );
  }
  const name = platformParameterName(root, 'trainingTokenizeJobDefinitionArn');
  let jobDefinition: string;
  try {
    jobDefinition = await ssm.get(name);
  } catch (err) {
    if (!(err instanceof ParameterNotFound)) throw err;
    throw new UserError(
      `SSM parameter ${name} does not exist: deploy the training stack of envId '${envId(env)}' again (region ${env.region})`,
      { cause: err },
    );
  }
  if (jobDefinition === 'none')
    throw new UserError(`SSM parameter ${name} is 'none': this environment has no tokenize job definition`);
  return { jobDefinition, scope: `environment ${envId(env)}: the experiment stage's own buckets` };
}

/** Where `tokenize` uploads its config: beside the run's, under a name of its own (a training job may be reading config.yaml). */
export function tokenizeConfigKey(experiment: string, bytes: Buffer): string {
  return `${RUNS_PREFIX}${experiment}/tokenize-${configHash(bytes)}.yaml`;
}

/** A config the trainer accepted, with the exact bytes that will be uploaded. */
export interface ValidatedConfig {
  readonly config: TrainerConfig;
  readonly bytes: Buffer;
  /** The whole config as the trainer's validator returned it (defaults filled in), for other readers such as the cost estimate. */
  readonly raw: unknown;
}

/**
 * Validates the YAML with the trainer's own schema (`dapt_trainer.config.load_config`) in the
 * project venv, so the CLI and the job can never disagree. `dapt-train --check` would do the same
 * but imports torch first (~5 s); this imports only the config module (~0.4 s) and returns the
 * config with its defaults filled in. Problems are relayed verbatim, each naming its key.
 */
export function validateTrainerConfig(file: string, python: string = DEFAULT_VENV_PYTHON): ValidatedConfig {
  const raw = runTrainerValidator(file, python);
  const parsed = TrainerConfigSchema.safeParse(raw);
  if (!parsed.success)
    throw new Error(
      `the trainer's config has changed shape; cli/train-fit.ts TrainerConfigSchema needs updating: ${parsed.error.message}`,
    );
  return { config: parsed.data, bytes: readFileSync(file), raw };
}

/** Runs the trainer's `load_config` on `file` in the venv; returns the config as JSON, or throws its problems. */
export function runTrainerValidator(file: string, python: string = DEFAULT_VENV_PYTHON): unknown {
  if (!existsSync(file)) throw new UserError(`--config = ${file}: no such file`);
  if (!existsSync(python))
    throw new UserError(
      `${python} not found: the trainer's config validator lives in the project venv; run make install`,
    );
  const result = spawnSync(python, ['-c', VALIDATOR, file], { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
  if (result.status !== 0) {
    throw new UserError(
      `the config validator failed (exit ${result.status ?? result.signal}): ${result.stderr.trim() || result.error?.message}\n(is the trainer installed in the venv? run make install)`,
    );
  }
  const reply = JSON.parse(result.stdout) as { ok: true; config: unknown } | { ok: false; message: string };
  if (!reply.ok) throw new UserError(reply.message);
  return reply.config;
}

const VALIDATOR = `
import json, sys
from dapt_trainer.config import ConfigError, load_config
try:
    config = load_config(sys.argv[1])
except ConfigError as err:
    print(json.dumps({"ok": False, "message": str(err)}))
else:
    print(json.dumps({"ok": True, "config": config.model_dump(mode="json")}))
`;

/** `<experiment>-<first 8 hex of sha256(config bytes)>`: the same config is the same job. */
export function jobNameFor(experiment: string, bytes: Buffer): string {
  return `${experiment.slice(0, MAX_JOB_NAME - 9)}-${configHash(bytes)}`;
}

/** `<experiment>-<sha256[:8]>-tokenize`, within Batch's 128 characters. */
export function tokenizeJobName(experiment: string, bytes: Buffer): string {
  return `${experiment.slice(0, MAX_JOB_NAME - 18)}-${configHash(bytes)}-tokenize`;
}

export function configHash(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 8);
}

/** Where a run's config and outputs live in the artifacts bucket. */
export function runLocations(
  bucket: string,
  experiment: string,
): { configKey: string; configUri: string; outputUri: string; resultsUri: string } {
  const configKey = `${RUNS_PREFIX}${experiment}/config.yaml`;
  return {
    configKey,
    configUri: `s3://${bucket}/${configKey}`,
    // The trainer writes to <DAPT_OUTPUT>/<experiment>/<stage>/, so the runs/ prefix puts each
    // stage's checkpoints and metrics next to the config, under runs/<experiment>/.
    outputUri: `s3://${bucket}/${RUNS_PREFIX.replace(/\/$/, '')}`,
    resultsUri: `s3://${bucket}/${RUNS_PREFIX}${experiment}/<stage>/`,
  };
}

/** Every job of `queue` named `pattern` (exact, or a prefix ending in `*`), any status. */
export async function listJobsNamed(batch: BatchClient, queue: string, pattern: string): Promise<JobSummary[]> {
  const jobs: JobSummary[] = [];
  let nextToken: string | undefined;
  do {
    // With filters, ListJobs ignores jobStatus and returns jobs in every status.
    const page = await batch.send(
      new ListJobsCommand({ jobQueue: queue, filters: [{ name: 'JOB_NAME', values: [pattern] }], nextToken }),
    );
    jobs.push(...(page.jobSummaryList ?? []));
    nextToken = page.nextToken;
  } while (nextToken);
  return jobs;
}

/** The request `train` submits. */
export interface TrainingJobRequest {
  readonly queueArn: string;
  readonly jobDefinition: string;
  readonly jobName: string;
  readonly experiment: string;
  readonly nodes: number;
  readonly environment: Readonly<Record<string, string>>;
  readonly tags: Readonly<Record<string, string>>;
}

/** What `train` did. */
export interface Submitted {
  readonly jobId: string;
  readonly jobName: string;
  readonly alreadySubmitted: boolean;
  /** Status of the existing job when `alreadySubmitted`. */
  readonly status?: string;
}

/** The existing job that makes a new submission unnecessary (same name, not failed), or null. */
export async function findExistingJob(
  batch: BatchClient,
  queueArn: string,
  jobName: string,
): Promise<JobSummary | null> {
  const jobs = await listJobsNamed(batch, queueArn, jobName);
  const live = jobs.filter((j) => j.jobName === jobName && j.status !== undefined && REUSABLE_STATUSES.has(j.status));
  live.sort((a, b) => (b.createdAt ?? 0) - (a.createdAt ?? 0));
  return live[0] ?? null;
}

/**
 * Another job of the same experiment with a different config that has not finished: it reads
 * `runs/<experiment>/config.yaml` (again, on a retry) and writes the same checkpoints, so a
 * second config must wait for it.
 */
export async function conflictingJobs(
  batch: BatchClient,
  queueArn: string,
  experiment: string,
  jobName: string,
): Promise<JobSummary[]> {
  const ours = experimentJobPattern(experiment);
  const jobs = await listJobsNamed(batch, queueArn, `${experiment}-*`);
  return jobs.filter(
    (j) =>
      j.jobName !== jobName && ours.test(j.jobName ?? '') && j.status !== undefined && ACTIVE_STATUSES.has(j.status),
  );
}

/** Names of the jobs `train` submits for an experiment: `<experiment>-<8 hex>`. */
export function experimentJobPattern(experiment: string): RegExp {
  return new RegExp(`^${escapeRegExp(experiment.slice(0, MAX_JOB_NAME - 9))}-[0-9a-f]{8}$`);
}

/** The multi-node job definition's node layout, or null when DescribeJobDefinitions shows none. */
export async function multiNodeLayout(batch: BatchClient, jobDefinition: string): Promise<NodeLayout | null> {
  const properties = (await describeJobDefinition(batch, jobDefinition))?.nodeProperties;
  if (!properties?.numNodes) return null;
  const ranges = properties.nodeRangeProperties ?? [];
  return { numNodes: properties.numNodes, openRange: ranges.some((r) => (r.targetNodes ?? '').endsWith(':')) };
}

/** How many nodes a multi-node job definition declares, and whether a node range is open (`n:`). */
export interface NodeLayout {
  readonly numNodes: number;
  readonly openRange: boolean;
}

/**
 * The `numNodes` override for a multi-node job, or undefined when the definition's count is
 * already right. Batch accepts the override only when the definition has an open node range
 * (`0:`); with a closed one (`0:3`) the job must use exactly the definition's node count. An
 * unknown layout passes the override through and lets Batch judge.
 */
export function nodeCountOverride(nodes: number, layout: NodeLayout | null, jobDefinition: string): number | undefined {
  if (layout === null) return nodes;
  if (nodes === layout.numNodes) return undefined;
  if (!layout.openRange) {
    throw new UserError(
      `--nodes = ${nodes}: the multi-node job definition ${jobDefinition} has a closed node range of ${layout.numNodes} nodes, and AWS Batch overrides numNodes only for an open range ('0:'); use --nodes ${layout.numNodes}, or give the definition an open range and redeploy`,
    );
  }
  return nodes;
}

/** Submits the job unless one with the same name is queued, running or done. */
export async function submitTrainingJob(
  batch: BatchClient,
  request: TrainingJobRequest,
  numNodesOverride?: number,
): Promise<Submitted> {
  const existing = await findExistingJob(batch, request.queueArn, request.jobName);
  if (existing?.jobId)
    return {
      jobId: existing.jobId,
      jobName: request.jobName,
      alreadySubmitted: true,
      status: existing.status ?? 'UNKNOWN',
    };
  const environment: KeyValuePair[] = Object.entries(request.environment).map(([name, value]) => ({ name, value }));
  const response = await batch.send(
    new SubmitJobCommand({
      jobName: request.jobName,
      jobQueue: request.queueArn,
      jobDefinition: request.jobDefinition,
      tags: { ...request.tags },
      propagateTags: true,
      ...(request.nodes > 1
        ? {
            nodeOverrides: {
              ...(numNodesOverride === undefined ? {} : { numNodes: numNodesOverride }),
              nodePropertyOverrides: [{ targetNodes: `0:${request.nodes - 1}`, containerOverrides: { environment } }],
            },
          }
        : { containerOverrides: { environment } }),
    }),
  );
  if (!response.jobId) throw new Error(`SubmitJob returned no jobId for ${request.jobName}`);
  return { jobId: response.jobId, jobName: request.jobName, alreadySubmitted: false };
}

/** `stage-steps` tag value: `dapt=4000 sft=500` (tag values allow no commas). */
export function stageStepsTag(config: TrainerConfig): string {
  return config.stages
    .map((s) => `${s.name}=${s.steps}`)
    .join(' ')
    .slice(0, MAX_TAG_VALUE);
}

/** Parses the `stage-steps` tag back; unknown or malformed parts are ignored. */
export function parseStageSteps(tag: string | undefined): Record<string, number> {
  const steps: Record<string, number> = {};
  for (const part of (tag ?? '').split(' ')) {
    const match = /^([A-Za-z0-9_-]+)=(\d+)$/.exec(part);
    if (match) steps[match[1]!] = Number(match[2]);
  }
  return steps;
}

/** The AWS console page of a job. */
/** Job tag holding each stage's step count, for `watch`'s progress bar. */
export const STAGE_STEPS_TAG = 'stage-steps';

export function consoleUrl(region: string, jobId: string): string {
  return `https://${region}.console.aws.amazon.com/batch/home?region=${region}#jobs/detail/${jobId}`;
}

/** DescribeJobs for one job; a missing one is a user error naming the region. */
export async function describeJob(batch: BatchClient, jobId: string, region: string): Promise<JobDetail> {
  const job = (await batch.send(new DescribeJobsCommand({ jobs: [jobId] }))).jobs?.[0];
  if (!job)
    throw new UserError(
      `no job '${jobId}' in region ${region}: wrong --region, or a job older than Batch keeps (about 7 days after it ended)?`,
    );
  return job;
}

/** The lines `status` prints. */
export function formatStatus(job: JobDetail, now: number = Date.now()): string[] {
  const lines = [`job ${job.jobName ?? '?'} (${job.jobId ?? '?'}): ${job.status ?? 'UNKNOWN'}`];
  const explanation = explainStatus(job.status, job.statusReason);
  if (job.statusReason || explanation)
    lines.push(`reason: ${[job.statusReason, explanation].filter(Boolean).join(' -- ')}`);
  lines.push(`nodes: ${job.nodeProperties?.numNodes ?? 1}`);
  const attempts = job.attempts ?? [];
  lines.push(
    `attempts: ${attempts.length}${job.retryStrategy?.attempts ? ` of at most ${job.retryStrategy.attempts}` : ''}`,
  );
  for (const [i, attempt] of attempts.entries()) {
    const exit = attempt.container?.exitCode;
    lines.push(
      `  ${i + 1}. ${time(attempt.startedAt)} -> ${time(attempt.stoppedAt)}${exit === undefined ? '' : ` exit ${exit}`}${attempt.statusReason ? ` (${attempt.statusReason})` : ''}`,
    );
  }
  lines.push(`created: ${time(job.createdAt)}; started: ${time(job.startedAt)}; stopped: ${time(job.stoppedAt)}`);
  if (job.startedAt && !job.stoppedAt) lines.push(`running for ${duration(now - job.startedAt)}`);
  return lines;
}

/** What a status and its reason mean for a training job, in plain words; '' when obvious. */
export function explainStatus(status: string | undefined, reason: string | undefined): string {
  const r = reason ?? '';
  if (r.startsWith('CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY'))
    return 'waiting for P5 capacity in the AZ; the GPU queue cancels the job after training.runnableTimeoutMinutes';
  if (r.startsWith('MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE'))
    return 'the job needs more vCPUs than the compute environment allows (more nodes than training.maxNodes?); it will be cancelled';
  if (r.startsWith('MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT'))
    return 'no instance type of the compute environment can run this job; it will be cancelled';
  if (status === 'RUNNABLE')
    return 'waiting for a node: P5 instances take minutes to start, longer when capacity is scarce';
  if (status === 'STARTING') return 'a node is up; pulling the trainer image';
  return '';
}

/** CancelJob for queued jobs, TerminateJob for running ones, nothing for finished ones. */
export function stopAction(status: string | undefined): 'cancel' | 'terminate' | 'none' {
  if (status === 'SUBMITTED' || status === 'PENDING' || status === 'RUNNABLE') return 'cancel';
  if (status === 'STARTING' || status === 'RUNNING') return 'terminate';
  return 'none';
}

/** Stops a job the way its state needs; returns what was done. */
export async function stopJob(
  batch: BatchClient,
  job: JobDetail,
  reason: string,
): Promise<'cancel' | 'terminate' | 'none'> {
  const action = stopAction(job.status);
  if (action === 'cancel') await batch.send(new CancelJobCommand({ jobId: job.jobId, reason }));
  if (action === 'terminate') await batch.send(new TerminateJobCommand({ jobId: job.jobId, reason }));
  return action;
}

export function isFinished(status: string | undefined): boolean {
  return status === 'SUCCEEDED' || status === 'FAILED';
}

/** Where a job's log lines are: its definition's awslogs group (or `logGroup`) and its stream. */
export async function logLocation(
  batch: BatchClient,
  job: JobDetail,
  region: string,
  options: { logGroup?: string; node?: number } = {},
): Promise<{ logGroup: string; logStream: string }> {
  // A multi-node parent has no container; its log streams belong to the node jobs `<id>#<index>`.
  let target = job;
  if (job.nodeProperties && !job.container?.logStreamName) {
    const node = options.node ?? job.nodeProperties.mainNode ?? 0;
    target = await describeJob(batch, `${job.jobId}#${node}`, region);
  }
  const attempts = target.attempts ?? [];
  const logStream = target.container?.logStreamName ?? attempts[attempts.length - 1]?.container?.logStreamName;
  if (!logStream)
    throw new UserError(`job ${job.jobId} (${job.status}) has no log stream yet: it has not started a container`);
  let logGroup = options.logGroup;
  if (!logGroup && job.jobDefinition) {
    const definition = await describeJobDefinition(batch, job.jobDefinition);
    const container =
      definition?.containerProperties ?? definition?.nodeProperties?.nodeRangeProperties?.[0]?.container;
    logGroup = container?.logConfiguration?.options?.['awslogs-group'];
  }
  if (!logGroup)
    throw new UsageError(
      `the job definition of ${job.jobId} names no awslogs group; pass --log-group (the training stack's job log group)`,
    );
  return { logGroup, logStream };
}

/** One page of log lines from `token` on (from the start when none). */
export async function readLogPage(
  logs: CloudWatchLogsClient,
  location: { logGroup: string; logStream: string },
  token?: string,
): Promise<{ messages: string[]; nextToken?: string }> {
  const page = await logs.send(
    new GetLogEventsCommand({
      logGroupName: location.logGroup,
      logStreamName: location.logStream,
      startFromHead: true,
      ...(token ? { nextToken: token } : {}),
    }),
  );
  const messages = (page.events ?? []).map((e) => e.message ?? '');
  return { messages, ...(page.nextForwardToken ? { nextToken: page.nextForwardToken } : {}) };
}

/** Reads every line available now; GetLogEvents returns the same token once at the end. */
export async function drainLogs(
  logs: CloudWatchLogsClient,
  location: { logGroup: string; logStream: string },
  token: string | undefined,
  onLines: (messages: string[]) => void,
): Promise<string | undefined> {
  let current = token;
  for (;;) {
    let page: Awaited<ReturnType<typeof readLogPage>>;
    try {
      page = await readLogPage(logs, location, current);
    } catch (err) {
      // The container has started but has not written its first line (the stream is created then).
      if ((err as { name?: string }).name === 'ResourceNotFoundException') return current;
      throw err;
    }
    if (page.messages.length > 0) onLines(page.messages);
    if (!page.nextToken || page.nextToken === current) return current;
    current = page.nextToken;
    if (page.messages.length === 0) return current;
  }
}

async function describeJobDefinition(batch: BatchClient, jobDefinition: string): Promise<JobDefinition | undefined> {
  return (await batch.send(new DescribeJobDefinitionsCommand({ jobDefinitions: [jobDefinition] }))).jobDefinitions?.[0];
}

function time(ms: number | undefined): string {
  return ms ? new Date(ms).toISOString().replace('.000Z', 'Z') : '-';
}

function duration(ms: number): string {
  const minutes = Math.floor(ms / 60_000);
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, '0')}m`;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Statuses in which a job of the same name makes a new submission unnecessary (FAILED does not). */
const REUSABLE_STATUSES: ReadonlySet<JobStatus | string> = new Set([
  'SUBMITTED',
  'PENDING',
  'RUNNABLE',
  'STARTING',
  'RUNNING',
  'SUCCEEDED',
]);
/** Statuses of a job that has not finished. */
const ACTIVE_STATUSES: ReadonlySet<JobStatus | string> = new Set([
  'SUBMITTED',
  'PENDING',
  'RUNNABLE',
  'STARTING',
  'RUNNING',
]);

/** The project venv's interpreter (created by `make install`). */
export const DEFAULT_VENV_PYTHON = path.join(__dirname, '..', '.venv', 'bin', 'python');
/** Prefix of run inputs and outputs in the artifacts bucket (one definition, lib/config/parameter-names.ts). */
export { RUNS_PREFIX } from '../lib/config/parameter-names';
import { RUNS_PREFIX } from '../lib/config/parameter-names';
/** AWS Batch job names: up to 128 letters, digits, hyphens and underscores. */
const MAX_JOB_NAME = 128;
/** AWS tag values: up to 256 characters. */
const MAX_TAG_VALUE = 256;
