import { Aws, Stack, type StackProps } from 'aws-cdk-lib';
import * as cloudtrail from 'aws-cdk-lib/aws-cloudtrail';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
import { acknowledge } from '../compliance/acknowledge';
import type { ResolvedConfig } from '../config/load';
import { EncryptedLogGroup } from '../constructs/encrypted-log-group';
import { PlatformKey } from '../constructs/platform-key';
import { SecureBucket } from '../constructs/secure-bucket';

export interface AuditStackProps extends StackProps {
  readonly config: ResolvedConfig;
  /** Buckets whose object-level (data) events are recorded. */
  readonly dataBuckets: readonly s3.IBucket[];
  /** Where the trail bucket's own server access logs go. */
  readonly accessLogsBucket: s3.IBucket;
}

/**
 * The audit trail of the production environment: a multi-region CloudTrail trail with log-file
 * validation, the lake's S3 data events, encrypted with its own key, delivered to its own bucket
 * and to CloudWatch Logs for alarms and queries.
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
    trailKey.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'AllowCloudTrailToEncryptThisTrail',
        principals: [new iam.ServicePrincipal('cloudtrail.amazonaws.com')],
        actions: ['kms:GenerateDataKey*', 'kms:DescribeKey'],
        resources: ['*'],
        conditions: {
          StringEquals: { 'aws:SourceArn': trailArn },
          StringLike: { 'kms:EncryptionContext:aws:cloudtrail:arn': `arn:${Aws.PARTITION}:cloudtrail:*:${Aws.ACCOUNT_ID}:trail/*` },
        },
      }),
    );

    const trailBucket = new SecureBucket(this, 'TrailBucket', {
      encryptionKey: trailKey,
      accessLogsBucket: props.accessLogsBucket,
      accessLogsPrefix: 'cloudtrail/',
      abortIncompleteUploadDays: config.dataLake.abortIncompleteUploadDays,
      noncurrentVersionExpirationDays: config.dataLake.noncurrentVersionExpirationDays,
      destroyOnDelete,
    }).bucket;

    const trailLogs = new EncryptedLogGroup(this, 'TrailLogs', {
      encryptionKey: trailKey,
      retentionDays: config.logRetentionDays,
      destroyOnDelete,
    });

    this.trail = new cloudtrail.Trail(this, 'Trail', {
      trailName,
      bucket: trailBucket,
      encryptionKey: trailKey,
      enableFileValidation: true,
      isMultiRegionTrail: true,
      includeGlobalServiceEvents: true,
      sendToCloudWatchLogs: true,
      cloudWatchLogGroup: trailLogs.logGroup,
    });
    const logsRolePolicy = this.trail.node.tryFindChild('LogsRole')?.node.tryFindChild('DefaultPolicy');
    if (logsRolePolicy) {
      acknowledge(
        logsRolePolicy,
        ['NIST.800.53.R5-IAMNoInlinePolicy', 'HIPAA.Security-IAMNoInlinePolicy'],
        "The Trail construct creates its CloudWatch Logs role and this policy itself (CreateLogStream/PutLogEvents on the trail's log group only) and offers no way to pass a managed policy.",
      );
    }
    this.trail.addS3EventSelector(
      props.dataBuckets.map((bucket) => ({ bucket })),
      {
        readWriteType: config.audit.recordS3ReadEvents ? cloudtrail.ReadWriteType.ALL : cloudtrail.ReadWriteType.WRITE_ONLY,
        includeManagementEvents: true,
      },
    );
  }
}
