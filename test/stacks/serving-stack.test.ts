import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { Template } from 'aws-cdk-lib/assertions';
import { buildPlatform, createApp } from '../../lib/app';
import { hasInstanceStorage } from '../../lib/constructs/serving-endpoint';
import { EXPERIMENT, PRODUCTION } from '../helpers';

type Resource = { Properties: Record<string, unknown>; DependsOn?: string[] };
const all = (template: Template, type: string): Record<string, Resource> =>
  template.findResources(type) as Record<string, Resource>;
const one = (template: Template, type: string): Record<string, unknown> => {
  const found = Object.values(all(template, type));
  assert.equal(found.length, 1, `one ${type}`);
  return found[0]!.Properties;
};

function servingFor(selection: { stage: string; experiment?: string }): { template: Template; network: Template } {
  const app = createApp({ outdir: mkdtempSync(path.join(os.tmpdir(), 'dapt-serving-')) });
  const platform = buildPlatform(app, selection, { complianceChecks: false });
  assert.ok(platform.serving, 'the example stage configs serve');
  return { template: Template.fromStack(platform.serving), network: Template.fromStack(platform.network) };
}
const production = servingFor(PRODUCTION);
const experiment = servingFor(EXPERIMENT);

const variant = (template: Template): Record<string, unknown> =>
  (one(template, 'AWS::SageMaker::EndpointConfig').ProductionVariants as Record<string, unknown>[])[0]!;

test('ServingStack scales to zero instances and copies in an experiment only', () => {
  const scaling = (t: Template): unknown =>
    (variant(t).ManagedInstanceScaling as { MinInstanceCount: number }).MinInstanceCount;
  assert.equal(scaling(experiment.template), 0);
  assert.equal(scaling(production.template), 1);
  const minCopies = (t: Template): unknown[] =>
    Object.values(all(t, 'AWS::ApplicationAutoScaling::ScalableTarget')).map((r) => r.Properties.MinCapacity);
  assert.deepEqual(minCopies(experiment.template), [0]);
  assert.deepEqual(minCopies(production.template), [1]);
});

test('ServingStack wakes a scaled-to-zero experiment on the first request that finds no copy', () => {
  const wakeUps = (t: Template): Resource[] =>
    Object.values(all(t, 'AWS::CloudWatch::Alarm')).filter(
      (a) => a.Properties.MetricName === 'NoCapacityInvocationFailures',
    );
  assert.equal(wakeUps(experiment.template).length, 1);
  assert.equal(wakeUps(production.template).length, 0, 'production never has zero copies');
  const policy = Object.values(all(experiment.template, 'AWS::ApplicationAutoScaling::ScalingPolicy')).find(
    (p) => p.Properties.PolicyType === 'StepScaling',
  )!;
  const step = policy.Properties.StepScalingPolicyConfiguration as {
    AdjustmentType: string;
    StepAdjustments: { ScalingAdjustment: number }[];
  };
  assert.equal(step.AdjustmentType, 'ChangeInCapacity');
  assert.deepEqual(
    step.StepAdjustments.map((s) => s.ScalingAdjustment),
    [1],
  );
});

test('ServingStack adapters run on their base component and are created after it; production takes none from config', () => {
  assert.equal(Object.keys(all(production.template, 'AWS::SageMaker::InferenceComponent')).length, 1, 'only the base');
  const components = all(experiment.template, 'AWS::SageMaker::InferenceComponent');
  const [baseId, base] = Object.entries(components).find(
    ([, c]) => (c.Properties.Specification as Record<string, unknown>).ModelName,
  )!;
  const adapters = Object.values(components).filter(
    (c) => (c.Properties.Specification as Record<string, unknown>).BaseInferenceComponentName,
  );
  assert.ok(adapters.length >= 1);
  for (const adapter of adapters) {
    const spec = adapter.Properties.Specification as {
      BaseInferenceComponentName: string;
      Container: { ArtifactUrl: unknown };
    };
    assert.equal(spec.BaseInferenceComponentName, base.Properties.InferenceComponentName);
    assert.ok(adapter.DependsOn?.includes(baseId), 'an adapter is created after its base');
    assert.match(JSON.stringify(spec.Container.ArtifactUrl), /runs\/.+\.tar\.gz"/);
    assert.equal(adapter.Properties.RuntimeConfig, undefined, 'adapters have no copies of their own');
  }
});

test('ServingStack endpoint: in the isolated endpoint subnets, network-isolated, egress to VPC endpoints and S3 only', () => {
  for (const { template } of [production, experiment]) {
    const config = one(template, 'AWS::SageMaker::EndpointConfig');
    assert.equal(config.EnableNetworkIsolation, true);
    assert.ok((config.VpcConfig as { Subnets: unknown[] }).Subnets.length >= 1);
    assert.equal(one(template, 'AWS::SageMaker::Model').EnableNetworkIsolation, true);
    const egress =
      JSON.stringify(all(template, 'AWS::EC2::SecurityGroup')) +
      JSON.stringify(all(template, 'AWS::EC2::SecurityGroupEgress'));
    assert.ok(!egress.includes('0.0.0.0/0'), 'no route to anywhere');
  }
});

test('ServingStack encrypts: no KMS key on instance-store volumes (SageMaker refuses one), the lake key on captured data', () => {
  const config = one(production.template, 'AWS::SageMaker::EndpointConfig');
  const instanceType = variant(production.template).InstanceType as string;
  assert.equal(hasInstanceStorage(instanceType), true, `${instanceType} has NVMe instance storage`);
  assert.equal(config.KmsKeyId, undefined);
  const capture = config.DataCaptureConfig as { KmsKeyId: unknown; DestinationS3Uri: unknown };
  assert.match(JSON.stringify(capture.KmsKeyId), /datalakekmskeyarn/, 'the lake key, read from SSM');
  assert.match(JSON.stringify(capture.DestinationS3Uri), /\/capture"/);
  assert.equal(hasInstanceStorage('ml.m5.xlarge'), false);
  assert.equal(hasInstanceStorage('ml.g5.2xlarge'), true);
});

test('ServingStack alarm topic is encrypted, and its key lets CloudWatch publish to it', () => {
  const topic = one(production.template, 'AWS::SNS::Topic');
  assert.ok(topic.KmsMasterKeyId);
  const policy = JSON.stringify(one(production.template, 'AWS::KMS::Key').KeyPolicy);
  assert.match(policy, /"Service":"cloudwatch.amazonaws.com"/);
  const alarms = Object.values(all(production.template, 'AWS::CloudWatch::Alarm'));
  assert.deepEqual([...new Set(alarms.map((a) => a.Properties.MetricName))].sort(), [
    'Invocation5XXErrors',
    'InvocationModelErrors',
    'ModelLatency',
  ]);
  for (const alarm of alarms) assert.equal((alarm.Properties.AlarmActions as unknown[]).length, 1);
});

test('ServingStack containers read only served models and write only captured data', () => {
  const role = Object.entries(all(production.template, 'AWS::IAM::ManagedPolicy')).find(([id]) =>
    id.startsWith('EndpointExecutionRole'),
  )!;
  const statements = (
    role[1].Properties.PolicyDocument as { Statement: { Action: string | string[]; Resource: unknown }[] }
  ).Statement;
  const on = (action: string): string =>
    JSON.stringify(statements.filter((s) => [s.Action].flat().includes(action)).map((s) => s.Resource));
  assert.match(on('s3:GetObject'), /\/base\/\*".*\/runs\/\*"/);
  assert.match(on('s3:PutObject'), /\/capture\/\*"/);
  assert.ok(
    !on('s3:PutObject').includes('base/') && !on('s3:PutObject').includes('runs/'),
    'served models are read-only',
  );
});

test('ServingStack registry: only the registrar may create or update a package as Approved', () => {
  const group = one(production.template, 'AWS::SageMaker::ModelPackageGroup');
  assert.equal(group.ModelPackageGroupName, 'dapt-prod-website-builder');
  const statement = (group.ModelPackageGroupPolicy as { Statement: Record<string, unknown>[] }).Statement[0]!;
  assert.equal(statement.Effect, 'Deny');
  assert.deepEqual(statement.Principal, { AWS: '*' });
  assert.deepEqual(statement.Action, ['sagemaker:CreateModelPackage', 'sagemaker:UpdateModelPackage']);
  const condition = statement.Condition as Record<string, Record<string, unknown>>;
  assert.equal(condition.StringEquals!['sagemaker:ModelApprovalStatus'], 'Approved');
  const registrarRole = JSON.stringify(condition.ArnNotEquals!['aws:PrincipalArn']);
  const registrar = Object.values(all(production.template, 'AWS::Lambda::Function')).find((f) =>
    JSON.stringify((f.Properties.ImageConfig as { Command?: unknown } | undefined)?.Command ?? '').includes(
      'dapt_eval.registry.register_handler',
    ),
  )!;
  assert.ok(registrar, 'the registrar runs dapt_eval.registry.register_handler');
  assert.equal(JSON.stringify(registrar.Properties.Role), registrarRole, 'the exempt principal is the registrar');
});

test('ServingStack registrar reads run evidence and writes only each run’s decision', () => {
  const policy = Object.entries(all(production.template, 'AWS::IAM::ManagedPolicy')).find(([id]) =>
    id.startsWith('RegistryRegistrar'),
  )!;
  const statements = (
    policy[1].Properties.PolicyDocument as { Statement: { Action: string | string[]; Resource: unknown }[] }
  ).Statement;
  const on = (action: string): string =>
    JSON.stringify(statements.filter((s) => [s.Action].flat().includes(action)).map((s) => s.Resource));
  assert.match(on('s3:PutObject'), /\/runs\/\*\/gate\/decision\.json"/);
  assert.ok(
    !on('sagemaker:UpdateModelPackage').includes('model-package'),
    'the registrar never updates (approves) a package',
  );
});
