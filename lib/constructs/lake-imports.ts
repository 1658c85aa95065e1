import * as s3 from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
import { readPlatformParameter } from './platform-parameters';

/** The zones of the data lake, by the name of their SSM parameter (`<zone>Bucket`). */
export type LakeZone = 'raw' | 'curated' | 'datasets' | 'models' | 'eval' | 'artifacts';

/**
 * The data lake as another stack sees it: buckets and key read through the lake's SSM parameters
 * (no export locks), each imported the first time it is asked for. Only what is used is read, so
 * a stack that needs two zones has two template parameters: an unused one is a cfn-lint finding.
 */
export class LakeImports {
  private readonly buckets = new Map<LakeZone, s3.IBucket>();
  private keyArnValue?: string;

  constructor(
    private readonly scope: Construct,
    private readonly ssmRoot: string,
  ) {}

  /** The zone's bucket, imported by name (construct id `<Zone>Bucket`). */
  bucket(zone: LakeZone): s3.IBucket {
    let bucket = this.buckets.get(zone);
    if (!bucket) {
      const name = readPlatformParameter(this.scope, this.ssmRoot, `${zone}Bucket`);
      bucket = s3.Bucket.fromBucketName(this.scope, `${zone.charAt(0).toUpperCase()}${zone.slice(1)}Bucket`, name);
      this.buckets.set(zone, bucket);
    }
    return bucket;
  }

  /** ARN of the lake's KMS key, which encrypts every zone. */
  keyArn(): string {
    return (this.keyArnValue ??= readPlatformParameter(this.scope, this.ssmRoot, 'lakeKeyArn'));
  }

  /** Several zones at once, e.g. `lake.zones('datasets', 'models')`. */
  zones<Z extends LakeZone>(...zones: Z[]): Record<Z, s3.IBucket> {
    return Object.fromEntries(zones.map((z) => [z, this.bucket(z)])) as Record<Z, s3.IBucket>;
  }
}
