import { Stack, type StackProps } from 'aws-cdk-lib';
import type * as batch from 'aws-cdk-lib/aws-batch';
import type * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import type { ResolvedConfig } from '../config/load';
import { runParameterName } from '../config/parameter-names';
import { DataPrepJob } from '../constructs/data-prep-job';
import { LakeImports } from '../constructs/lake-imports';
import { PlatformParameters, readPlatformParameter } from '../constructs/platform-parameters';
import { SparkJobRole } from '../constructs/spark-job-role';
import { createExecutionRole, RUNS_PREFIX, TrainerJobs, trainerImage } from '../constructs/trainer-jobs';

export interface RunStackProps extends StackProps {
  /** The resolved stage config (production); the stack reads `training`, `prefix`, `envId` and `ssmRoot`. */
  readonly config: ResolvedConfig;
  /** The experiment this stack isolates; its jobs write only under `runs/<run>/`. */
  readonly run: string;
  /**
   * Earlier runs whose models this run may read (e.g. the DAPT run an SFT run starts from).
   * @default - none: the run reads base models and its own outputs only
   */
  readonly upstreamRuns?: readonly string[];
}

/**
 * One experiment on a shared platform: its own job role, allowed to write only under
 * `runs/<run>/` of the models and artifacts zones and to read only base models, its own run's and
 * its named upstream runs' models, and its own single-node and multi-node job
 * definitions using that role. Everything else (queues, compute, lake, keys, log group) is the
 * platform's, read through SSM, so the stack deploys and goes away without touching the platform.
 */
export class RunStack extends Stack {
  readonly config: ResolvedConfig;
  readonly jobs: TrainerJobs;
  readonly dataPrepJob: batch.EcsJobDefinition;
  /** The role of this run's Spark data jobs on the platform's EMR Serverless application. */
  readonly sparkJobRole: iam.Role;

  constructor(scope: Construct, id: string, props: RunStackProps) {
    super(scope, id, props);
    const { config, run } = props;
    this.config = config;
    const read = (key: Parameters<typeof readPlatformParameter>[2]): string =>
      readPlatformParameter(this, config.ssmRoot, key);
    const lake = new LakeImports(this, config.ssmRoot);
    const buckets = lake.zones('datasets', 'models', 'artifacts', 'curated');
    const trainingKey = kms.Key.fromKeyArn(this, 'TrainingKey', read('trainingKeyArn'));
    const logGroup = logs.LogGroup.fromLogGroupName(this, 'JobLogs', read('trainingJobLogGroup'));

    // The same image settings as the training stack's: the same asset hash, so no rebuild.
    const image = trainerImage(this);
    const executionRole = createExecutionRole(this, logGroup.logGroupArn, trainingKey).withoutPolicyUpdates();
    this.jobs = new TrainerJobs(this, 'TrainerJobs', {
      config,
      namePrefix: `${config.prefix}-${config.envId}-run-${run}`,
      writePrefix: `${RUNS_PREFIX}${run}/`,
      modelReadPrefixes: [run, ...(props.upstreamRuns ?? [])].map((name) => `${RUNS_PREFIX}${name}/`),
      buckets,
      lakeKeyArn: lake.keyArn(),
      image,
      executionRole,
      logGroup,
    });

    const parameters = new PlatformParameters(this, 'Parameters', config.ssmRoot);
    parameters.publishAt(
      runParameterName(config.ssmRoot, run, 'single-node'),
      this.jobs.singleNode.jobDefinitionArn,
      `Single-node training job definition of run '${run}'`,
    );
    parameters.publishAt(
      runParameterName(config.ssmRoot, run, 'multi-node'),
      this.jobs.multiNode?.jobDefinitionArn ?? 'none',
      `Multi-node training job definition of run '${run}' ('none' when maxNodes is 1)`,
    );
    parameters.publishAt(
      runParameterName(config.ssmRoot, run, 'tokenize'),
      this.jobs.tokenize.jobDefinitionArn,
      `Token-cache job definition of run '${run}' (CPU queue)`,
    );

    // The data pipeline of this run: reads the input zones, writes curated records and manifests
    // only under runs/<run>/ (a shared environment's data must not be rewritten by one run).
    this.dataPrepJob = new DataPrepJob(this, 'DataPrep', {
      stage: config.stage,
      envId: config.envId,
      namePrefix: `${config.prefix}-${config.envId}-run-${run}`,
      writePrefix: `${RUNS_PREFIX}${run}/`,
      buckets: { raw: lake.bucket('raw'), curated: buckets.curated, datasets: buckets.datasets },
      lakeKeyArn: lake.keyArn(),
      executionRole,
      logGroup,
    }).definition;
    parameters.publishAt(
      runParameterName(config.ssmRoot, run, 'data-prep'),
      this.dataPrepJob.jobDefinitionArn,
      `Training-data pipeline job definition of run '${run}' (CPU queue)`,
    );

    // The same pipeline as a Spark job on the platform's application, with the same scope.
    const sparkLogGroup = logs.LogGroup.fromLogGroupName(this, 'SparkLogs', read('trainingSparkLogGroup'));
    this.sparkJobRole = new SparkJobRole(this, 'SparkData', {
      namePrefix: `${config.prefix}-${config.envId}-run-${run}`,
      applicationArn: read('trainingSparkApplicationArn'),
      writePrefix: `${RUNS_PREFIX}${run}/`,
      buckets: {
        raw: lake.bucket('raw'),
        curated: buckets.curated,
        datasets: buckets.datasets,
        artifacts: buckets.artifacts,
      },
      lakeKeyArn: lake.keyArn(),
      logGroupArn: sparkLogGroup.logGroupArn,
      logKeyArn: trainingKey.keyArn,
    }).role;
    parameters.publishAt(
      runParameterName(config.ssmRoot, run, 'spark-job-role'),
      this.sparkJobRole.roleArn,
      `Role of run '${run}''s Spark data jobs (EMR Serverless)`,
    );
  }
}
