import { Duration, Size } from 'aws-cdk-lib';
import * as batch from 'aws-cdk-lib/aws-batch';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import type { ExpectedWildcard } from '../compliance/acknowledge';
import { ManagedRole } from './managed-role';
import { FARGATE_RETRY_STRATEGIES } from './trainer-jobs';
import { WRITE_PREFIX_ENV } from '../config/spark-job';
import { repositoryImage } from './repository-image';

export interface DataPrepJobProps {
  /** Stage and environment id the job is told about (`DAPT_STAGE`, `DAPT_ENV_ID`). */
  readonly stage: string;
  /** The environment id (`prod`, or the experiment's name). */
  readonly envId: string;
  /** Start of the job definition's name, e.g. `dapt-exp-demo` or `dapt-prod-run-lora7b`. */
  readonly namePrefix: string;
  /** Prefix of the curated and datasets zones the job may write: '' (the whole zones, in an experiment stage) or `runs/<run>/`. */
  readonly writePrefix: string;
  /** The lake zones the pipeline reads (all three) and writes (curated, datasets). */
  readonly buckets: Record<'raw' | 'curated' | 'datasets', s3.IBucket>;
  /** The lake's key, which encrypts every zone. */
  readonly lakeKeyArn: string;
  /** Pulls the image and writes the job's logs. */
  readonly executionRole: iam.IRole;
  /** Where the job's container logs go (the training log group). */
  readonly logGroup: logs.ILogGroup;
}

/**
 * The training-data pipeline (containers/data) on the Fargate queue: reads the raw, curated and
 * datasets zones, writes curated records and dataset manifests under `writePrefix` (the job is
 * told the prefix, and dapt-data refuses outputs outside it). Its image is built from the
 * repository root because dapt-data depends on dapt-eval.
 */
export class DataPrepJob extends Construct {
  readonly definition: batch.EcsJobDefinition;
  readonly role: iam.Role;

  constructor(scope: Construct, id: string, props: DataPrepJobProps) {
    super(scope, id);
    const image = repositoryImage(this, 'Image', {
      dockerfile: 'containers/data/Dockerfile',
      packages: ['eval', 'data'],
    });
    this.role = createRole(this, props);
    this.definition = new batch.EcsJobDefinition(this, 'Definition', {
      jobDefinitionName: `${props.namePrefix}-data-prep`,
      container: new batch.EcsFargateContainerDefinition(this, 'Container', {
        image: ecs.ContainerImage.fromDockerImageAsset(image),
        cpu: DEFAULT_DATA_PREP_VCPUS,
        memory: DEFAULT_DATA_PREP_MEMORY,
        ephemeralStorageSize: DEFAULT_DATA_PREP_DISK,
        jobRole: this.role,
        executionRole: props.executionRole,
        logging: ecs.LogDriver.awsLogs({ logGroup: props.logGroup, streamPrefix: 'data-prep' }),
        environment: { DAPT_STAGE: props.stage, DAPT_ENV_ID: props.envId, [WRITE_PREFIX_ENV]: props.writePrefix },
        fargateCpuArchitecture: ecs.CpuArchitecture.X86_64,
      }),
      retryAttempts: DEFAULT_FARGATE_ATTEMPTS,
      // The pipeline resumes finished steps on a retry.
      retryStrategies: FARGATE_RETRY_STRATEGIES,
      timeout: DEFAULT_DATA_PREP_TIMEOUT,
      propagateTags: true,
    });
  }
}

/** Reads the input zones, writes curated records and manifests under the prefix, detects PII. */
function createRole(scope: Construct, props: DataPrepJobProps): iam.Role {
  const written = props.writePrefix === '' ? 'whole zones' : `under '${props.writePrefix}' only`;
  return new ManagedRole(scope, 'Role', {
    assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
    description: `Training-data pipeline jobs of ${props.namePrefix}: read raw inputs, write curated records and dataset manifests (${written})`,
    statements: dataPipelineStatements(props),
    wildcards: dataPipelineWildcards(props.writePrefix),
  }).role;
}

/**
 * What the training-data pipeline may do, wherever it runs (this Batch job, the EMR Serverless
 * job of spark-job-role.ts): read the input zones, write curated records and manifests under the
 * prefix, use the lake key, detect PII.
 */
export function dataPipelineStatements(
  props: Pick<DataPrepJobProps, 'buckets' | 'writePrefix' | 'lakeKeyArn'>,
): iam.PolicyStatement[] {
  const { buckets, writePrefix } = props;
  const zones = [buckets.raw, buckets.curated, buckets.datasets];
  return [
    new iam.PolicyStatement({
      sid: 'ReadInputs',
      actions: ['s3:GetObject'],
      resources: zones.map((b) => b.arnForObjects('*')),
    }),
    new iam.PolicyStatement({
      sid: 'ListZones',
      actions: ['s3:ListBucket'],
      resources: zones.map((b) => b.bucketArn),
    }),
    new iam.PolicyStatement({
      sid: 'WriteCuratedAndManifests',
      actions: ['s3:PutObject', 's3:AbortMultipartUpload'],
      resources: [buckets.curated, buckets.datasets].map((b) => b.arnForObjects(`${writePrefix}*`)),
    }),
    new iam.PolicyStatement({
      sid: 'UseLakeKey',
      actions: ['kms:Decrypt', 'kms:GenerateDataKey'],
      resources: [props.lakeKeyArn],
    }),
    new iam.PolicyStatement({ sid: 'DetectPii', actions: ['comprehend:DetectPiiEntities'], resources: ['*'] }),
  ];
}

/** The wildcards `dataPipelineStatements` grants, each with its reason. */
export function dataPipelineWildcards(writePrefix: string): ExpectedWildcard[] {
  const wildcards: ExpectedWildcard[] = [
    {
      pattern: /^\*$/,
      reason: 'comprehend:DetectPiiEntities (redaction with `detector: comprehend`) has no resource-level permissions.',
    },
    {
      pattern: /^arn:(aws[a-z-]*|<AWS::Partition>):s3:::<[A-Za-z0-9]+>\/\*$/,
      reason:
        'The pipeline reads whole input zones (names chosen by its config); in an experiment stage, which belongs to one experiment, it also writes new versioned outputs there (manifests refuse overwrites). It never touches models or artifacts.',
    },
  ];
  if (writePrefix === '') return wildcards;
  const escaped = writePrefix.replace(/[/-]/g, '\\$&');
  return [
    ...wildcards,
    {
      pattern: new RegExp(`^arn:(aws[a-z-]*|<AWS::Partition>):s3:::<[A-Za-z0-9]+>/${escaped}\\*$`),
      reason: `Curated records and manifests of this run, under '${writePrefix}' only; keys are chosen by the pipeline's config.`,
    },
  ];
}

/** The data pipeline holds each step's records in memory; 4 vCPUs / 30 GiB covers a few GB of text. */
const DEFAULT_DATA_PREP_VCPUS = 4;
const DEFAULT_DATA_PREP_MEMORY = Size.gibibytes(30);
/** Local disk of a data-prep task (Fargate's ephemeral storage): inputs and step outputs before upload. */
const DEFAULT_DATA_PREP_DISK = Size.gibibytes(100);
/** A data pipeline that has not finished in half a day is stuck on something, not slow. */
const DEFAULT_DATA_PREP_TIMEOUT = Duration.hours(12);
/** Attempts of a Fargate job whose task could not start (the retry strategies say which). */
const DEFAULT_FARGATE_ATTEMPTS = 2;
