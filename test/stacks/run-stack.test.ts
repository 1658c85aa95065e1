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
  // The trainer's role (models, artifacts) and the data pipeline's (curated, datasets).
  const writes = statements.filter((s) => [s.Action].flat().includes('s3:PutObject'));
  assert.deepEqual(writes.map((w) => w.Sid).sort(), ['WriteCuratedAndManifests', 'WriteRunOutputs']);
  for (const write of writes) {
    const resources = JSON.stringify(write.Resource);
    assert.match(resources, /\/runs\/lora7b\/\*/);
    assert.doesNotMatch(
      resources.replace(/\/runs\/lora7b\/\*/g, ''),
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

test('a run name follows the experiment-name rules', () => {
  assert.throws(
    () => buildRun(createApp(), { stage: 'production', run: 'Bad_Run' }),
    (err: unknown) =>
      err instanceof ConfigError && /^run = "Bad_Run": must be 1-20 lowercase letters/.test(err.problems[0]!),
  );
});
