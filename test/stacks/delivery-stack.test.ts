import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { Stack, Stage } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { createApp } from '../../lib/app';
import { loadConfig } from '../../lib/config/load';
import { APPROVAL_ACTION, DeliveryStack, SYNTH_COMMANDS } from '../../lib/stacks/delivery-stack';

const ROOT = path.join(__dirname, '..', '..');

/** The production pipeline around a one-queue stage (the platform's own stacks are tested elsewhere). */
function deliveryTemplate(): Template {
  const config = loadConfig({ stage: 'production', defaultAccount: '123456789012' });
  const app = createApp();
  const stack = new DeliveryStack(app, 'dapt-prod-delivery', {
    env: { account: config.account, region: config.region },
    config: { ...config, delivery: config.delivery! },
    buildStage: (scope, id) => {
      const stage = new Stage(scope, id);
      new sqs.Queue(new Stack(stage, 'dapt-prod-network', { stackName: 'dapt-prod-network' }), 'Queue', {
        enforceSSL: true,
      });
      return stage;
    },
  });
  return Template.fromStack(stack);
}

const template = deliveryTemplate();

test('the synth step runs the README test command (what CI runs) and make synth on the commit it deploys', () => {
  const readmeTest = readFileSync(path.join(ROOT, 'README.md'), 'utf8').match(/^(make test)\s+#/m)?.[1];
  const ciRun = readFileSync(path.join(ROOT, '.ci', 'run'), 'utf8')
    .trim()
    .split('\n')
    .at(-1);
  assert.equal(readmeTest, 'make test');
  assert.equal(ciRun, readmeTest, ".ci/run's last command is the README's test command");
  const projects = Object.values(template.findResources('AWS::CodeBuild::Project')) as {
    Properties: { Source: { BuildSpec?: string } };
  }[];
  const synth = projects
    .map((p) => JSON.parse(p.Properties.Source.BuildSpec ?? '{}') as { phases?: { build?: { commands?: string[] } } })
    .find((spec) => spec.phases?.build?.commands?.includes('make synth'));
  assert.ok(synth, 'no CodeBuild project runs make synth');
  assert.deepEqual(synth.phases!.build!.commands, [...SYNTH_COMMANDS]);
  assert.equal(synth.phases!.build!.commands![0], readmeTest);
});

test('a manual approval comes before every deployment action of the production stage, and only there', () => {
  const pipeline = Object.values(template.findResources('AWS::CodePipeline::Pipeline'))[0] as {
    Properties: {
      Stages: { Name: string; Actions: { Name: string; RunOrder: number; ActionTypeId: { Category: string } }[] }[];
    };
  };
  const approvals = pipeline.Properties.Stages.flatMap((s) =>
    s.Actions.filter((a) => a.ActionTypeId.Category === 'Approval').map((a) => ({ stage: s.Name, action: a })),
  );
  assert.deepEqual(
    approvals.map((a) => [a.stage, a.action.Name]),
    [['Production', APPROVAL_ACTION]],
  );
  const production = pipeline.Properties.Stages.find((s) => s.Name === 'Production')!;
  const deploys = production.Actions.filter((a) => a.ActionTypeId.Category === 'Deploy');
  assert.ok(deploys.length > 0, 'the production stage deploys nothing');
  for (const deploy of deploys)
    assert.ok(deploy.RunOrder > approvals[0]!.action.RunOrder, `${deploy.Name} runs before the approval`);
  const record = production.Actions.find((a) => a.Name === 'RecordDeployment');
  assert.ok(
    record && record.RunOrder > Math.max(...deploys.map((d) => d.RunOrder)),
    'the record is written after the deployment',
  );
});

test('the deployment record reads the approver of this execution and writes it to SSM', () => {
  const specs = (
    Object.values(template.findResources('AWS::CodeBuild::Project')) as {
      Properties: { Source: { BuildSpec?: string } };
    }[]
  )
    .map((p) => p.Properties.Source.BuildSpec ?? '')
    .filter((spec) => spec.includes('list-action-executions'));
  assert.equal(specs.length, 1);
  assert.match(specs[0]!, new RegExp(`actionName=='${APPROVAL_ACTION}'`));
  assert.match(specs[0]!, /approvedBy: \.updatedBy/);
  assert.match(specs[0]!, /aws ssm put-parameter --name \\"\$PARAMETER\\"/);
  template.hasResourceProperties('AWS::SSM::Parameter', { Name: '/dapt/prod/delivery/last-approved-deployment' });
});

test('pipeline artifacts and notifications are KMS-encrypted; approval, success and failure are notified', () => {
  template.hasResourceProperties('AWS::S3::Bucket', {
    BucketEncryption: {
      ServerSideEncryptionConfiguration: [
        Match.objectLike({
          ServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: Match.anyValue() },
        }),
      ],
    },
  });
  template.hasResourceProperties('AWS::SNS::Topic', {
    TopicName: 'dapt-prod-delivery',
    KmsMasterKeyId: Match.anyValue(),
  });
  template.hasResourceProperties('AWS::CodeStarNotifications::NotificationRule', {
    EventTypeIds: Match.arrayWith([
      'codepipeline-pipeline-manual-approval-needed',
      'codepipeline-pipeline-pipeline-execution-failed',
    ]),
  });
});

test('the source is the reviewed branch through the connection whose ARN the platform team stored in SSM', () => {
  const pipeline = JSON.stringify(template.findResources('AWS::CodePipeline::Pipeline'));
  assert.match(pipeline, /"FullRepositoryId":"example-org\/dapt-platform","BranchName":"main"/);
  assert.ok(JSON.stringify(template.toJSON().Parameters).includes('/dapt/prod/delivery/connection-arn'));
});
