/**
 * The lifecycle of an experiment, as synthesized: one whole experiment environment (built once for
 * the file) with its lifecycle stack, the tags the sweeper reads, the budget, and that nothing
 * billable or stateful survives the deletion of its stacks.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import type { Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { buildEnvironment, buildRun, createApp } from '../../lib/app';

const app = createApp({ outdir: mkdtempSync(path.join(os.tmpdir(), 'dapt-lifecycle-')) });
const { platform } = buildEnvironment(app, { stage: 'experiment', experiment: 'unit' });
const environmentStacks: Stack[] = [
  platform.network,
  platform.dataLake,
  platform.evaluation,
  platform.training,
  ...(platform.serving ? [platform.serving] : []),
  ...(platform.pipeline ? [platform.pipeline] : []),
];
const lifecycle = Template.fromStack(platform.lifecycle);
const tagsOf = (stack: Stack): Record<string, string> => stack.tags.tagValues();

test('every experiment stack carries the static ttl and environment tags; the lifecycle stack none', () => {
  for (const stack of environmentStacks) {
    assert.equal(tagsOf(stack)['dapt:ttl-hours'], String(platform.config.lifecycle.defaultTtlHours), stack.stackName);
    assert.equal(tagsOf(stack)['dapt:environment'], 'exp-unit', stack.stackName);
  }
  const own = tagsOf(platform.lifecycle);
  assert.equal(platform.lifecycle.stackName, 'dapt-experiments-lifecycle');
  assert.equal(own['dapt:ttl-hours'], undefined, 'it never sweeps itself');
  assert.equal(own.experiment, 'none', 'no experiment owns it, whichever deployed it');
  assert.equal(platform.lifecycle.terminationProtection, true, 'cdk destroy --all of one experiment leaves it');
});

test('the ttl is a stack tag only: no resource of a template carries it (a template does not change with the clock)', () => {
  for (const stack of environmentStacks) {
    assert.doesNotMatch(JSON.stringify(Template.fromStack(stack).toJSON()), /dapt:ttl-hours/, stack.stackName);
  }
});

test('-c ttl above lifecycle.maxTtlHours fails the synth naming the limit', () => {
  assert.throws(
    () => buildRun(createApp(), { stage: 'production', run: 'sft' }, { ttlHours: '100000', complianceChecks: false }),
    /ttl = 100000: must be at most lifecycle\.maxTtlHours \(720 hours\)/,
  );
});

test('the sweeper runs on the sweep schedule, outside any VPC, and tells an encrypted topic', () => {
  lifecycle.hasResourceProperties('AWS::Scheduler::Schedule', {
    ScheduleExpression: platform.config.lifecycle.sweepSchedule,
  });
  const functions = lifecycle.findResources('AWS::Lambda::Function', {
    Properties: { Environment: { Variables: { SWEEP_STAGE: 'experiment', SWEEP_PREFIX: 'dapt' } } },
  });
  assert.equal(Object.keys(functions).length, 1);
  assert.equal(Object.values(functions)[0]!.Properties.VpcConfig, undefined, 'it deletes VPCs');
  lifecycle.hasResourceProperties('AWS::SNS::Topic', {
    TopicName: 'dapt-experiments-lifecycle',
    KmsMasterKeyId: Match.anyValue(),
  });
});

test("the sweeper deletes only experiment stacks, grants no wildcard action and never the resources' own permissions", () => {
  const policies = lifecycle.findResources('AWS::IAM::ManagedPolicy', {
    Properties: { Description: Match.stringLikeRegexp('^Warns before and deletes') },
  });
  const statements = Object.values(policies).flatMap(
    (p) => p.Properties.PolicyDocument.Statement as { Action: string | string[]; Resource: unknown }[],
  );
  const actions = statements.flatMap((s) => [s.Action].flat());
  assert.ok(
    actions.every((a) => !a.includes('*')),
    `wildcard action in ${actions.join(', ')}`,
  );
  const deleteStack = statements.find((s) => [s.Action].flat().includes('cloudformation:DeleteStack'))!;
  assert.match(JSON.stringify(deleteStack.Resource), /:stack\/dapt-exp-\*\/\*/);
  assert.ok(!actions.includes('iam:PassRole'), 'DeleteStack without RoleARN reuses the deployment role');
  assert.ok(!actions.some((a) => /^(s3|ec2|kms:ScheduleKeyDeletion)/.test(a)), 'CloudFormation deletes the resources');
});

test('AWS Budgets may publish to the encrypted topic: topic policy and key policy name budgets.amazonaws.com', () => {
  for (const type of ['AWS::SNS::TopicPolicy', 'AWS::KMS::Key']) {
    const documents = Object.values(lifecycle.findResources(type)).map((r) =>
      JSON.stringify(r.Properties.PolicyDocument ?? r.Properties.KeyPolicy),
    );
    assert.ok(
      documents.some((d) => d.includes('budgets.amazonaws.com') && d.includes('aws:SourceAccount')),
      type,
    );
  }
});

test("the experiment's budget counts its experiment tag and warns at 80% actual and 100% forecasted", () => {
  Template.fromStack(platform.network).hasResourceProperties('AWS::Budgets::Budget', {
    Budget: {
      BudgetName: 'dapt-exp-unit',
      BudgetType: 'COST',
      TimeUnit: 'MONTHLY',
      BudgetLimit: { Amount: platform.config.lifecycle.budget.monthlyUsd, Unit: 'USD' },
      CostFilters: { TagKeyValue: ['user:experiment$unit'] },
    },
    NotificationsWithSubscribers: [
      {
        Notification: { NotificationType: 'ACTUAL', Threshold: 80 },
        Subscribers: Match.arrayWith([Match.objectLike({ SubscriptionType: 'SNS' })]),
      },
      { Notification: { NotificationType: 'FORECASTED', Threshold: 100 }, Subscribers: Match.anyValue() },
    ],
  });
});

/** Resource types that bill or hold state, and so must go with their stack. */
const BILLABLE_OR_STATEFUL = [
  'AWS::S3::Bucket',
  'AWS::KMS::Key',
  'AWS::Logs::LogGroup',
  'AWS::DynamoDB::Table',
  'AWS::SQS::Queue',
  'AWS::SageMaker::Endpoint',
  'AWS::SageMaker::EndpointConfig',
  'AWS::SageMaker::Model',
  'AWS::SageMaker::InferenceComponent',
  'AWS::SageMaker::ModelPackageGroup',
  'AWS::Batch::ComputeEnvironment',
  'AWS::Batch::JobQueue',
  'AWS::EC2::VPCEndpoint',
  'AWS::EC2::NatGateway',
  'AWS::EC2::VPC',
  'AWS::ECR::Repository',
  'AWS::SecretsManager::Secret',
  'AWS::Glue::Database',
  'AWS::Glue::Table',
  'AWS::Athena::WorkGroup',
  'AWS::SNS::Topic',
  'AWS::StepFunctions::StateMachine',
  'AWS::Budgets::Budget',
];

test('nothing billable or stateful of an experiment survives its stacks: every such resource is deleted with them', () => {
  const kept: string[] = [];
  for (const stack of environmentStacks) {
    const resources = Template.fromStack(stack).toJSON().Resources as Record<
      string,
      { Type: string; DeletionPolicy?: string; UpdateReplacePolicy?: string; Properties?: Record<string, unknown> }
    >;
    for (const [id, resource] of Object.entries(resources)) {
      if (!BILLABLE_OR_STATEFUL.includes(resource.Type)) continue;
      // No DeletionPolicy is CloudFormation's default, Delete, for every type listed here.
      if ((resource.DeletionPolicy ?? 'Delete') !== 'Delete')
        kept.push(`${stack.stackName}/${id} (${resource.Type}): ${resource.DeletionPolicy}`);
      // KMS keys cannot be deleted at once: they go to pending deletion for the shortest window, 7 days.
      if (resource.Type === 'AWS::KMS::Key')
        assert.equal(resource.Properties?.PendingWindowInDays, 7, `${stack.stackName}/${id}`);
    }
    const template = Template.fromStack(stack);
    const buckets = Object.keys(template.findResources('AWS::S3::Bucket')).length;
    // A bucket with objects cannot be deleted; each is emptied first by CDK's auto-delete custom resource.
    assert.equal(Object.keys(template.findResources('Custom::S3AutoDeleteObjects')).length, buckets, stack.stackName);
    assert.equal(Object.keys(template.findResources('AWS::EC2::NatGateway')).length, 0, 'no NAT gateway');
  }
  assert.deepEqual(kept, []);
});
