import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CfnParameter } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type { ResolvedConfig } from '../../lib/config/load';
import { TrainerJobs, trainerImage, type TrainingBuckets } from '../../lib/constructs/trainer-jobs';
import { CONFIG, newStack, resources, statements } from './fixtures';
import { TORCHRUN_SHUTDOWN_TIMEOUT_SECONDS } from '../../lib/constructs/scratch-user-data';

function trainerTemplate(maxNodes: number): Template {
  const stack = newStack();
  // Names as template parameters (tokens), as the stacks read them from SSM.
  const bucket = (name: string): s3.IBucket =>
    s3.Bucket.fromBucketName(stack, name, new CfnParameter(stack, `Lake${name}`).valueAsString);
  const buckets = {
    datasets: bucket('datasets'),
    models: bucket('models'),
    artifacts: bucket('artifacts'),
    curated: bucket('curated'),
    // A wider object than TrainingBuckets, as a caller spreading all its zones would pass.
    raw: bucket('raw'),
  } as TrainingBuckets;
  const config: ResolvedConfig = { ...CONFIG, training: { ...CONFIG.training, maxNodes } };
  new TrainerJobs(stack, 'TrainerJobs', {
    config,
    namePrefix: 'dapt-prod-run-demo',
    writePrefix: 'runs/demo/',
    buckets,
    lakeKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/lake',
    image: trainerImage(stack),
    executionRole: new iam.Role(stack, 'Execution', { assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com') }),
    logGroup: new logs.LogGroup(stack, 'Logs'),
  });
  return Template.fromStack(stack);
}
const multiNode = trainerTemplate(4);

test('TrainerJobs never reach raw text, even when the caller passes the raw zone along', () => {
  assert.ok(!JSON.stringify(statements(multiNode)).includes('"Ref":"Lakeraw"'));
});

test("TrainerJobs write checkpoints and outputs only under the run's prefix", () => {
  const writes = statements(multiNode).filter((s) => JSON.stringify(s.Action).includes('s3:PutObject'));
  for (const resource of writes.flatMap((s) => s.Resource as unknown[])) {
    assert.match(JSON.stringify(resource), /\/runs\/demo\/\*"\]\]\}$/);
  }
});

test('TrainerJobs let a multi-node submission ask for fewer nodes (an open node range)', () => {
  const definitions = Object.values(resources(multiNode, 'AWS::Batch::JobDefinition'));
  const multi = definitions.find((d) => d.Properties.Type === 'multinode')!;
  const ranges = (multi.Properties.NodeProperties as { NodeRangeProperties: { TargetNodes: string }[] })
    .NodeRangeProperties;
  assert.deepEqual(
    ranges.map((r) => r.TargetNodes),
    ['0:'],
  );
});

test("TrainerJobs launch torchrun through the trainer's launcher, with torchrun's grace under the agent's stop window", () => {
  const definitions = Object.values(resources(multiNode, 'AWS::Batch::JobDefinition')).filter(
    (d) => d.Properties.Type !== 'container' || JSON.stringify(d.Properties).includes('--standalone'),
  );
  assert.equal(definitions.length, 2, 'single-node and multi-node');
  for (const d of definitions) {
    const text = JSON.stringify(d.Properties);
    assert.match(text, /python( |",")-m( |",")dapt_trainer\.launch/);
    assert.ok(!/"torchrun"|exec torchrun/.test(text), text);
    assert.match(
      text,
      new RegExp(`"Name":"TORCH_ELASTIC_SHUTDOWN_TIMEOUT","Value":"${TORCHRUN_SHUTDOWN_TIMEOUT_SECONDS}"`),
    );
  }
});

test('TrainerJobs have no multi-node definition when maxNodes is 1', () => {
  const definitions = Object.values(resources(trainerTemplate(1), 'AWS::Batch::JobDefinition'));
  assert.deepEqual(definitions.map((d) => d.Properties.Type).sort(), ['container', 'container']);
});
