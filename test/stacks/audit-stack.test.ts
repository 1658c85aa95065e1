import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CfnResource, Stack } from 'aws-cdk-lib';
import { Match } from 'aws-cdk-lib/assertions';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { buildEnvironment, createApp } from '../../lib/app';
import { LAKE_ZONES } from '../../lib/stacks/data-lake-stack';
import { EXPERIMENT, PRODUCTION, templatesFor } from '../helpers';

test('AuditStack exists in production only', () => {
  assert.ok(templatesFor(PRODUCTION).audit, 'production has no audit stack');
  assert.equal(templatesFor(EXPERIMENT).audit, undefined);
});

test('AuditStack trail validates log files, covers all regions and is KMS-encrypted', () => {
  const template = templatesFor(PRODUCTION).audit!;
  const keyId = template.getResourceId('AWS::KMS::Key', {
    Properties: { EnableKeyRotation: true, Description: Match.stringLikeRegexp('CloudTrail') },
  });
  template.hasResourceProperties('AWS::CloudTrail::Trail', {
    EnableLogFileValidation: true,
    IsMultiRegionTrail: true,
    IncludeGlobalServiceEvents: true,
    IsLogging: true,
    KMSKeyId: { 'Fn::GetAtt': [keyId, 'Arn'] },
    CloudWatchLogsLogGroupArn: Match.anyValue(),
  });
  template.hasResourceProperties('AWS::KMS::Key', {
    KeyPolicy: {
      Statement: Match.arrayWith([
        Match.objectLike({
          Sid: 'AllowCloudTrailToEncryptThisTrail',
          Principal: { Service: 'cloudtrail.amazonaws.com' },
        }),
      ]),
    },
  });
});

test('AuditStack records S3 data events of every lake zone', () => {
  const { audit } = templatesFor(PRODUCTION);
  const trail = Object.values(audit!.findResources('AWS::CloudTrail::Trail'))[0] as {
    Properties: { EventSelectors: { DataResources: { Type: string; Values: unknown[] }[]; ReadWriteType: string }[] };
  };
  const selector = trail.Properties.EventSelectors.find((s) =>
    s.DataResources?.some((d) => d.Type === 'AWS::S3::Object'),
  );
  assert.ok(selector, 'no S3 data-event selector');
  assert.equal(selector.ReadWriteType, 'All');
  assert.equal(selector.DataResources[0]!.Values.length, LAKE_ZONES.length);
});

test('AuditStack keeps its trail, bucket and logs (production retains)', () => {
  const template = templatesFor(PRODUCTION).audit!;
  for (const type of ['AWS::S3::Bucket', 'AWS::KMS::Key', 'AWS::Logs::LogGroup']) {
    for (const [id, r] of Object.entries(template.findResources(type))) {
      assert.equal((r as { DeletionPolicy?: string }).DeletionPolicy, 'Retain', `${type} ${id}`);
    }
  }
});

test('production records with AWS Config into the audit bucket and runs one conformance pack per synth-time pack', () => {
  const audit = templatesFor(PRODUCTION).audit!;
  audit.hasResourceProperties('AWS::Config::ConfigurationRecorder', {
    RecordingGroup: { AllSupported: true, IncludeGlobalResourceTypes: true },
  });
  audit.hasResourceProperties('AWS::Config::DeliveryChannel', {
    S3KeyPrefix: 'config',
    S3KmsKeyArn: Match.anyValue(),
  });
  const packs = Object.values(audit.findResources('AWS::Config::ConformancePack')) as {
    Properties: { ConformancePackName: string; TemplateBody: string };
    DependsOn?: string[];
  }[];
  assert.deepEqual(packs.map((p) => p.Properties.ConformancePackName).sort(), [
    'dapt-prod-hipaa-security',
    'dapt-prod-nist-800-53-r5',
  ]);
  const channelId = Object.keys(audit.findResources('AWS::Config::DeliveryChannel'))[0]!;
  for (const pack of packs) {
    assert.match(pack.Properties.TemplateBody, /SourceIdentifier: S3_DEFAULT_ENCRYPTION_KMS/);
    assert.ok(pack.DependsOn?.includes(channelId), 'a pack must wait for the recorder to record');
  }
  // The recorder's role writes only under config/AWSLogs/ of the audit bucket.
  audit.hasResourceProperties('AWS::IAM::ManagedPolicy', {
    PolicyDocument: {
      Statement: Match.arrayWith([Match.objectLike({ Sid: 'DeliverConfigurationFiles', Action: 's3:PutObject' })]),
    },
  });
});

test('production checks every platform stack for drift on a schedule and notifies the encrypted compliance topic', () => {
  const { audit, platform } = templatesFor(PRODUCTION);
  audit!.hasResourceProperties('AWS::Scheduler::Schedule', {
    ScheduleExpression: 'rate(1 day)',
    Target: { Arn: Match.anyValue(), RoleArn: Match.anyValue() },
  });
  audit!.hasResourceProperties('AWS::SNS::Topic', {
    TopicName: 'dapt-prod-compliance',
    KmsMasterKeyId: Match.anyValue(),
  });
  const machine = Object.values(audit!.findResources('AWS::StepFunctions::StateMachine'))[0] as {
    Properties: { DefinitionString: unknown };
  };
  const definition = JSON.stringify(machine.Properties.DefinitionString);
  for (const stack of [platform.network, platform.dataLake, platform.evaluation, platform.training, platform.audit!]) {
    assert.ok(definition.includes(stack.stackName), `${stack.stackName} is not checked for drift`);
  }
  assert.ok(definition.includes('dapt-prod-delivery'), 'the pipeline stack is not checked for drift');
  // Drift detection reads configurations, never data.
  const readPolicy = Object.values(audit!.findResources('AWS::IAM::ManagedPolicy')).find((p) =>
    JSON.stringify(p).includes('ec2:Describe*'),
  );
  assert.ok(readPolicy, 'no read policy for drift detection');
  for (const dataAction of [
    's3:GetObject',
    'dynamodb:GetItem',
    'dynamodb:Query',
    'dynamodb:Scan',
    'sqs:ReceiveMessage',
    'secretsmanager:GetSecretValue',
    'kms:Decrypt',
  ]) {
    assert.ok(!JSON.stringify(readPolicy).includes(`"${dataAction}"`), `drift detection may ${dataAction}`);
  }
});

test('experiments have no pipeline, AWS Config, conformance packs, drift detection or deployed-commit record', () => {
  const app = createApp();
  const environment = buildEnvironment(app, EXPERIMENT, { complianceChecks: false });
  assert.equal(environment.delivery, undefined, 'an experiment got a delivery pipeline');
  // The lifecycle stack's sweeper has a schedule of its own; the check is about the environment.
  const types = new Set(
    app.node
      .findAll()
      .filter((c): c is CfnResource => c instanceof CfnResource && Stack.of(c) !== environment.platform.lifecycle)
      .map((c) => c.cfnResourceType),
  );
  assert.ok(types.has('AWS::S3::Bucket'), 'the experiment environment was not built');
  for (const type of [
    'AWS::CodePipeline::Pipeline',
    'AWS::Config::ConfigurationRecorder',
    'AWS::Config::ConformancePack',
    'AWS::Scheduler::Schedule',
    'AWS::CloudTrail::Trail',
  ]) {
    assert.ok(!types.has(type), `experiment has ${type}`);
  }
  const parameters = app.node.findAll().filter((c): c is ssm.CfnParameter => c instanceof ssm.CfnParameter);
  assert.ok(!parameters.some((p) => JSON.stringify(p.name ?? '').includes('delivery/deployed-commit')));
});
