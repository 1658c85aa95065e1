import { Aws, Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cwActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import type { ServingConfig } from '../config/schema';

export interface ServingAlarmsProps {
  /** Thresholds from the stage config (`serving.alarms`). */
  readonly alarms: ServingConfig['alarms'];
  /** The inference components watched (SageMaker reports their metrics per component). */
  readonly componentNames: readonly string[];
  /** Encrypts the alarm topic; CloudWatch is allowed to use it for this account's alarms. */
  readonly key: kms.IKey;
  /** Name of the topic alarms notify, e.g. `dapt-prod-serving-alarms`. */
  readonly topicName: string;
}

/**
 * Alarms on what a user of the endpoint would notice, per inference component: server errors
 * (5xx), model errors, and model latency; all notify one KMS-encrypted topic that operators
 * subscribe to (docs/operations.md).
 */
export class ServingAlarms extends Construct {
  readonly topic: sns.Topic;
  readonly alarms: cloudwatch.Alarm[] = [];

  constructor(scope: Construct, id: string, props: ServingAlarmsProps) {
    super(scope, id);
    this.topic = new sns.Topic(this, 'Topic', { topicName: props.topicName, masterKey: props.key, enforceSSL: true });
    allowCloudWatchToUseKey(props.key);
    const action = new cwActions.SnsAction(this.topic);
    for (const [i, name] of props.componentNames.entries()) {
      const metric = (metricName: string, statistic: string): cloudwatch.Metric =>
        new cloudwatch.Metric({
          namespace: 'AWS/SageMaker',
          metricName,
          dimensionsMap: { InferenceComponentName: name },
          statistic,
          period: DEFAULT_ALARM_PERIOD,
        });
      const alarm = (alarmId: string, description: string, m: cloudwatch.Metric, threshold: number): void => {
        const created = new cloudwatch.Alarm(this, `${alarmId}${i}`, {
          alarmDescription: `${name}: ${description}`,
          metric: m,
          threshold,
          evaluationPeriods: 1,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        });
        created.addAlarmAction(action);
        this.alarms.push(created);
      };
      alarm(
        'ServerErrors',
        'server errors (5xx) returned to callers',
        metric('Invocation5XXErrors', 'Sum'),
        props.alarms.max5xxPer5Minutes,
      );
      alarm(
        'ModelErrors',
        'the model container failed requests',
        metric('InvocationModelErrors', 'Sum'),
        props.alarms.max5xxPer5Minutes,
      );
      // ModelLatency is reported in microseconds.
      alarm(
        'Latency',
        'average model latency is high',
        metric('ModelLatency', 'Average'),
        props.alarms.maxModelLatencyMs * 1000,
      );
    }
  }
}

/** CloudWatch publishes to an encrypted topic with the topic's key: the key policy must let it, for this account's alarms only. */
function allowCloudWatchToUseKey(key: kms.IKey): void {
  key.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: 'AllowCloudWatchAlarmsToPublishToTheEncryptedTopic',
      principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
      actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
      resources: ['*'],
      conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
    }),
  );
}

/** Alarms look at five-minute windows: long enough not to page on one slow request. */
const DEFAULT_ALARM_PERIOD = Duration.minutes(5);
