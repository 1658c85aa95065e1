/**
 * The data pipeline as an EMR Serverless job run: what the deployed stacks say (SSM), the
 * StartJobRun request built from them (pure, tested without AWS), and following a run to its end.
 */
import { createHash } from 'node:crypto';
import type { StartJobRunCommandInput } from '@aws-sdk/client-emr-serverless';
import { parameterRoot, platformParameterName, RUNS_PREFIX, runParameterName } from '../lib/config/parameter-names';
import { dataJobEnvironment, SPARK_JOB, sparkSubmitParameters } from '../lib/config/spark-job';
import { ParameterNotFound, type SsmParameterReader } from './ssm';
import { UsageError, UserError } from './train-lib';

/** What a deployed environment (and run stack) offers a Spark data job. */
export interface SparkDeployment {
  readonly applicationId: string;
  readonly roleArn: string;
  readonly artifactsBucket: string;
  readonly datasetsBucket: string;
  readonly lakeKeyArn: string;
  readonly logGroup: string;
  readonly logKeyArn: string;
}

/** One submission: whose data, for which run, which config. */
export interface SparkDataRequest {
  readonly stage: 'production' | 'experiment';
  readonly envId: string;
  /** The run the outputs belong to; in production its run stack brings the role. */
  readonly run: string;
  /** The pipeline config as given (YAML or JSON). */
  readonly config: Uint8Array;
  readonly configFileName: string;
  /** @default - every step */
  readonly steps?: readonly string[];
  /** Tag values of the job run, e.g. `{ project: 'dapt-platform' }`. */
  readonly tags?: Readonly<Record<string, string>>;
}

/** EMR Serverless job-run states after which nothing changes. */
export const TERMINAL_STATES = new Set(['SUCCESS', 'FAILED', 'CANCELLED']);

/**
 * Reads what the stacks published: the environment's application, log group and keys, and the
 * role of the run stack (production) or of the environment (an experiment stage).
 */
export async function readSparkDeployment(
  ssm: SsmParameterReader,
  prefix: string,
  request: Pick<SparkDataRequest, 'stage' | 'envId' | 'run'>,
): Promise<SparkDeployment> {
  const root = parameterRoot(prefix, request.envId);
  const read = async (name: string, what: string): Promise<string> => {
    try {
      const value = await ssm.get(name);
      if (value === 'none') throw new ParameterNotFound(`${name} is 'none'`);
      return value;
    } catch (err) {
      if (err instanceof ParameterNotFound) {
        throw new UserError(`${what} is not deployed (SSM ${name}): ${deployHint(request, prefix)}`);
      }
      throw err;
    }
  };
  const roleName =
    request.stage === 'production'
      ? runParameterName(root, request.run, 'spark-job-role')
      : platformParameterName(root, 'trainingSparkJobRoleArn');
  const platform = (key: Parameters<typeof platformParameterName>[1], what: string): Promise<string> =>
    read(platformParameterName(root, key), what);
  const [applicationId, roleArn, artifactsBucket, datasetsBucket, lakeKeyArn, logGroup, logKeyArn] = await Promise.all([
    platform('trainingSparkApplicationId', 'the EMR Serverless application'),
    read(
      roleName,
      request.stage === 'production' ? `the Spark job role of run '${request.run}'` : 'the Spark job role',
    ),
    platform('artifactsBucket', 'the artifacts zone'),
    platform('datasetsBucket', 'the datasets zone'),
    platform('lakeKeyArn', 'the lake key'),
    platform('trainingSparkLogGroup', 'the Spark log group'),
    platform('trainingKeyArn', 'the training key'),
  ]);
  return { applicationId, roleArn, artifactsBucket, datasetsBucket, lakeKeyArn, logGroup, logKeyArn };
}

function deployHint(request: Pick<SparkDataRequest, 'stage' | 'run'>, prefix: string): string {
  return request.stage === 'production'
    ? `deploy the run stack first (npx cdk deploy -c stage=production -c run=${request.run}; stacks prefixed '${prefix}')`
    : 'deploy the environment first (npx cdk deploy --all -c stage=experiment -c experiment=NAME)';
}

/** Where a run's outputs may go: `runs/<run>/` in production, the whole zones in an experiment stage. */
export function writePrefixFor(request: Pick<SparkDataRequest, 'stage' | 'run'>): string {
  return request.stage === 'production' ? `${RUNS_PREFIX}${request.run}/` : '';
}

/** The config's upload and the StartJobRun request; the same config gives the same name and token. */
export function sparkJobRun(
  deployed: SparkDeployment,
  request: SparkDataRequest,
): { upload: { bucket: string; key: string }; input: StartJobRunCommandInput } {
  const id = createHash('sha256').update(request.config).digest('hex').slice(0, 8);
  const suffix = request.configFileName.endsWith('.json') ? 'json' : 'yaml';
  const upload = { bucket: deployed.datasetsBucket, key: `${RUNS_PREFIX}${request.run}/data/${id}/pipeline.${suffix}` };
  const writePrefix = writePrefixFor(request);
  const environment = dataJobEnvironment({
    configUri: `s3://${upload.bucket}/${upload.key}`,
    stage: request.stage,
    envId: request.envId,
    writePrefix,
    steps: request.steps,
  });
  const name = `${request.run}-data-${id}${request.steps?.length ? `-${request.steps.join('-')}` : ''}`;
  const input: StartJobRunCommandInput = {
    applicationId: deployed.applicationId,
    executionRoleArn: deployed.roleArn,
    name,
    // Idempotent: resubmitting the same config and steps returns the run already started.
    clientToken: name.slice(0, 64),
    jobDriver: {
      sparkSubmit: {
        entryPoint: `s3://${deployed.artifactsBucket}/${SPARK_JOB.entryPoint}`,
        entryPointArguments: [...SPARK_JOB.entryPointArguments],
        sparkSubmitParameters: sparkSubmitParameters(deployed.artifactsBucket, environment),
      },
    },
    configurationOverrides: { monitoringConfiguration: monitoringFor(deployed, writePrefix) },
    tags: { ...request.tags, 'dapt:run': request.run },
  };
  return { upload, input };
}

/** A run's logs: in the artifacts zone under its role's prefix (the only place it may write them) and in CloudWatch. */
function monitoringFor(
  deployed: SparkDeployment,
  writePrefix: string,
): NonNullable<NonNullable<StartJobRunCommandInput['configurationOverrides']>['monitoringConfiguration']> {
  return {
    s3MonitoringConfiguration: {
      logUri: `s3://${deployed.artifactsBucket}/${writePrefix}${SPARK_JOB.logsPrefix}`,
      encryptionKeyArn: deployed.lakeKeyArn,
    },
    cloudWatchLoggingConfiguration: {
      enabled: true,
      logGroupName: deployed.logGroup,
      logStreamNamePrefix: SPARK_JOB.logStreamPrefix,
      encryptionKeyArn: deployed.logKeyArn,
    },
  };
}

/**
 * Where a job run's logs are, as EMR Serverless lays them out: S3
 * `<logUri>applications/<app>/jobs/<run>/` and CloudWatch streams
 * `<prefix>/applications/<app>/jobs/<run>/...`.
 */
export function logLocations(
  input: Pick<StartJobRunCommandInput, 'applicationId' | 'configurationOverrides'>,
  jobRunId: string,
): string[] {
  const monitoring = input.configurationOverrides?.monitoringConfiguration;
  const path = `applications/${input.applicationId}/jobs/${jobRunId}/`;
  const out: string[] = [];
  if (monitoring?.s3MonitoringConfiguration?.logUri) out.push(`${monitoring.s3MonitoringConfiguration.logUri}${path}`);
  const cw = monitoring?.cloudWatchLoggingConfiguration;
  if (cw?.enabled) out.push(`CloudWatch ${cw.logGroupName}, streams ${cw.logStreamNamePrefix}/${path}`);
  return out;
}

/** One look at a job run. */
export interface JobRunState {
  readonly state: string;
  readonly details?: string;
}

/**
 * Polls `get` until the run is in a terminal state, printing each change of state (and its
 * details) once; resolves to the final state.
 */
export async function followJobRun(
  get: () => Promise<JobRunState>,
  out: (line: string) => void,
  sleep: () => Promise<void>,
): Promise<JobRunState> {
  let last: string | undefined;
  for (;;) {
    const current = await get();
    const line = current.details ? `${current.state}: ${current.details}` : current.state;
    if (line !== last) out(`state ${line}`);
    last = line;
    if (TERMINAL_STATES.has(current.state)) return current;
    await sleep();
  }
}

/**
 * `--steps a,b` as a list (undefined: every step). Only the form is checked here: dapt-data
 * itself refuses unknown steps, naming the ones it has, so the list lives in one place.
 */
export function parseSteps(raw: string | undefined): string[] | undefined {
  if (raw === undefined || raw === 'all') return undefined;
  const steps = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const bad = steps.filter((s) => !/^[a-z]+$/.test(s));
  if (steps.length === 0 || bad.length > 0) {
    throw new UsageError(`--steps = '${raw}': must be 'all' or step names (lowercase letters) separated by commas`);
  }
  return steps;
}
