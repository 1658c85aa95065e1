import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { acknowledge } from '../compliance/acknowledge';

export interface SecureBucketProps {
  /** Customer-managed key for default encryption (SSE-KMS with an S3 bucket key). */
  readonly encryptionKey: kms.IKey;
  /** Bucket that receives this bucket's server access logs. */
  readonly accessLogsBucket: s3.IBucket;
  /** Prefix of this bucket's logs in the access-logs bucket, e.g. `raw/`. */
  readonly accessLogsPrefix: string;
  /** Days after which an unfinished multipart upload is aborted. */
  readonly abortIncompleteUploadDays: number;
  /** Days a noncurrent object version is kept. */
  readonly noncurrentVersionExpirationDays: number;
  /** Delete the bucket and its objects with the stack (experiment) instead of keeping them. */
  readonly destroyOnDelete: boolean;
  /** A fixed name, where another stack must know it before this one exists. @default - generated */
  readonly bucketName?: string;
}

/**
 * An S3 bucket as every bucket of this platform must be: SSE-KMS with a customer-managed key,
 * TLS 1.2+ only, no public access, no ACLs, versioned, access-logged, with a lifecycle that
 * aborts stale uploads and expires old versions.
 */
export class SecureBucket extends Construct {
  readonly bucket: s3.Bucket;

  constructor(scope: Construct, id: string, props: SecureBucketProps) {
    super(scope, id);
    this.bucket = new s3.Bucket(this, 'Bucket', {
      bucketName: props.bucketName,
      encryption: s3.BucketEncryption.KMS,
      encryptionKey: props.encryptionKey,
      bucketKeyEnabled: true,
      enforceSSL: true,
      minimumTLSVersion: DEFAULT_MINIMUM_TLS_VERSION,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      versioned: true,
      serverAccessLogsBucket: props.accessLogsBucket,
      serverAccessLogsPrefix: props.accessLogsPrefix,
      lifecycleRules: [
        {
          id: 'abort-incomplete-uploads-and-expire-old-versions',
          abortIncompleteMultipartUploadAfter: Duration.days(props.abortIncompleteUploadDays),
          noncurrentVersionExpiration: Duration.days(props.noncurrentVersionExpirationDays),
          expiredObjectDeleteMarker: true,
        },
      ],
      removalPolicy: props.destroyOnDelete ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN,
      autoDeleteObjects: props.destroyOnDelete,
    });
    acknowledge(
      this.bucket,
      ['NIST.800.53.R5-S3BucketReplicationEnabled', 'HIPAA.Security-S3BucketReplicationEnabled'],
      'Cross-region replication is a data-residency decision per deployment; versioning, retained buckets in production and KMS protect the data in-region.',
    );
  }
}

/** Oldest TLS version a client may use. */
const DEFAULT_MINIMUM_TLS_VERSION = 1.2;
