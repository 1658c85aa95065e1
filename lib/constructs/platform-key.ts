import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as kms from 'aws-cdk-lib/aws-kms';
import { Construct } from 'constructs';

export interface PlatformKeyProps {
  /** Alias without the `alias/` prefix, e.g. `dapt-prod-lake`. */
  readonly alias: string;
  /** One sentence on what the key protects; shown in the KMS console. */
  readonly description: string;
  /** Schedule the key for deletion with the stack (experiment) instead of keeping it. */
  readonly destroyOnDelete: boolean;
}

/**
 * A customer-managed KMS key with yearly rotation. Experiment keys are scheduled for deletion
 * after the shortest waiting period when their stack goes; production keys are kept, since data
 * encrypted with a deleted key is lost.
 */
export class PlatformKey extends Construct {
  readonly key: kms.Key;

  constructor(scope: Construct, id: string, props: PlatformKeyProps) {
    super(scope, id);
    this.key = new kms.Key(this, 'Key', {
      alias: `alias/${props.alias}`,
      description: props.description,
      enableKeyRotation: true,
      pendingWindow: props.destroyOnDelete ? DEFAULT_EXPERIMENT_PENDING_WINDOW : undefined,
      removalPolicy: props.destroyOnDelete ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN,
    });
  }
}

/** KMS's shortest waiting period before a scheduled key deletion. */
const DEFAULT_EXPERIMENT_PENDING_WINDOW = Duration.days(7);
