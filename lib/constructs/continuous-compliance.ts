import { Aws } from 'aws-cdk-lib';
import * as config from 'aws-cdk-lib/aws-config';
import * as events from 'aws-cdk-lib/aws-events';
import * as eventsTargets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import { acknowledge } from '../compliance/acknowledge';
import { conformancePackName, conformancePackTemplate } from '../compliance/conformance-packs';
import type { ContinuousComplianceConfig } from '../config/schema';
import { ManagedRole } from './managed-role';

/** Prefix of AWS Config's files (configuration history and snapshots) in the delivery bucket. */
export const CONFIG_DELIVERY_PREFIX = 'config';

export interface ContinuousComplianceProps {
  /** `audit.continuousCompliance` of the stage config. */
  readonly config: ContinuousComplianceConfig;
  /** `<prefix>-<envId>`, the start of every name. */
  readonly namePrefix: string;
  /** Where AWS Config delivers configuration history and snapshots (the audit trail's bucket). */
  readonly deliveryBucket: s3.IBucket;
  /** The delivery bucket's key; AWS Config encrypts what it delivers with it. */
  readonly deliveryKey: kms.IKey;
  /** Told about each resource a conformance pack rule finds non-compliant. */
  readonly topic: sns.ITopic;
  /** The topic's key; EventBridge is allowed to use it for this account's rules. */
  readonly topicKey: kms.IKey;
}

/**
 * What keeps checking production after cdk-nag checked its templates once: the region's AWS
 * Config recorder (all supported resource types, IAM included) and delivery channel, unless the
 * account already records (`configRecorder: existing`); one conformance pack per synth-time
 * cdk-nag pack, holding the AWS Config managed rules those cdk-nag rules port
 * (lib/compliance/conformance-packs.ts); and a notification for every resource a rule of a pack
 * finds non-compliant.
 */
export class ContinuousCompliance extends Construct {
  readonly conformancePacks: config.CfnConformancePack[] = [];

  constructor(scope: Construct, id: string, props: ContinuousComplianceProps) {
    super(scope, id);
    const channel = props.config.configRecorder === 'create' ? createRecorder(this, props) : undefined;
    for (const pack of props.config.conformancePacks) {
      const conformancePack = new config.CfnConformancePack(this, pack.replace(/\W/g, ''), {
        conformancePackName: conformancePackName(props.namePrefix, pack),
        templateBody: conformancePackTemplate(pack),
      });
      // A conformance pack needs a recorder that records; the channel is what starts it.
      if (channel) conformancePack.node.addDependency(channel);
      this.conformancePacks.push(conformancePack);
    }
    notifyNonCompliance(this, props);
  }
}

/** The recorder, its role (AWS's AWS_ConfigRole plus delivery to the audit bucket) and the delivery channel. */
function createRecorder(scope: Construct, props: ContinuousComplianceProps): config.CfnDeliveryChannel {
  const objects = props.deliveryBucket.arnForObjects(`${CONFIG_DELIVERY_PREFIX}/AWSLogs/${Aws.ACCOUNT_ID}/*`);
  const role = new ManagedRole(scope, 'RecorderRole', {
    assumedBy: new iam.ServicePrincipal('config.amazonaws.com', {
      conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
    }),
    description: 'AWS Config recorder: reads resource configurations, delivers them to the audit bucket',
    statements: [
      new iam.PolicyStatement({
        sid: 'CheckTheBucket',
        actions: ['s3:GetBucketAcl'],
        resources: [props.deliveryBucket.bucketArn],
      }),
      new iam.PolicyStatement({ sid: 'DeliverConfigurationFiles', actions: ['s3:PutObject'], resources: [objects] }),
      new iam.PolicyStatement({
        sid: 'EncryptConfigurationFiles',
        actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
        resources: [props.deliveryKey.keyArn],
      }),
    ],
    wildcards: [
      {
        pattern: /\/config\/AWSLogs\/.*\/\*$/,
        reason:
          'AWS Config names its files by date and id under config/AWSLogs/<account>/ of the audit bucket; nothing else there is writable.',
      },
    ],
  }).role;
  role.addManagedPolicy(iam.ManagedPolicy.fromAwsManagedPolicyName('service-role/AWS_ConfigRole'));
  acknowledge(
    role,
    ['AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWS_ConfigRole]'],
    "AWS_ConfigRole is AWS's own read-only policy for a Config recorder, kept current by AWS as resource types are added; a copy would fall behind.",
  );
  const recorder = new config.CfnConfigurationRecorder(scope, 'Recorder', {
    name: `${props.namePrefix}-recorder`,
    roleArn: role.roleArn,
    recordingGroup: { allSupported: true, includeGlobalResourceTypes: true },
  });
  const channel = new config.CfnDeliveryChannel(scope, 'DeliveryChannel', {
    name: `${props.namePrefix}-delivery`,
    s3BucketName: props.deliveryBucket.bucketName,
    s3KeyPrefix: CONFIG_DELIVERY_PREFIX,
    s3KmsKeyArn: props.deliveryKey.keyArn,
    configSnapshotDeliveryProperties: { deliveryFrequency: 'TwentyFour_Hours' },
  });
  // AWS Config refuses a delivery channel before a recorder exists.
  channel.node.addDependency(recorder);
  return channel;
}

/** EventBridge forwards each NON_COMPLIANT evaluation of a conformance pack's rules to the topic. */
function notifyNonCompliance(scope: Construct, props: ContinuousComplianceProps): void {
  props.topicKey.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: 'AllowEventBridgeToPublishToTheEncryptedTopic',
      principals: [new iam.ServicePrincipal('events.amazonaws.com')],
      actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
      resources: ['*'],
      conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
    }),
  );
  new events.Rule(scope, 'NonCompliantRule', {
    description: `A rule of a ${props.namePrefix} conformance pack found a resource non-compliant`,
    eventPattern: {
      source: ['aws.config'],
      detailType: ['Config Rules Compliance Change'],
      detail: {
        // Rules deployed by a conformance pack are named <rule>-conformance-pack-<id>.
        configRuleName: events.Match.wildcard('*-conformance-pack-*'),
        newEvaluationResult: { complianceType: ['NON_COMPLIANT'] },
      },
    },
    targets: [new eventsTargets.SnsTopic(props.topic)],
  });
}
