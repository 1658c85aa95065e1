/**
 * The training-data pipeline on the environment's EMR Serverless application: `npx dapt data <command>`.
 *
 *   dapt data submit --config FILE --stage production|experiment [--experiment NAME] [--run NAME] [--steps a,b] [--no-follow] [--dry-run]
 *   dapt data watch  --job-run-id ID --stage ... [--experiment NAME]
 *
 * `submit` uploads the pipeline config to `s3://<datasets>/runs/<run>/data/<sha256[:8]>/` and starts
 * a job run of the Spark entry point (lib/config/spark-job.ts) with the run's role: in production
 * the run stack's (`-c run=NAME`; its outputs and logs only under `runs/<run>/`), in an experiment
 * stage the environment's. The same config starts the same run once (client token). Then it
 * follows the run, printing each state change and, at the end, where the logs are; exit 1 when
 * the run failed or was cancelled.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { EMRServerlessClient, GetJobRunCommand, StartJobRunCommand } from '@aws-sdk/client-emr-serverless';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Command, Option } from 'commander';
import { parameterRoot, platformParameterName } from '../lib/config/parameter-names';
import { ExperimentNameSchema, NAME_RULE_TEXT } from '../lib/config/schema';
import {
  followJobRun,
  logLocations,
  parseSteps,
  readSparkDeployment,
  type SparkDataRequest,
  sparkJobRun,
} from './data-lib';
import { envId, environmentOptions } from './eval-lib';
import { SsmParameterReader } from './ssm';
import { UsageError, UserError } from './train-lib';

/** The AWS clients of one region (tests point them at moto). */
export interface DataClients {
  readonly ssm: SsmParameterReader;
  readonly s3: S3Client;
  readonly emr: EMRServerlessClient;
}

export interface DataIo {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
  /** @default - the regional AWS endpoints with the default credential chain */
  readonly dataClients?: (region: string) => DataClients;
  /** Between two looks at a running job. @default DEFAULT_POLL_MS */
  readonly pollMs?: number;
  /** Told each failed or cancelled run's exit code (1). @default - none */
  readonly setExitCode?: (code: number) => void;
}

interface DataValues {
  stage: 'production' | 'experiment';
  experiment?: string;
  run?: string;
  region: string;
  prefix: string;
  config?: string;
  steps?: string;
  follow: boolean;
  dryRun: boolean;
  jobRunId?: string;
}

/** The `data` command group. */
export function dataCommand(io: DataIo): Command {
  const group = new Command('data').description(
    "Run the training-data pipeline on the environment's EMR Serverless application (Spark)",
  );
  environmentOptions(
    group.command('submit').description('Upload a pipeline config and run it as an EMR Serverless job, then follow it'),
  )
    .requiredOption('--config <file>', 'the pipeline config (YAML or JSON)')
    .option('--run <name>', "the run the outputs belong to (production: the run stack's; default: --experiment)")
    .option('--steps <list>', "steps to run, comma-separated, or 'all'", 'all')
    .addOption(new Option('--no-follow', 'return once the job run is started'))
    .option('--dry-run', 'print the request; start nothing (reads the deployed stacks)', false)
    .action(async (values: DataValues) => submit(values, io));
  environmentOptions(group.command('watch').description("A job run's state changes until it ends, then its logs"))
    .requiredOption('--job-run-id <id>', 'the job run')
    .action(async (values: DataValues) => watch(values, io));
  return group;
}

async function submit(values: DataValues, io: DataIo): Promise<void> {
  const request = requestOf(values);
  const clients = clientsOf(io, values.region);
  const deployed = await readSparkDeployment(clients.ssm, values.prefix, request);
  const { upload, input } = sparkJobRun(deployed, request);
  if (values.dryRun) {
    io.out(JSON.stringify({ upload: `s3://${upload.bucket}/${upload.key}`, startJobRun: input }, null, 2));
    return;
  }
  await clients.s3.send(
    new PutObjectCommand({
      Bucket: upload.bucket,
      Key: upload.key,
      Body: request.config,
      ContentType: 'application/yaml',
    }),
  );
  const started = await clients.emr.send(new StartJobRunCommand(input));
  const jobRunId = started.jobRunId!;
  io.out(`job run ${jobRunId} (${input.name}) on application ${deployed.applicationId}`);
  for (const location of logLocations(input, jobRunId)) io.out(`logs: ${location}`);
  if (values.follow) await follow(clients, deployed.applicationId, jobRunId, io);
}

async function watch(values: DataValues, io: DataIo): Promise<void> {
  const clients = clientsOf(io, values.region);
  const root = parameterRoot(values.prefix, envId(values));
  const applicationId = await clients.ssm.get(platformParameterName(root, 'trainingSparkApplicationId'));
  await follow(clients, applicationId, values.jobRunId!, io);
}

async function follow(clients: DataClients, applicationId: string, jobRunId: string, io: DataIo): Promise<void> {
  let latest: Awaited<ReturnType<typeof getRun>> | undefined;
  const getRun = async (): Promise<{ state: string; details?: string; run: unknown }> => {
    const { jobRun } = await clients.emr.send(new GetJobRunCommand({ applicationId, jobRunId }));
    if (!jobRun?.state) throw new UserError(`job run ${jobRunId} of application ${applicationId} has no state`);
    return { state: jobRun.state, details: jobRun.stateDetails || undefined, run: jobRun };
  };
  const final = await followJobRun(
    async () => (latest = await getRun()),
    io.out,
    () => new Promise((resolve) => setTimeout(resolve, io.pollMs ?? DEFAULT_POLL_MS)),
  );
  const run = latest?.run as Parameters<typeof logLocations>[0] | undefined;
  for (const location of run ? logLocations(run, jobRunId) : []) io.out(`logs: ${location}`);
  if (final.state !== 'SUCCESS') {
    io.err(`job run ${jobRunId} ended ${final.state}${final.details ? `: ${final.details}` : ''}`);
    io.setExitCode?.(EXIT_FAILED);
  }
}

function requestOf(values: DataValues): SparkDataRequest {
  const environment = envId(values);
  const run = values.run ?? values.experiment;
  if (!run) throw new UsageError('--run is required in production (the run stack whose role the job uses)');
  if (!ExperimentNameSchema.safeParse(run).success) {
    throw new UsageError(`--run = ${JSON.stringify(run)}: must be ${NAME_RULE_TEXT}`);
  }
  let config: Uint8Array;
  try {
    config = readFileSync(values.config!);
  } catch (err) {
    throw new UserError(`--config = '${values.config}': cannot be read (${(err as Error).message})`);
  }
  if (!/\.(ya?ml|json)$/.test(values.config!)) {
    throw new UsageError(`--config = '${values.config}': must be a .yaml, .yml or .json pipeline config`);
  }
  return {
    stage: values.stage,
    envId: environment,
    run,
    config,
    configFileName: basename(values.config!),
    steps: parseSteps(values.steps),
  };
}

function clientsOf(io: DataIo, region: string): DataClients {
  return (
    io.dataClients?.(region) ?? {
      ssm: new SsmParameterReader({ region }),
      s3: new S3Client({ region }),
      emr: new EMRServerlessClient({ region }),
    }
  );
}

/** Exit code of a job run that failed or was cancelled (as `dapt train watch`'s). */
const EXIT_FAILED = 1;
/** EMR Serverless job runs change state over minutes; a look every 15 s is plenty. */
const DEFAULT_POLL_MS = 15_000;
