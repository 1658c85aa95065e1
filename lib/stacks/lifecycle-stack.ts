import { Aws, Stack, type StackProps } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import type { Construct } from 'constructs';
import type { ResolvedConfig } from '../config/load';
import { lifecycleStackName } from '../config/lifecycle';
import { ExperimentSweeper } from '../constructs/experiment-sweeper';
import { PlatformKey } from '../constructs/platform-key';

export interface LifecycleStackProps extends StackProps {
  /** The resolved stage config; the stack reads `lifecycle`, `prefix`, `stage` and the log retention only, so every experiment builds the same template. */
  readonly config: ResolvedConfig;
}

/**
 * The lifecycle of experiments in one account and region: `<prefix>-experiments-lifecycle`
 * (sweeps every experiment environment and its run stacks) or `<prefix>-prod-lifecycle` (sweeps
 * production's run stacks only; production itself never expires). A KMS-encrypted topic the
 * notification emails subscribe to, which the experiments' budgets also publish to, and the
 * `ExperimentSweeper`. It carries no ttl tag, so it never sweeps itself.
 */
export class LifecycleStack extends Stack {
  readonly topic: sns.Topic;

  constructor(scope: Construct, id: string, props: LifecycleStackProps) {
    super(scope, id, props);
    const { config } = props;
    const name = lifecycleStackName(config.prefix, config.stage);
    const destroyOnDelete = config.behaviour.destroyOnDelete;
    const key = new PlatformKey(this, 'LifecycleKey', {
      alias: name,
      description: `Encrypts the lifecycle notifications and sweeper logs of ${name}`,
      destroyOnDelete,
    }).key;
    this.topic = new sns.Topic(this, 'Topic', { topicName: name, masterKey: key, enforceSSL: true });
    for (const email of config.lifecycle.notificationEmails) {
      this.topic.addSubscription(new subscriptions.EmailSubscription(email));
    }
    allowBudgetsToPublish(this.topic, key);
    new ExperimentSweeper(this, 'Sweeper', {
      prefix: config.prefix,
      stage: config.stage,
      lifecycle: config.lifecycle,
      topic: this.topic,
      key,
      logRetentionDays: config.logRetentionDays,
      destroyOnDelete,
    });
  }
}

/** The topic ARN of a stage's lifecycle stack, for the budgets of stacks deployed apart from it. */
export function lifecycleTopicArn(scope: Construct, config: ResolvedConfig): string {
  return `arn:${Aws.PARTITION}:sns:${Stack.of(scope).region}:${Aws.ACCOUNT_ID}:${lifecycleStackName(config.prefix, config.stage)}`;
}

/**
 * AWS Budgets' notifications: the topic policy AWS's "Creating an Amazon SNS topic for budget
 * notifications" shows (SNS:Publish for budgets.amazonaws.com from this account's budgets), and,
 * since the topic is encrypted, the key use SNS requires of a service that publishes to an
 * encrypted topic (GenerateDataKey*, Decrypt), under the same conditions.
 */
function allowBudgetsToPublish(topic: sns.Topic, key: iam.IResourceWithPolicy & { keyArn: string }): void {
  const budgets = new iam.ServicePrincipal('budgets.amazonaws.com');
  const conditions = {
    StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID },
    ArnLike: { 'aws:SourceArn': `arn:${Aws.PARTITION}:budgets::${Aws.ACCOUNT_ID}:*` },
  };
  topic.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: 'AllowThisAccountsBudgetsToPublish',
      principals: [budgets],
      actions: ['sns:Publish'],
      resources: [topic.topicArn],
      conditions,
    }),
  );
  key.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: 'AllowThisAccountsBudgetsToUseTheTopicKey',
      principals: [budgets],
      actions: ['kms:GenerateDataKey*', 'kms:Decrypt'],
      resources: ['*'],
      conditions,
    }),
  );
}
