import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Stack } from 'aws-cdk-lib';
import { EXPERIMENT, PRODUCTION, templatesFor } from './helpers';

// One platform per environment for the whole file (templatesFor caches it): these tests only read.
const platformFor = (selection: typeof PRODUCTION | typeof EXPERIMENT) => templatesFor(selection).platform;

const stacksOf = (p: ReturnType<typeof platformFor>): Stack[] => [
  p.network,
  p.dataLake,
  p.evaluation,
  p.training,
  ...(p.audit ? [p.audit] : []),
  ...(p.serving ? [p.serving] : []),
];

test('termination protection is on in production and off in experiments', () => {
  for (const stack of stacksOf(platformFor(PRODUCTION)))
    assert.equal(stack.terminationProtection, true, stack.stackName);
  for (const stack of stacksOf(platformFor(EXPERIMENT)))
    assert.equal(stack.terminationProtection, false, stack.stackName);
});

test('stack names carry the prefix and the environment', () => {
  assert.deepEqual(
    stacksOf(platformFor(PRODUCTION)).map((s) => s.stackName),
    [
      'dapt-prod-network',
      'dapt-prod-data-lake',
      'dapt-prod-eval',
      'dapt-prod-training',
      'dapt-prod-audit',
      'dapt-prod-serving',
    ],
  );
  assert.deepEqual(
    stacksOf(platformFor(EXPERIMENT)).map((s) => s.stackName),
    [
      'dapt-exp-unit-network',
      'dapt-exp-unit-data-lake',
      'dapt-exp-unit-eval',
      'dapt-exp-unit-training',
      'dapt-exp-unit-serving',
    ],
  );
});

test('every taggable resource carries project, stage, experiment, owner and cost-center tags', () => {
  const bucket = Object.values(templatesFor(EXPERIMENT).dataLake.findResources('AWS::S3::Bucket'))[0] as {
    Properties: { Tags: { Key: string; Value: string }[] };
  };
  const tags = Object.fromEntries(bucket.Properties.Tags.map((t) => [t.Key, t.Value]));
  assert.deepEqual(
    {
      project: tags.project,
      stage: tags.stage,
      experiment: tags.experiment,
      owner: tags.owner,
      'cost-center': tags['cost-center'],
    },
    {
      project: 'dapt-platform',
      stage: 'experiment',
      experiment: 'unit',
      owner: 'ml-research',
      'cost-center': 'cc-ml-research',
    },
  );
  const vpc = Object.values(templatesFor(PRODUCTION).network.findResources('AWS::EC2::VPC'))[0] as {
    Properties: { Tags: { Key: string; Value: string }[] };
  };
  assert.ok(vpc.Properties.Tags.some((t) => t.Key === 'experiment' && t.Value === 'none'));
});

test('stacks deploy to the configured region', () => {
  for (const stack of stacksOf(platformFor(PRODUCTION))) assert.equal(stack.region, 'us-east-1');
});
