import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { acknowledge } from '../compliance/acknowledge';

export interface AccessLogsBucketProps {
  /** Days a log object is kept. */
  readonly expirationDays: number;
  /** Days a noncurrent log object version is kept. */
  readonly noncurrentVersionExpirationDays: number;
  /** Days after which an unfinished multipart upload is aborted. */
  readonly abortIncompleteUploadDays: number;
  /** Delete the bucket and its objects with the stack (experiment) instead of keeping them. */
  readonly destroyOnDelete: boolean;
}

/**
 * The destination of other buckets' server access logs. S3 delivers access logs only to buckets
 * with SSE-S3 default encryption, so this is the one kind of bucket without a customer-managed key
 * (acknowledged here). The rule packs recognise a log destination and do not ask it to log itself.
 * The bucket is this construct's `Default` child: it keeps the logical id it had at the top level.
 */
export class AccessLogsBucket extends Construct {
  readonly bucket: s3.Bucket;

  constructor(scope: Construct, id: string, props: AccessLogsBucketProps) {
    super(scope, id);
    this.bucket = new s3.Bucket(this, 'Default', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      versioned: true,
      lifecycleRules: [
        {
          id: 'expire-access-logs',
          expiration: Duration.days(props.expirationDays),
          noncurrentVersionExpiration: Duration.days(props.noncurrentVersionExpirationDays),
          abortIncompleteMultipartUploadAfter: Duration.days(props.abortIncompleteUploadDays),
        },
      ],
      removalPolicy: props.destroyOnDelete ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN,
      autoDeleteObjects: props.destroyOnDelete,
    });
    acknowledge(
      this.bucket,
      ['NIST.800.53.R5-S3DefaultEncryptionKMS', 'HIPAA.Security-S3DefaultEncryptionKMS'],
      'S3 delivers server access logs only to buckets whose default encryption is SSE-S3 (AES-256); SSE-KMS is not supported for this destination.',
    );
    acknowledge(
      this.bucket,
      ['NIST.800.53.R5-S3BucketReplicationEnabled', 'HIPAA.Security-S3BucketReplicationEnabled'],
      'Access logs stay in-region with the data they describe; replication is a per-deployment data-residency decision.',
    );
  }
}
