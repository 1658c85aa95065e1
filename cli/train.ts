/**
 * Operate training jobs on a deployed stage's AWS Batch queues: `npx dapt train <command>`
 * (`npx dapt train --help`; every command has `--help`, which needs no AWS credentials).
 *
 *   dapt train submit   --config FILE --stage production|experiment [--experiment NAME] [--nodes N] [--yes] [--dry-run]
 *   dapt train tokenize --config FILE --stage production|experiment [--experiment NAME] [--dry-run]
 *   dapt train status   --job-id ID | --run NAME (--stage ... [--experiment NAME])
 *   dapt train logs     --job-id ID [--follow] [--log-group G] [--node I]
 *   dapt train watch    --job-id ID [--log-group G] [--node I]
 *   dapt train cancel   --job-id ID [--reason TEXT]
 *
 * `train` validates the config with the trainer's own schema (project venv), checks that the job
 * fits the stack (SSM `/<prefix>/<envId>/training/...`) and the GPUs, uploads the config to
 * `s3://<artifacts>/runs/<experiment>/config.yaml` and submits `<experiment>-<sha256[:8]>` unless
 * that job is already queued, running or done; it prints the cost estimate first (cli/cost.ts) and,
 * above the stage's `training.confirmSpendAboveUsd`, asks (`--yes` accepts; without a terminal it
 * refuses). `--experiment` selects the experiment stage
 * (envId `exp-<NAME>`); `status --run` names the config's `experiment` (default: `--experiment`).
 *
 * Exit codes: 0 ok, 1 a problem to fix (config, fit, stack not deployed, job failed), 2 bad arguments.
 */
import { dirname } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { BatchClient } from '@aws-sdk/client-batch';
import { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { DataClients } from './data';
import { JOB_CONTRACT, trainerJobEnvironment } from '../lib/config/job-contract';
import { loadConfig } from '../lib/config/load';
import { checkTrainingSpend } from './cost';
import { envId, type Environment } from './eval-lib';
import { SsmParameterReader } from './ssm';
import { estimateStages, LLAMA_PARAMETER_FORMULA, nodeProblems } from './train-fit';
import {
  conflictingJobs,
  consoleUrl,
  describeJob,
  drainLogs,
  experimentJobPattern,
  findExistingJob,
  formatStatus,
  isFinished,
  jobNameFor,
  listJobsNamed,
  logLocation,
  multiNodeLayout,
  nodeCountOverride,
  parseStageSteps,
  jobDefinitionsFor,
  readTrainingStack,
  runLocations,
  stageStepsTag,
  stopJob,
  submitTrainingJob,
  RUNS_PREFIX,
  STAGE_STEPS_TAG,
  tokenizeConfigKey,
  tokenizeJobDefinitionFor,
  tokenizeJobName,
  UsageError,
  UserError,
  validateTrainerConfig,
} from './train-lib';
import { renderLogLines } from './train-watch';

/** The AWS clients of one region (tests point them at moto). */
export interface Clients {
  readonly ssm: SsmParameterReader;
  readonly batch: BatchClient;
  readonly logs: CloudWatchLogsClient;
  readonly s3: S3Client;
}

/** Everything the CLI touches outside itself. */
export interface CliDeps {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
  readonly clients: (region: string) => Clients;
  /** @default - `tags.project` of config/<stage>.json, else the prefix */
  readonly project?: string;
  /** @default DEFAULT_VENV_PYTHON */
  readonly python?: string;
  /** @default DEFAULT_POLL_MS */
  readonly pollMs?: number;
  /** Clients of `dapt data` (EMR Serverless). @default - the regional AWS endpoints */
  readonly dataClients?: (region: string) => DataClients;
}

/** Runs one `dapt train` command (`argv` after `train`); resolves to the exit code. */
export async function runCli(argv: readonly string[], deps: CliDeps): Promise<number> {
  let failure: CommanderError | undefined;
  const program = trainCommand(deps, (err) => {
    failure = err;
  });
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError || failure) {
      const cause = (err instanceof CommanderError ? err : failure)!;
      // --help and --version end here too, with exit code 0.
      return cause.exitCode === 0 ? 0 : EXIT_USAGE;
    }
    deps.err(`error: ${(err as Error).message}`);
    if (err instanceof UsageError) {
      deps.err(program.helpInformation());
      return EXIT_USAGE;
    }
    return EXIT_PROBLEM;
  }
}

/** The options of every training command, as commander hands them over. */
interface TrainValues {
  config?: string;
  stage?: string;
  experiment?: string;
  run?: string;
  nodes: string;
  queue: string;
  dryRun: boolean;
  yes: boolean;
  jobId?: string;
  follow: boolean;
  logGroup?: string;
  node?: string;
  reason: string;
  region: string;
  prefix: string;
}

type TrainCommandName = 'train' | 'tokenize' | 'status' | 'logs' | 'watch' | 'cancel';

/**
 * The `train` command group, on commander: it parses, validates and prints help (generated from
 * these definitions, without touching AWS); the actions do the work. `onError` sees commander's
 * own errors (unknown option, missing argument), which it has already printed.
 */
export function trainCommand(deps: CliDeps, onError: (err: CommanderError) => void = () => undefined): Command {
  const group = new Command('train')
    .description("Operate training jobs on a deployed stage's AWS Batch queues")
    .configureOutput({ writeOut: (text) => deps.out(text.trimEnd()), writeErr: (text) => deps.err(text.trimEnd()) })
    .exitOverride((err) => {
      onError(err);
      throw err;
    })
    .showHelpAfterError('(add --help for usage)');
  const common = (command: Command): Command =>
    command
      .addOption(
        new Option('--region <region>', 'AWS region').default(
          process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? DEFAULT_REGION,
        ),
      )
      .addOption(new Option('--prefix <prefix>', 'prefix of the stacks and SSM parameters').default(DEFAULT_PREFIX))
      .configureOutput({ writeOut: (text) => deps.out(text.trimEnd()), writeErr: (text) => deps.err(text.trimEnd()) })
      .exitOverride((err) => {
        onError(err);
        throw err;
      })
      .showHelpAfterError('(add --help for usage)');
  const stage = (command: Command): Command =>
    command
      .addOption(new Option('--stage <stage>', 'the deployed stage').choices(['production', 'experiment']))
      .option('--experiment <name>', 'the experiment environment (with --stage experiment)');
  const run =
    (name: TrainCommandName) =>
    async (values: TrainValues): Promise<void> => {
      await execute(name, values, deps);
    };

  common(
    stage(
      group
        .command('submit')
        .alias('train')
        .description(
          'Validate a trainer config, check it fits the stack, upload it and submit the job (once per config)',
        ),
    ),
  )
    .requiredOption('--config <file>', 'trainer config (YAML)')
    .option('--nodes <n>', 'nodes for the job (more than 1: the multi-node definition)', '1')
    .addOption(new Option('--queue <queue>', 'job queue').default('gpu').hideHelp())
    .option(
      '--yes',
      "submit without asking when the cost estimate is above the stage's training.confirmSpendAboveUsd",
      false,
    )
    .option('--dry-run', 'validate and print the request; submit nothing (needs no credentials)', false)
    .action(run('train'));
  common(
    stage(
      group.command('tokenize').description('Fill the token cache on the CPU queue so the GPU job downloads tokens'),
    ),
  )
    .requiredOption('--config <file>', 'trainer config (YAML)')
    .option('--dry-run', 'validate and print the request; submit nothing (needs no credentials)', false)
    .action(run('tokenize'));
  common(stage(group.command('status').description("A job's status, or every job of an experiment")))
    .option('--job-id <id>', 'the job')
    .option('--run <name>', "the config's experiment (default: --experiment)")
    .action(run('status'));
  common(group.command('logs').description("A job's log lines"))
    .requiredOption('--job-id <id>', 'the job')
    .option('--follow', 'keep reading until the job ends', false)
    .option('--log-group <group>', "log group (default: the job definition's)")
    .option('--node <index>', 'node of a multi-node job')
    .action(run('logs'));
  common(group.command('watch').description('Status changes and training progress until the job ends'))
    .requiredOption('--job-id <id>', 'the job')
    .option('--log-group <group>', "log group (default: the job definition's)")
    .option('--node <index>', 'node of a multi-node job')
    .action(run('watch'));
  common(group.command('cancel').description('Cancel a queued job or stop a running one (it checkpoints first)'))
    .requiredOption('--job-id <id>', 'the job')
    .option('--reason <text>', 'reason recorded with the job', 'cancelled with dapt train cancel')
    .action(run('cancel'));
  return group;
}

async function execute(command: TrainCommandName, values: TrainValues, deps: CliDeps): Promise<void> {
  const region = values.region;
  const environment = (): Environment => {
    if (values.stage !== 'production' && values.stage !== 'experiment') {
      throw new UsageError(`--stage = ${JSON.stringify(values.stage ?? '')}: must be 'production' or 'experiment'`);
    }
    const env: Environment = {
      stage: values.stage,
      ...(values.experiment ? { experiment: values.experiment } : {}),
      prefix: values.prefix,
      region,
    };
    try {
      envId(env);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    return env;
  };
  const jobId = (): string => {
    if (!values.jobId) throw new UsageError(`${command} needs --job-id ID`);
    return values.jobId;
  };
  const node = values.node === undefined ? undefined : wholeNumber('--node', values.node, 0);
  const where = { ...(values.logGroup ? { logGroup: values.logGroup } : {}), ...(node === undefined ? {} : { node }) };

  switch (command) {
    case 'train': {
      if (!values.config) throw new UsageError('train needs --config FILE');
      if (values.queue === 'cpu') {
        throw new UsageError(
          '--queue = "cpu": training runs on the GPU queue; the CPU queue runs the data pipeline (job definition at SSM <root>/training/job-definitions/data-prep)',
        );
      }
      if (values.queue !== 'gpu') throw new UsageError(`--queue = ${JSON.stringify(values.queue)}: must be 'gpu'`);
      const nodes = wholeNumber('--nodes', values.nodes, 1);
      await train(
        { env: environment(), file: values.config, nodes, queue: values.queue, dryRun: values.dryRun, yes: values.yes },
        deps,
      );
      return;
    }
    case 'tokenize': {
      if (!values.config) throw new UsageError('tokenize needs --config FILE');
      await tokenize({ env: environment(), file: values.config, dryRun: values.dryRun }, deps);
      return;
    }
    case 'status': {
      const { batch, ssm } = deps.clients(region);
      if (values.jobId) {
        for (const line of formatStatus(await describeJob(batch, values.jobId, region))) deps.out(line);
        return;
      }
      const env = environment();
      const run = values.run ?? values.experiment;
      if (!run)
        throw new UsageError(
          "status needs --job-id ID, or --run NAME (the config's experiment; default: --experiment)",
        );
      const stack = await readTrainingStack(ssm, env);
      const jobs = (
        await Promise.all([stack.gpuQueueArn, stack.cpuQueueArn].map((q) => listJobsNamed(batch, q, `${run}-*`)))
      ).flat();
      const ours = jobs
        .filter((j) => experimentJobPattern(run).test(j.jobName ?? ''))
        .sort((a, b) => (b.createdAt ?? 0) - (a.createdAt ?? 0));
      if (ours.length === 0)
        throw new UserError(
          `no job of experiment '${run}' in the ${env.stage} queues (envId '${envId(env)}', region ${region})`,
        );
      for (const summary of ours) {
        deps.out('');
        for (const line of formatStatus(await describeJob(batch, summary.jobId ?? '', region))) deps.out(line);
      }
      return;
    }
    case 'logs': {
      const { batch, logs } = deps.clients(region);
      let job = await describeJob(batch, jobId(), region);
      const location = await logLocation(batch, job, region, where);
      deps.err(`log stream ${location.logGroup} / ${location.logStream}`);
      let token = await drainLogs(logs, location, undefined, (lines) => lines.forEach((l) => deps.out(l)));
      while (values.follow && !isFinished(job.status)) {
        await sleep(deps.pollMs ?? DEFAULT_POLL_MS);
        job = await describeJob(batch, job.jobId ?? '', region);
        token = await drainLogs(logs, location, token, (lines) => lines.forEach((l) => deps.out(l)));
      }
      return;
    }
    case 'watch': {
      const { batch, logs } = deps.clients(region);
      let job = await describeJob(batch, jobId(), region);
      const steps = parseStageSteps(job.tags?.[STAGE_STEPS_TAG]);
      if (Object.keys(steps).length === 0)
        deps.err(`notice: job has no '${STAGE_STEPS_TAG}' tag; steps are shown without totals`);
      let location: { logGroup: string; logStream: string } | null = null;
      let token: string | undefined;
      let lastStatus = '';
      for (;;) {
        if (job.status !== lastStatus) {
          lastStatus = job.status ?? '';
          deps.out(
            `${new Date().toISOString()}  ${formatStatus(job)[0]}${job.statusReason ? ` -- ${job.statusReason}` : ''}`,
          );
        }
        if (location === null && (job.container?.logStreamName || job.attempts?.length || job.nodeProperties)) {
          location = await logLocation(batch, job, region, where).catch((err: unknown) => {
            if (err instanceof UserError) return null; // no stream yet: try again next poll
            throw err;
          });
        }
        if (location !== null)
          token = await drainLogs(logs, location, token, (lines) =>
            renderLogLines(lines, steps, true).forEach((l) => deps.out(l)),
          );
        if (isFinished(job.status)) break;
        await sleep(deps.pollMs ?? DEFAULT_POLL_MS);
        job = await describeJob(batch, job.jobId ?? '', region);
      }
      if (job.status === 'FAILED')
        throw new UserError(
          `job ${job.jobId} FAILED: ${job.statusReason ?? 'no reason given'} (see: logs --job-id ${job.jobId})`,
        );
      return;
    }
    case 'cancel': {
      const { batch } = deps.clients(region);
      const job = await describeJob(batch, jobId(), region);
      const action = await stopJob(batch, job, values.reason);
      deps.out(
        action === 'none'
          ? `job ${job.jobId} is already ${job.status}: nothing to stop`
          : `${action === 'cancel' ? 'cancelled' : 'terminating'} job ${job.jobId} (was ${job.status}); a running trainer gets SIGTERM and checkpoints before it stops`,
      );
      return;
    }
  }
}

interface TrainOptions {
  readonly env: Environment;
  readonly file: string;
  readonly nodes: number;
  readonly queue: 'gpu' | 'cpu';
  readonly dryRun: boolean;
  /** Accept a cost estimate above the stage's confirmation threshold without asking. */
  readonly yes: boolean;
}

async function train(options: TrainOptions, deps: CliDeps): Promise<void> {
  const { env, file, nodes, queue } = options;
  const { config, bytes, raw } = validateTrainerConfig(file, deps.python);
  deps.out(
    `config ${file}: valid (experiment '${config.experiment}', stages ${config.stages.map((s) => `${s.name}: ${s.steps} steps`).join(', ')})`,
  );

  const { ssm, batch, s3 } = deps.clients(env.region);
  const deployed = await readDeployed(env, config.experiment, options.dryRun, deps, async () => {
    const environmentStack = await readTrainingStack(ssm, env);
    const definitions = await jobDefinitionsFor(ssm, env, config.experiment, environmentStack);
    return { environmentStack, definitions };
  });
  const { environmentStack, definitions } = deployed;
  const stack = {
    ...environmentStack,
    singleNodeJobDefinition: definitions.singleNode,
    multiNodeJobDefinition: definitions.multiNode,
  };
  deps.out(`job definitions: ${definitions.scope}`);
  const fit = estimateStages(config, nodes, dirname(file), queue);
  if (fit.estimates.length > 0) deps.out(`memory estimate (parameters: ${LLAMA_PARAMETER_FORMULA}):`);
  for (const estimate of fit.estimates) deps.out(`  ${estimate.summary}`);
  for (const notice of fit.notices) deps.out(`notice: ${notice}`);
  const problems = [...nodeProblems(nodes, stack, queue), ...fit.problems];
  if (problems.length > 0)
    throw new UserError(
      `the job would not fit (${problems.length} problem(s)):\n${problems.map((p) => `  - ${p}`).join('\n')}`,
    );

  const queueArn = queue === 'gpu' ? stack.gpuQueueArn : stack.cpuQueueArn;
  const jobDefinition = nodes > 1 ? stack.multiNodeJobDefinition : stack.singleNodeJobDefinition;
  const numNodes =
    nodes > 1 && !deployed.offline
      ? nodeCountOverride(nodes, await multiNodeLayout(batch, jobDefinition), jobDefinition)
      : undefined;
  const jobName = jobNameFor(config.experiment, bytes);
  const where = runLocations(stack.artifactsBucket, config.experiment);
  const request = {
    queueArn,
    jobDefinition,
    jobName,
    experiment: config.experiment,
    nodes,
    environment: trainerJobEnvironment(where.configUri, where.outputUri),
    tags: {
      experiment: config.experiment,
      project: deps.project ?? projectTag(env),
      [STAGE_STEPS_TAG]: stageStepsTag(config),
    },
  };

  const existing = deployed.offline ? undefined : await findExistingJob(batch, queueArn, jobName);
  if (!existing && !deployed.offline) {
    const conflicts = await conflictingJobs(batch, queueArn, config.experiment, jobName);
    if (conflicts.length > 0) {
      const list = conflicts.map((j) => `${j.jobName} (${j.jobId}, ${j.status})`).join(', ');
      throw new UserError(
        `experiment '${config.experiment}' has unfinished job(s) with a different config: ${list}; they read ${where.configUri} and write the same checkpoints. Cancel them (cancel --job-id ID) or rename 'experiment' in the config`,
      );
    }
  }
  if (!existing)
    await checkTrainingSpend({
      file,
      nodes,
      stage: env.stage,
      ...(env.experiment ? { experiment: env.experiment } : {}),
      region: env.region,
      yes: options.yes,
      dryRun: options.dryRun,
      out: deps.out,
      validated: raw,
    });
  if (options.dryRun) {
    deps.out(`dry run: would ${existing ? `reuse job ${existing.jobId} (${existing.status})` : 'submit'} ${jobName}`);
    deps.out(JSON.stringify({ ...request, numNodesOverride: numNodes ?? null, upload: where.configUri }, null, 2));
    return;
  }
  if (!existing)
    await s3.send(
      new PutObjectCommand({
        Bucket: stack.artifactsBucket,
        Key: where.configKey,
        Body: bytes,
        ContentType: 'application/yaml',
      }),
    );
  const submitted = await submitTrainingJob(batch, request, numNodes);
  deps.out(
    submitted.alreadySubmitted
      ? `already submitted (same config, same job name): ${submitted.jobName} is ${submitted.status}; not submitting again`
      : `submitted ${submitted.jobName} on ${nodes} node(s) to ${queueArn}`,
  );
  deps.out(`job id: ${submitted.jobId}`);
  deps.out(`console: ${consoleUrl(env.region, submitted.jobId)}`);
  deps.out(`config: ${where.configUri}`);
  deps.out(
    `results: ${config.stages.map((s) => where.resultsUri.replace('<stage>', s.name)).join(' ')} (checkpoints/, metrics.jsonl, final/)`,
  );
  deps.out(`follow it: npx dapt train watch --job-id ${submitted.jobId} --region ${env.region}`);
}

/**
 * Submits `dapt-train --tokenize-only` on the CPU queue: every stage's sources are tokenised into
 * the shared token cache, so the GPU job downloads tokens instead of tokenising on a P5 node.
 * The same config submitted twice is one job.
 */
async function tokenize(options: { env: Environment; file: string; dryRun: boolean }, deps: CliDeps): Promise<void> {
  const { env, file } = options;
  const { config, bytes } = validateTrainerConfig(file, deps.python);
  deps.out(`config ${file}: valid (experiment '${config.experiment}')`);
  const { ssm, batch, s3 } = deps.clients(env.region);
  let stack: TrainingStackValues;
  let definition: { jobDefinition: string; scope: string };
  try {
    stack = await readTrainingStack(ssm, env);
    definition = await tokenizeJobDefinitionFor(ssm, env, config.experiment);
  } catch (err) {
    const offline = await readDeployed(env, config.experiment, options.dryRun, deps, () => Promise.reject(err));
    stack = offline.environmentStack;
    definition = { jobDefinition: `${offline.owner}-tokenize`, scope: offline.definitions.scope };
  }
  deps.out(`job definition: ${definition.scope}`);
  const where = runLocations(stack.artifactsBucket, config.experiment);
  const configKey = tokenizeConfigKey(config.experiment, bytes);
  const request = {
    queueArn: stack.cpuQueueArn,
    jobDefinition: definition.jobDefinition,
    jobName: tokenizeJobName(config.experiment, bytes),
    experiment: config.experiment,
    nodes: 1,
    environment: trainerJobEnvironment(`s3://${stack.artifactsBucket}/${configKey}`, where.outputUri),
    tags: { experiment: config.experiment, project: deps.project ?? projectTag(env) },
  };
  if (options.dryRun) {
    deps.out(`dry run: would submit ${request.jobName}`);
    deps.out(JSON.stringify({ ...request, upload: request.environment[JOB_CONTRACT.environment.config] }, null, 2));
    return;
  }
  await s3.send(
    new PutObjectCommand({
      Bucket: stack.artifactsBucket,
      Key: configKey,
      Body: bytes,
      ContentType: 'application/yaml',
    }),
  );
  const submitted = await submitTrainingJob(batch, request);
  deps.out(
    submitted.alreadySubmitted
      ? `already submitted (same config): ${submitted.jobName} is ${submitted.status}; not submitting again`
      : `submitted ${submitted.jobName} to ${stack.cpuQueueArn}`,
  );
  deps.out(`job id: ${submitted.jobId}`);
  deps.out(
    `token cache: ${config.token_cache ?? `s3://${stack.artifactsBucket}/${RUNS_PREFIX}${config.experiment}/token-cache/`}`,
  );
  deps.out(`follow it: npx dapt train logs --job-id ${submitted.jobId} --follow --region ${env.region}`);
}

/**
 * What the deployed stage says (SSM), or, for a dry run without AWS credentials, what its config
 * file says it would be: names instead of ARNs, limits from config/<stage>.json, and no check
 * for jobs already queued.
 */
async function readDeployed(
  env: Environment,
  experiment: string,
  dryRun: boolean,
  deps: CliDeps,
  read: () => Promise<{
    environmentStack: TrainingStackValues;
    definitions: { singleNode: string; multiNode: string; scope: string };
  }>,
): Promise<{
  environmentStack: TrainingStackValues;
  definitions: { singleNode: string; multiNode: string; scope: string };
  offline: boolean;
  owner?: string;
}> {
  try {
    return { ...(await read()), offline: false };
  } catch (err) {
    if (!dryRun || !isMissingCredentials(err)) throw err;
  }
  const config = loadConfig({ stage: env.stage, ...(env.experiment ? { experiment: env.experiment } : {}) });
  const root = `${env.prefix}-${config.envId}`;
  const owner = env.stage === 'production' ? `${root}-run-${experiment}` : root;
  deps.err(
    `notice: no AWS credentials; the dry run describes the stack from config/${env.stage}.json and cannot see jobs already queued`,
  );
  return {
    offline: true,
    owner,
    environmentStack: {
      gpuQueueArn: `${root}-gpu`,
      cpuQueueArn: `${root}-cpu`,
      singleNodeJobDefinition: `${owner}-train-single-node`,
      multiNodeJobDefinition: config.training.maxNodes > 1 ? `${owner}-train-multi-node` : 'none',
      maxNodes: config.training.maxNodes,
      capacityMode: config.training.capacity.mode,
      artifactsBucket: `<artifacts bucket of ${config.envId}>`,
    },
    definitions: {
      singleNode: `${owner}-train-single-node`,
      multiNode: config.training.maxNodes > 1 ? `${owner}-train-multi-node` : 'none',
      scope:
        env.stage === 'production'
          ? `run stack ${owner} (from the config; writes only under runs/${experiment}/)`
          : `environment ${root} (from the config)`,
    },
  };
}

type TrainingStackValues = Awaited<ReturnType<typeof readTrainingStack>>;

/** Whether `err` says the SDK found no credentials (nothing was asked of AWS). */
function isMissingCredentials(err: unknown): boolean {
  const e = err as { name?: string; message?: string; cause?: { name?: string } };
  return (
    e?.name === 'CredentialsProviderError' ||
    e?.cause?.name === 'CredentialsProviderError' ||
    /could not load credentials/i.test(e?.message ?? '')
  );
}

/** `tags.project` of the stage's config file, so jobs carry the same tag as the stacks. */
function projectTag(env: Environment): string {
  try {
    return loadConfig({ stage: env.stage, ...(env.experiment ? { experiment: env.experiment } : {}) }).tags.project;
  } catch {
    return env.prefix;
  }
}

function wholeNumber(flag: string, text: string, min: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min)
    throw new UsageError(`${flag} = ${JSON.stringify(text)}: must be a whole number >= ${min}`);
  return value;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Default AWS clients of a region (credentials and endpoints from the usual chain). */
export function defaultClients(region: string): Clients {
  return {
    ssm: new SsmParameterReader({ region }),
    batch: new BatchClient({ region }),
    logs: new CloudWatchLogsClient({ region }),
    s3: new S3Client({ region }),
  };
}

export { STAGE_STEPS_TAG };
const EXIT_PROBLEM = 1;
const EXIT_USAGE = 2;
const DEFAULT_PREFIX = 'dapt';
const DEFAULT_REGION = 'us-east-1';
const DEFAULT_POLL_MS = 15_000;

if (require.main === module) {
  void runCli(process.argv.slice(2), {
    out: (l) => console.log(l),
    err: (l) => console.error(l),
    clients: defaultClients,
  }).then((code) => {
    process.exitCode = code;
  });
}
