import { Aws, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';

export interface EncryptedLogGroupProps {
  /** Key the log events are encrypted with; CloudWatch Logs is granted its use for this group only. */
  readonly encryptionKey: kms.IKey;
  /** Retention in days (one of CloudWatch Logs' allowed values; validated by the config schema). */
  readonly retentionDays: number;
  readonly destroyOnDelete: boolean;
}

/**
 * A CloudWatch log group encrypted with a customer-managed key, with retention set by stage.
 * The key policy lets CloudWatch Logs use the key only for log groups of this account and region.
 */
export class EncryptedLogGroup extends Construct {
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: EncryptedLogGroupProps) {
    super(scope, id);
    const region = Stack.of(this).region;
    props.encryptionKey.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'AllowCloudWatchLogsForThisAccountsLogGroups',
        principals: [new iam.ServicePrincipal(`logs.${region}.amazonaws.com`)],
        actions: ['kms:Encrypt*', 'kms:Decrypt*', 'kms:ReEncrypt*', 'kms:GenerateDataKey*', 'kms:Describe*'],
        resources: ['*'],
        conditions: {
          ArnLike: { 'kms:EncryptionContext:aws:logs:arn': `arn:${Aws.PARTITION}:logs:${region}:${Aws.ACCOUNT_ID}:log-group:*` },
        },
      }),
    );
    this.logGroup = new logs.LogGroup(this, 'LogGroup', {
      encryptionKey: props.encryptionKey,
      retention: props.retentionDays as logs.RetentionDays,
      removalPolicy: props.destroyOnDelete ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN,
    });
  }
}
