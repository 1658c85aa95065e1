import { Aws, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as athena from 'aws-cdk-lib/aws-athena';
import * as glue from 'aws-cdk-lib/aws-glue';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
import type { ResolvedConfig } from '../config/load';
import { AccessLogsBucket } from '../constructs/access-logs-bucket';
import { PlatformKey } from '../constructs/platform-key';
import { PlatformParameters, type PlatformParameterKey } from '../constructs/platform-parameters';
import { SecureBucket } from '../constructs/secure-bucket';
import { TRAIL_ACCESS_LOGS_PREFIX, trailBucketName } from './audit-stack';

/**
 * The zones of the lake, in the order data moves through them:
 * raw (as ingested) -> curated (cleaned, redacted) -> datasets (versioned training mixes)
 * -> models (checkpoints, merged weights, adapters) -> eval (benchmarks, per-item results)
 * -> artifacts (reports, manifests, anything else a run records).
 */
export const LAKE_ZONES = ['raw', 'curated', 'datasets', 'models', 'eval', 'artifacts'] as const;
export type LakeZone = (typeof LAKE_ZONES)[number];

/** Prefix of Athena query results in the eval bucket. */
export const ATHENA_RESULTS_PREFIX = 'athena-results/';

export interface DataLakeStackProps extends StackProps {
  /** The resolved stage config; the stack reads `dataLake`, `audit.cloudTrail`, `prefix` and `envId`. */
  readonly config: ResolvedConfig;
}

/**
 * The S3 data lake: one bucket per zone, all encrypted with one customer-managed key, logged to
 * an access-logs bucket, and a Glue database plus Athena workgroup to query evaluation results.
 */
export class DataLakeStack extends Stack {
  readonly key: kms.Key;
  readonly buckets: Readonly<Record<LakeZone, s3.Bucket>>;
  readonly accessLogsBucket: s3.Bucket;
  readonly glueDatabaseName: string;
  readonly athenaWorkGroupName: string;

  constructor(scope: Construct, id: string, props: DataLakeStackProps) {
    super(scope, id, props);
    const { config } = props;
    const destroyOnDelete = config.behaviour.destroyOnDelete;
    this.key = new PlatformKey(this, 'LakeKey', {
      alias: `${config.prefix}-${config.envId}-lake`,
      description: `Encrypts every zone of the ${config.prefix}-${config.envId} data lake`,
      destroyOnDelete,
    }).key;
    this.accessLogsBucket = new AccessLogsBucket(this, 'AccessLogsBucket', {
      expirationDays: config.dataLake.accessLogExpirationDays,
      noncurrentVersionExpirationDays: config.dataLake.noncurrentVersionExpirationDays,
      abortIncompleteUploadDays: config.dataLake.abortIncompleteUploadDays,
      destroyOnDelete: config.behaviour.destroyOnDelete,
    }).bucket;
    // The audit stack's trail bucket logs here too; its statement is written here, where the
    // policy lives, naming that bucket (by its fixed name) and this account.
    if (config.audit.cloudTrail) this.accessLogsBucket.addToResourcePolicy(trailBucketLogsStatement(this, config));
    const buckets = {} as Record<LakeZone, s3.Bucket>;
    for (const zone of LAKE_ZONES) {
      buckets[zone] = new SecureBucket(this, zoneId(zone), {
        encryptionKey: this.key,
        accessLogsBucket: this.accessLogsBucket,
        accessLogsPrefix: `${zone}/`,
        abortIncompleteUploadDays: config.dataLake.abortIncompleteUploadDays,
        noncurrentVersionExpirationDays: config.dataLake.noncurrentVersionExpirationDays,
        destroyOnDelete,
      }).bucket;
    }
    this.buckets = buckets;
    this.glueDatabaseName = createEvalDatabase(this, config);
    this.athenaWorkGroupName = createEvalWorkGroup(this, config, buckets.eval, this.key);
    this.publishParameters(config.ssmRoot);
  }

  /** What the later stacks and the CLI read about the lake. */
  private publishParameters(ssmRoot: string): void {
    const parameters = new PlatformParameters(this, 'Parameters', ssmRoot);
    parameters.publish('lakeKeyArn', this.key.keyArn, 'KMS key of every lake zone');
    for (const zone of LAKE_ZONES) {
      parameters.publish(`${zone}Bucket` as PlatformParameterKey, this.buckets[zone].bucketName, `Lake zone '${zone}'`);
    }
    parameters.publish('accessLogsBucket', this.accessLogsBucket.bucketName, 'Server access logs of the lake');
    parameters.publish('glueDatabase', this.glueDatabaseName, 'Glue database of evaluation results');
    parameters.publish('athenaWorkGroup', this.athenaWorkGroupName, 'Athena workgroup for evaluation queries');
  }
}

/** Lets S3 deliver the trail bucket's server access logs here: that bucket only, this account only. */
function trailBucketLogsStatement(bucket: DataLakeStack, config: ResolvedConfig): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'AllowAccessLogsOfTheTrailBucket',
    principals: [new iam.ServicePrincipal('logging.s3.amazonaws.com')],
    actions: ['s3:PutObject'],
    resources: [bucket.accessLogsBucket.arnForObjects(`${TRAIL_ACCESS_LOGS_PREFIX}*`)],
    conditions: {
      ArnLike: { 'aws:SourceArn': `arn:${Aws.PARTITION}:s3:::${trailBucketName(config)}` },
      StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID },
    },
  });
}

/** The Glue database the eval stack's results table lives in; returns its name. */
function createEvalDatabase(stack: Stack, config: ResolvedConfig): string {
  const name = `${config.prefix}_${config.envId}_eval`.replace(/-/g, '_');
  new glue.CfnDatabase(stack, 'EvalDatabase', {
    catalogId: stack.account,
    databaseInput: {
      name,
      description: 'Evaluation results (per-item and aggregated) of this environment, queried with Athena',
    },
  }).applyRemovalPolicy(config.behaviour.destroyOnDelete ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN);
  return name;
}

/** An Athena workgroup whose query results land in the eval bucket, encrypted with the lake key; returns its name. */
function createEvalWorkGroup(stack: Stack, config: ResolvedConfig, evalBucket: s3.IBucket, key: kms.IKey): string {
  const name = `${config.prefix}-${config.envId}-eval`;
  new athena.CfnWorkGroup(stack, 'EvalWorkGroup', {
    name,
    description: 'Queries over evaluation results; results encrypted with the lake key',
    recursiveDeleteOption: config.behaviour.destroyOnDelete,
    workGroupConfiguration: {
      enforceWorkGroupConfiguration: true,
      publishCloudWatchMetricsEnabled: true,
      resultConfiguration: {
        outputLocation: evalBucket.s3UrlForObject(ATHENA_RESULTS_PREFIX),
        encryptionConfiguration: { encryptionOption: 'SSE_KMS', kmsKey: key.keyArn },
      },
    },
  }).applyRemovalPolicy(config.behaviour.destroyOnDelete ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN);
  return name;
}

/** `raw` -> `RawZone`. */
function zoneId(zone: LakeZone): string {
  return `${zone.charAt(0).toUpperCase()}${zone.slice(1)}Zone`;
}
