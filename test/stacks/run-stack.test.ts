import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Template } from 'aws-cdk-lib/assertions';
import { buildRun, createApp } from '../../lib/app';
import { ConfigError } from '../../lib/config/load';

type Resource = { Properties: Record<string, unknown> };
type Statement = { Sid?: string; Action: string | string[]; Resource: unknown };

const stack = buildRun(createApp(), { stage: 'production', run: 'lora7b' });
const template = Template.fromStack(stack);
const statements = (Object.values(template.findResources('AWS::IAM::ManagedPolicy')) as Resource[]).flatMap(
  (p) => (p.Properties.PolicyDocument as { Statement: Statement[] }).Statement,
);

test("RunStack's job role writes only under runs/<run>/ of the models and artifacts zones", () => {
  // The trainer's role (models, artifacts) and the data pipeline's (curated, datasets), on Batch
  // and on EMR Serverless (which also writes Spark's logs, in the artifacts zone).
  const writes = statements.filter((s) => [s.Action].flat().includes('s3:PutObject'));
  assert.deepEqual(writes.map((w) => w.Sid).sort(), [
    'WriteCuratedAndManifests',
    'WriteCuratedAndManifests',
    'WriteRunOutputs',
    'WriteSparkLogs',
  ]);
  for (const write of writes) {
    const resources = JSON.stringify(write.Resource);
    assert.match(resources, /\/runs\/lora7b\/(spark-logs\/)?\*/);
    assert.doesNotMatch(
      resources.replace(/\/runs\/lora7b\/(spark-logs\/)?\*/g, ''),
      /\/\*/,
      `${write.Sid}: no write outside runs/lora7b/`,
    );
  }
  const reads = statements.find((s) => s.Sid === 'ReadRunOutputs')!;
  assert.match(JSON.stringify(reads.Resource), /\/runs\/lora7b\/\*/);
});

test('RunStack publishes its own job definitions under /dapt/prod/runs/<run>/', () => {
  const names = (Object.values(template.findResources('AWS::Batch::JobDefinition')) as Resource[]).map(
    (d) => d.Properties.JobDefinitionName,
  );
  assert.deepEqual(names.sort(), [
    'dapt-prod-run-lora7b-data-prep',
    'dapt-prod-run-lora7b-tokenize',
    'dapt-prod-run-lora7b-train-multi-node',
    'dapt-prod-run-lora7b-train-single-node',
  ]);
  for (const key of ['single-node', 'multi-node', 'tokenize', 'data-prep']) {
    template.hasResourceProperties('AWS::SSM::Parameter', { Name: `/dapt/prod/runs/lora7b/job-definitions/${key}` });
  }
});

test("RunStack's tokenize job fills the token cache on Fargate as the run's own role", () => {
  const definitions = Object.values(template.findResources('AWS::Batch::JobDefinition')) as Resource[];
  const byName = (suffix: string): Record<string, unknown> =>
    definitions.find((d) => String(d.Properties.JobDefinitionName).endsWith(suffix))!.Properties;
  const tokenize = byName('-tokenize');
  assert.deepEqual(tokenize.PlatformCapabilities, ['FARGATE']);
  const container = tokenize.ContainerProperties as { Command: string[]; JobRoleArn: unknown; Image: unknown };
  assert.deepEqual(container.Command, ['dapt-train', '--tokenize-only']);
  const single = byName('-train-single-node').ContainerProperties as { JobRoleArn: unknown; Image: unknown };
  assert.deepEqual(container.JobRoleArn, single.JobRoleArn, 'the same role: it writes only under runs/lora7b/');
  assert.deepEqual(container.Image, single.Image, 'the trainer image');
});

test('RunStack reads the platform through SSM and can go away on its own', () => {
  const parameters = Object.values(template.toJSON().Parameters as Record<string, { Type: string; Default: string }>)
    .filter((p) => p.Type.startsWith('AWS::SSM::Parameter::Value'))
    .map((p) => p.Default);
  for (const key of [
    'datalake/buckets/models',
    'datalake/buckets/artifacts',
    'datalake/kms-key-arn',
    'training/kms-key-arn',
    'training/job-log-group',
  ]) {
    assert.ok(parameters.includes(`/dapt/prod/${key}`), `${key} not read from SSM`);
  }
  assert.doesNotMatch(JSON.stringify(template.toJSON()), /Fn::ImportValue/);
  assert.equal(stack.terminationProtection, false);
  assert.equal(stack.stackName, 'dapt-prod-run-lora7b');
});

test("RunStack's Spark job role is trusted by the platform's EMR Serverless application only, and published", () => {
  const roles = Object.values(template.findResources('AWS::IAM::Role')) as Resource[];
  const spark = roles.filter((r) => JSON.stringify(r.Properties.AssumeRolePolicyDocument).includes('emr-serverless'));
  assert.equal(spark.length, 1);
  const trust = JSON.stringify(spark[0]!.Properties.AssumeRolePolicyDocument);
  const parameters = template.toJSON().Parameters as Record<string, { Default?: string }>;
  const arnParameter = Object.entries(parameters).find(
    ([, p]) => p.Default === '/dapt/prod/training/spark/application-arn',
  )?.[0];
  assert.ok(arnParameter, 'the application ARN is read from SSM');
  assert.ok(trust.includes(`{"aws:SourceArn":{"Ref":"${arnParameter}"}}`), trust);
  assert.match(trust, /"aws:SourceAccount":\{"Ref":"AWS::AccountId"\}/);
  template.hasResourceProperties('AWS::SSM::Parameter', { Name: '/dapt/prod/runs/lora7b/spark/job-role-arn' });
});

test('a run name follows the experiment-name rules', () => {
  assert.throws(
    () => buildRun(createApp(), { stage: 'production', run: 'Bad_Run' }),
    (err: unknown) =>
      err instanceof ConfigError && /^run = "Bad_Run": must be 1-20 lowercase letters/.test(err.problems[0]!),
  );
});
