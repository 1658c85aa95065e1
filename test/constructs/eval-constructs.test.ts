import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { CfnParameter, RemovalPolicy } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { EVAL_PREFIXES } from '../../lambda/shared/layout';
import { EvalFunctions } from '../../lib/constructs/eval-functions';
import { EvalStateMachine } from '../../lib/constructs/eval-state-machine';
import { ATHENA_SCHEMA_FILE, ResultsTable } from '../../lib/constructs/results-table';
import { actions, CONFIG, newStack, only, resources, scaffold } from './fixtures';

/** The eval functions and their state machine in one stack, as the eval stack wires them. */
function evalTemplate(): Template {
  const { stack, vpc, key } = scaffold();
  const evalBucket = s3.Bucket.fromBucketName(stack, 'Eval', new CfnParameter(stack, 'EvalBucketName').valueAsString);
  const functions = new EvalFunctions(stack, 'Functions', {
    eval: { ...CONFIG.eval, bedrockModelIds: ['anthropic.claude-3-5-sonnet-20240620-v1:0'] },
    namePrefix: 'dapt-test',
    metricsNamespace: 'dapt/test/eval',
    vpc,
    vpcCidr: CONFIG.network.cidr,
    gatewayPrefixLists: { s3: 'pl-s3', dynamodb: 'pl-ddb' },
    evalBucket,
    lakeKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/lake',
    idempotencyTable: new dynamodb.Table(stack, 'Idempotency', {
      partitionKey: { name: 'id', type: dynamodb.AttributeType.STRING },
    }),
    encryptionKey: key,
    logRetentionDays: 30,
    destroyOnDelete: true,
  });
  new EvalStateMachine(stack, 'StateMachine', {
    stateMachineName: 'dapt-test-eval',
    evalBucket,
    lakeKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/lake',
    logGroup: new logs.LogGroup(stack, 'StateMachineLogs', { logGroupName: '/aws/vendedlogs/states/dapt-test-eval' }),
    plan: functions.plan.function,
    worker: functions.worker.function,
    aggregate: functions.aggregate.function,
  });
  return Template.fromStack(stack);
}
const template = evalTemplate();

/** The managed policy of one eval function (`Plan`, `Worker`, `Aggregate`). */
function policyOf(fn: string): { Action: string | string[]; Resource: unknown }[] {
  const entry = Object.entries(resources(template, 'AWS::IAM::ManagedPolicy')).find(([id]) =>
    id.startsWith(`Functions${fn}`),
  )!;
  return (entry[1].Properties.PolicyDocument as { Statement: { Action: string | string[]; Resource: unknown }[] })
    .Statement;
}

/** The eval-bucket prefixes a function may write. */
function writtenPrefixes(fn: string): string[] {
  const writes = policyOf(fn).filter((s) => actions(s).includes('s3:PutObject'));
  const text = JSON.stringify(writes.map((s) => s.Resource));
  return Object.entries(EVAL_PREFIXES)
    .filter(([, prefix]) => text.includes(`/${prefix}*`))
    .map(([kind]) => kind)
    .sort();
}

test('EvalFunctions: each function writes only its part of the eval bucket, and none writes benchmarks', () => {
  assert.deepEqual(writtenPrefixes('Plan'), ['runs']);
  assert.deepEqual(writtenPrefixes('Worker'), ['results']);
  assert.deepEqual(writtenPrefixes('Aggregate'), ['athena', 'runs']);
});

test("EvalFunctions: the worker may invoke only the configured Bedrock models and this environment's endpoints", () => {
  const invoke = (action: string): string =>
    JSON.stringify(
      policyOf('Worker')
        .filter((s) => actions(s).includes(action))
        .map((s) => s.Resource),
    );
  assert.match(invoke('bedrock:InvokeModel'), /foundation-model\/anthropic\.claude-3-5-sonnet-20240620-v1:0"/);
  assert.equal((invoke('bedrock:InvokeModel').match(/foundation-model/g) ?? []).length, 1);
  assert.match(invoke('sagemaker:InvokeEndpoint'), /endpoint\/dapt-test-\*"/);
});

test('EvalStateMachine continues a shard that ran out of Lambda time and never fails a run for one shard', () => {
  const definition = JSON.stringify(only(template, 'AWS::StepFunctions::StateMachine').DefinitionString);
  assert.match(
    definition,
    /\\"ErrorEquals\\":\[\\"ShardIncompleteError\\"\],\\"IntervalSeconds\\":1,\\"MaxAttempts\\":20/,
  );
  assert.match(definition, /\\"ToleratedFailurePercentage\\":100/);
});

test('EvalStateMachine keeps the logical id of a state machine created directly in the stack', () => {
  assert.deepEqual(
    Object.keys(resources(template, 'AWS::StepFunctions::StateMachine')).map((id) => id.replace(/[0-9A-F]{8}$/, '')),
    ['StateMachine'],
  );
});

test("ResultsTable: the columns are the aggregator's schema, run_id the projected partition", () => {
  const stack = newStack();
  const evalBucket = s3.Bucket.fromBucketName(stack, 'Eval', 'eval-bucket');
  new ResultsTable(stack, 'ResultsTable', { databaseName: 'db', evalBucket, removalPolicy: RemovalPolicy.RETAIN });
  const table = Template.fromStack(stack);
  assert.deepEqual(
    Object.keys(resources(table, 'AWS::Glue::Table')),
    ['ResultsTable'],
    'the logical id of the stack-level table',
  );
  const input = only(table, 'AWS::Glue::Table').TableInput as {
    PartitionKeys: { Name: string }[];
    Parameters: Record<string, string>;
    StorageDescriptor: { Columns: { Name: string }[] };
  };
  const schema = (JSON.parse(readFileSync(ATHENA_SCHEMA_FILE, 'utf8')) as { name: string }[]).map((c) => c.name);
  assert.deepEqual(
    input.StorageDescriptor.Columns.map((c) => c.Name),
    schema.filter((n) => n !== 'run_id'),
  );
  assert.deepEqual(
    input.PartitionKeys.map((k) => k.Name),
    ['run_id'],
  );
  assert.equal(input.Parameters['projection.run_id.type'], 'injected');
});
