import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CfnParameter } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { DataPrepJob } from '../../lib/constructs/data-prep-job';
import { actions, newStack, only, statements } from './fixtures';

function dataPrepTemplate(writePrefix: string): Template {
  const stack = newStack();
  // Names as template parameters (tokens), as the stacks read them from SSM.
  const bucket = (name: string): s3.IBucket =>
    s3.Bucket.fromBucketName(stack, name, new CfnParameter(stack, `Lake${name}`).valueAsString);
  new DataPrepJob(stack, 'DataPrep', {
    stage: 'production',
    envId: 'prod',
    namePrefix: 'dapt-prod-run-demo',
    writePrefix,
    buckets: { raw: bucket('raw'), curated: bucket('curated'), datasets: bucket('datasets') },
    lakeKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/lake',
    executionRole: new iam.Role(stack, 'Execution', { assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com') }),
    logGroup: new logs.LogGroup(stack, 'Logs'),
  });
  return Template.fromStack(stack);
}

test("DataPrepJob of a run writes curated records and manifests only under the run's prefix", () => {
  const writes = statements(dataPrepTemplate('runs/demo/')).filter((s) => actions(s).includes('s3:PutObject'));
  const resources = writes.flatMap((s) => s.Resource as unknown[]).map((r) => JSON.stringify(r));
  assert.equal(resources.length, 2);
  for (const resource of resources) assert.match(resource, /\/runs\/demo\/\*"\]\]\}$/);
  assert.ok(resources.some((r) => r.includes('Lakecurated')) && resources.some((r) => r.includes('Lakedatasets')));
});

test('DataPrepJob never writes raw, and touches no zone it was not given', () => {
  const all = JSON.stringify(statements(dataPrepTemplate('')));
  const writes = statements(dataPrepTemplate('')).filter((s) => actions(s).includes('s3:PutObject'));
  assert.ok(!JSON.stringify(writes).includes('"Ref":"Lakeraw"'), 'raw is read-only');
  assert.ok(!/Lake(models|artifacts)/.test(all));
});

test('DataPrepJob tells the pipeline its write prefix, which dapt-data enforces', () => {
  const container = only(dataPrepTemplate('runs/demo/'), 'AWS::Batch::JobDefinition').ContainerProperties as {
    Environment: { Name: string; Value: string }[];
  };
  assert.deepEqual(
    container.Environment.find((e) => e.Name === 'DAPT_WRITE_PREFIX'),
    { Name: 'DAPT_WRITE_PREFIX', Value: 'runs/demo/' },
  );
});
