import { Aws, Stack, type StackProps } from 'aws-cdk-lib';
import * as cloudtrail from 'aws-cdk-lib/aws-cloudtrail';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import type { Construct } from 'constructs';
import { acknowledge } from '../compliance/acknowledge';
import type { ResolvedConfig } from '../config/load';
import type { ContinuousComplianceConfig } from '../config/schema';
import { ContinuousCompliance } from '../constructs/continuous-compliance';
import { DriftDetection } from '../constructs/drift-detection';
import { EncryptedLogGroup } from '../constructs/encrypted-log-group';
import { PlatformKey } from '../constructs/platform-key';
import { SecureBucket } from '../constructs/secure-bucket';
import { deliveryStackName } from './delivery-stack';

/** Prefix of the trail bucket's server access logs in the lake's access-logs bucket. */
export const TRAIL_ACCESS_LOGS_PREFIX = 'cloudtrail/';

/**
 * The trail bucket's name, fixed so the lake's stack can name it in its access-logs bucket policy
 * before the audit stack exists (account and region make it globally unique).
 */
export function trailBucketName(config: ResolvedConfig): string {
  return `${config.prefix}-${config.envId}-trail-${Aws.ACCOUNT_ID}-${config.region}`;
}

export interface AuditStackProps extends StackProps {
  /** The resolved stage config; the stack reads `audit`, `dataLake` lifecycle days, `prefix` and `envId`. */
  readonly config: ResolvedConfig;
  /** Buckets whose object-level (data) events are recorded. */
  readonly dataBuckets: readonly s3.IBucket[];
  /** Where the trail bucket's own server access logs go. */
  readonly accessLogsBucket: s3.IBucket;
  /**
   * The environment's other stacks, checked for drift with this one where the stage config has
   * `audit.continuousCompliance`.
   * @default - none
   */
  readonly checkedStacks?: readonly Stack[];
  /**
   * The commit being deployed, recorded where the stage has a delivery pipeline.
   * @default - recorded as not built by the pipeline
   */
  readonly sourceCommit?: string;
}

/** What the deployed-commit parameter says when the stage was synthesized outside the pipeline. */
export const NOT_FROM_PIPELINE = 'not built by the delivery pipeline';

/**
 * The audit trail of the production environment: a multi-region CloudTrail trail with log-file
 * validation, the lake's S3 data events, encrypted with its own key, delivered to its own bucket
 * and to CloudWatch Logs for alarms and queries. With `audit.continuousCompliance`, also what
 * keeps checking after deployment: AWS Config with conformance packs mirroring the synth-time
 * cdk-nag packs (delivering to the trail bucket under `config/`), and scheduled drift detection
 * of every stack, both notifying one encrypted compliance topic.
 */
export class AuditStack extends Stack {
  readonly trail: cloudtrail.Trail;

  constructor(scope: Construct, id: string, props: AuditStackProps) {
    super(scope, id, props);
    const { config } = props;
    const destroyOnDelete = config.behaviour.destroyOnDelete;

    const trailKey = new PlatformKey(this, 'TrailKey', {
      alias: `${config.prefix}-${config.envId}-trail`,
      description: `Encrypts the CloudTrail logs of ${config.prefix}-${config.envId}`,
      destroyOnDelete,
    }).key;
    const trailName = `${config.prefix}-${config.envId}-audit`;
    const trailArn = `arn:${Aws.PARTITION}:cloudtrail:${this.region}:${Aws.ACCOUNT_ID}:trail/${trailName}`;
    grantCloudTrailKeyUse(trailKey, trailArn);

    const trailBucket = createTrailBucket(this, config, trailKey, props.accessLogsBucket);

    const trailLogs = new EncryptedLogGroup(this, 'TrailLogs', {
      encryptionKey: trailKey,
      retentionDays: config.logRetentionDays,
      destroyOnDelete,
    });

    allowCloudTrailDelivery(trailBucket, trailArn);
    this.trail = new cloudtrail.Trail(this, 'Trail', {
      trailName,
      // A reference, not the bucket: the construct would add its own delivery statements, without
      // the aws:SourceArn condition, to the bucket policy (see allowCloudTrailDelivery).
      bucket: s3.Bucket.fromBucketAttributes(this, 'TrailBucketRef', {
        bucketArn: trailBucket.bucketArn,
        bucketName: trailBucket.bucketName,
      }),
      encryptionKey: trailKey,
      enableFileValidation: true,
      isMultiRegionTrail: true,
      includeGlobalServiceEvents: true,
      sendToCloudWatchLogs: true,
      cloudWatchLogGroup: trailLogs.logGroup,
    });
    // CloudTrail checks the bucket policy when the trail is created.
    this.trail.node.addDependency(trailBucket.policy!);
    acknowledgeLogsRolePolicy(this.trail);
    this.trail.addS3EventSelector(
      props.dataBuckets.map((bucket) => ({ bucket })),
      {
        readWriteType: config.audit.recordS3ReadEvents
          ? cloudtrail.ReadWriteType.ALL
          : cloudtrail.ReadWriteType.WRITE_ONLY,
        includeManagementEvents: true,
      },
    );
    if (config.delivery) {
      // Written by CloudFormation as part of this deployment: the commit every stack of it came from.
      new ssm.StringParameter(this, 'DeployedCommitParameter', {
        parameterName: `${config.ssmRoot}/delivery/deployed-commit`,
        description: 'The commit (or source object version) the last deployment of this environment was built from',
        stringValue: props.sourceCommit ?? NOT_FROM_PIPELINE,
      });
    }
    const compliance = config.audit.continuousCompliance;
    if (compliance) {
      addContinuousCompliance(
        this,
        config,
        compliance,
        { bucket: trailBucket, key: trailKey },
        props.checkedStacks ?? [],
      );
    }
  }
}

/** AWS Config and its conformance packs, drift detection of `checked` and this stack, and their topic. */
function addContinuousCompliance(
  stack: AuditStack,
  config: ResolvedConfig,
  compliance: ContinuousComplianceConfig,
  delivery: { bucket: s3.IBucket; key: kms.IKey },
  checked: readonly Stack[],
): void {
  const namePrefix = `${config.prefix}-${config.envId}`;
  const key = new PlatformKey(stack, 'ComplianceKey', {
    alias: `${namePrefix}-compliance`,
    description: `Encrypts the compliance notifications and drift-detection logs of ${namePrefix}`,
    destroyOnDelete: config.behaviour.destroyOnDelete,
  }).key;
  const topic = new sns.Topic(stack, 'ComplianceTopic', {
    topicName: `${namePrefix}-compliance`,
    masterKey: key,
    enforceSSL: true,
  });
  for (const email of compliance.notificationEmails) topic.addSubscription(new subscriptions.EmailSubscription(email));
  new ContinuousCompliance(stack, 'ContinuousCompliance', {
    config: compliance,
    namePrefix,
    deliveryBucket: delivery.bucket,
    deliveryKey: delivery.key,
    topic,
    topicKey: key,
  });
  const logGroup = new EncryptedLogGroup(stack, 'DriftDetectionLogs', {
    encryptionKey: key,
    retentionDays: config.logRetentionDays,
    destroyOnDelete: config.behaviour.destroyOnDelete,
    logGroupName: `/aws/vendedlogs/states/${namePrefix}-drift-detection`,
  }).logGroup;
  new DriftDetection(stack, 'DriftDetection', {
    stacks: [...checked, stack],
    otherStackNames: config.delivery ? [deliveryStackName(config)] : [],
    schedule: compliance.driftDetectionSchedule,
    topic,
    topicKey: key,
    logGroup,
    stateMachineName: `${namePrefix}-drift-detection`,
  });
}

/** The trail's own bucket, with its fixed name and the lake's access-logs bucket as log destination. */
function createTrailBucket(stack: Stack, config: ResolvedConfig, key: kms.IKey, accessLogs: s3.IBucket): s3.Bucket {
  return new SecureBucket(stack, 'TrailBucket', {
    bucketName: trailBucketName(config),
    encryptionKey: key,
    // A reference: the lake's stack writes the delivery statement for this bucket itself, with
    // its confused-deputy conditions (CDK's own, added across stacks, has none).
    accessLogsBucket: s3.Bucket.fromBucketName(stack, 'AccessLogsBucketRef', accessLogs.bucketName),
    accessLogsPrefix: TRAIL_ACCESS_LOGS_PREFIX,
    abortIncompleteUploadDays: config.dataLake.abortIncompleteUploadDays,
    noncurrentVersionExpirationDays: config.dataLake.noncurrentVersionExpirationDays,
    destroyOnDelete: config.behaviour.destroyOnDelete,
  }).bucket;
}

/** The Trail construct's CloudWatch Logs role policy is inline and not ours to replace. */
function acknowledgeLogsRolePolicy(trail: cloudtrail.Trail): void {
  const logsRolePolicy = trail.node.tryFindChild('LogsRole')?.node.tryFindChild('DefaultPolicy');
  if (!logsRolePolicy) return;
  acknowledge(
    logsRolePolicy,
    ['NIST.800.53.R5-IAMNoInlinePolicy', 'HIPAA.Security-IAMNoInlinePolicy'],
    "The Trail construct creates its CloudWatch Logs role and this policy itself (CreateLogStream/PutLogEvents on the trail's log group only) and offers no way to pass a managed policy.",
  );
}

/**
 * The key policy sections CloudTrail documents ("Configure AWS KMS key policies for CloudTrail"):
 * encrypt for this trail only; describe the key (DescribeKey carries no encryption context, so
 * that statement must not require one); decrypt for CloudTrail itself, which creating a trail on
 * a bucket with an S3 Bucket Key needs; and decrypt of the log files for this account's principals
 * (their IAM policies decide who actually may).
 */
function grantCloudTrailKeyUse(key: kms.Key, trailArn: string): void {
  const cloudtrail = new iam.ServicePrincipal('cloudtrail.amazonaws.com');
  const thisTrail = { StringEquals: { 'aws:SourceArn': trailArn } };
  const trailContext = `arn:${Aws.PARTITION}:cloudtrail:*:${Aws.ACCOUNT_ID}:trail/*`;
  key.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: 'AllowCloudTrailToEncryptThisTrail',
      principals: [cloudtrail],
      actions: ['kms:GenerateDataKey*'],
      resources: ['*'],
      conditions: { ...thisTrail, StringLike: { 'kms:EncryptionContext:aws:cloudtrail:arn': trailContext } },
    }),
  );
  key.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: 'AllowCloudTrailToDescribeTheKey',
      principals: [cloudtrail],
      actions: ['kms:DescribeKey'],
      resources: ['*'],
      conditions: thisTrail,
    }),
  );
  key.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: 'AllowCloudTrailToDecryptForTheBucketKey',
      principals: [cloudtrail],
      actions: ['kms:Decrypt'],
      resources: ['*'],
      conditions: thisTrail,
    }),
  );
  key.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: 'AllowThisAccountToReadTrailLogs',
      // The account (its IAM policies decide who), where CloudTrail's example has "*" with a
      // kms:CallerAccount condition: the same reach, without a wildcard principal.
      principals: [new iam.AccountRootPrincipal()],
      actions: ['kms:Decrypt', 'kms:ReEncryptFrom'],
      resources: ['*'],
      conditions: {
        StringEquals: { 'kms:CallerAccount': Aws.ACCOUNT_ID },
        StringLike: { 'kms:EncryptionContext:aws:cloudtrail:arn': trailContext },
      },
    }),
  );
}

/** The bucket policy CloudTrail documents, with aws:SourceArn so no other trail can write here. */
function allowCloudTrailDelivery(bucket: s3.Bucket, trailArn: string): void {
  const cloudtrail = new iam.ServicePrincipal('cloudtrail.amazonaws.com');
  bucket.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: 'AllowThisTrailToCheckTheBucketAcl',
      principals: [cloudtrail],
      actions: ['s3:GetBucketAcl'],
      resources: [bucket.bucketArn],
      conditions: { StringEquals: { 'aws:SourceArn': trailArn } },
    }),
  );
  bucket.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: 'AllowThisTrailToDeliverLogFiles',
      principals: [cloudtrail],
      actions: ['s3:PutObject'],
      resources: [bucket.arnForObjects(`AWSLogs/${Aws.ACCOUNT_ID}/*`)],
      conditions: { StringEquals: { 'aws:SourceArn': trailArn, 's3:x-amz-acl': 'bucket-owner-full-control' } },
    }),
  );
}
