import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CfnResource, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import { createApp } from '../../lib/app';
import { DriftDetection } from '../../lib/constructs/drift-detection';

function detectionOf(extraType?: string): Stack {
  const app = createApp();
  const stack = new Stack(app, 'dapt-prod-audit', { env: { account: '123456789012', region: 'us-east-1' } });
  const key = new kms.Key(stack, 'Key');
  if (extraType) new CfnResource(stack, 'Odd', { type: extraType });
  new DriftDetection(stack, 'DriftDetection', {
    stacks: [stack],
    otherStackNames: ['dapt-prod-delivery'],
    schedule: 'cron(0 6 * * ? *)',
    topic: new sns.Topic(stack, 'Topic', { masterKey: key }),
    topicKey: key,
    logGroup: new logs.LogGroup(stack, 'Logs'),
    stateMachineName: 'dapt-prod-drift-detection',
  });
  return stack;
}

test('DriftDetection refuses to synthesize a stack holding a resource type it has no read permissions for', () => {
  assert.throws(() => Template.fromStack(detectionOf('AWS::Foo::Bar')), /no read permissions for AWS::Foo::Bar/);
});

test('DriftDetection detects, waits while in progress, and notifies on drift or failure', () => {
  const template = Template.fromStack(detectionOf());
  const machine = Object.values(template.findResources('AWS::StepFunctions::StateMachine'))[0] as {
    Properties: { DefinitionString: unknown };
  };
  const definition = JSON.stringify(machine.Properties.DefinitionString);
  for (const fragment of [
    'cloudformation:detectStackDrift',
    'cloudformation:describeStackDriftDetectionStatus',
    'DETECTION_IN_PROGRESS',
    'DETECTION_FAILED',
    'DRIFTED',
    'dapt-prod-delivery',
  ]) {
    assert.ok(definition.includes(fragment), `definition lacks ${fragment}`);
  }
  template.hasResourceProperties('AWS::Scheduler::Schedule', { ScheduleExpression: 'cron(0 6 * * ? *)' });
});
