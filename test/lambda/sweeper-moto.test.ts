/**
 * The sweeper's handler (lambda/sweeper/index.ts `sweep`) against moto: real ListStacks,
 * DescribeStacks, DeleteStack, SSM parameters, SNS publishing and Step Functions executions, so
 * the part `decide.ts`'s tests cannot reach (finding, acting, the order across sweeps) runs
 * against an AWS API. SageMaker inference components and Batch jobs are not served by moto; their
 * preparations are covered by the decision tests only.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { BatchClient } from '@aws-sdk/client-batch';
import {
  CloudFormationClient,
  CreateStackCommand,
  DescribeStacksCommand,
  ListStacksCommand,
} from '@aws-sdk/client-cloudformation';
import { SageMakerClient } from '@aws-sdk/client-sagemaker';
import { DescribeExecutionCommand, SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { CreateTopicCommand, SNSClient } from '@aws-sdk/client-sns';
import { GetParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { sweep, type SweeperClients } from '../../lambda/sweeper/index';
import { type Moto, startMoto } from './helpers';

let moto: Moto;
let clients: SweeperClients;
let topicArn: string;

before(async () => {
  moto = await startMoto();
  clients = {
    cloudformation: new CloudFormationClient(moto.clientConfig),
    ssm: new SSMClient(moto.clientConfig),
    sns: new SNSClient(moto.clientConfig),
    sagemaker: new SageMakerClient(moto.clientConfig),
    batch: new BatchClient(moto.clientConfig),
    sfn: new SFNClient(moto.clientConfig),
  };
  topicArn = (await clients.sns.send(new CreateTopicCommand({ Name: 'lifecycle' }))).TopicArn!;
});

after(async () => {
  await moto?.stop();
});

const SETTINGS = {
  prefix: 'dapt',
  stage: 'experiment' as const,
  warningHours: 24,
  schedule: 'rate(1 hour)',
};
/** Every action that failed (a failed action is logged and reported, not thrown). */
const errors: unknown[] = [];
const quiet = { info: () => undefined, error: (...args: unknown[]) => void errors.push(args) };

/** A stack as an experiment deploys it: its tags, and one resource (a state machine for the pipeline). */
async function deploy(name: string, resources: Record<string, unknown>): Promise<void> {
  await clients.cloudformation.send(
    new CreateStackCommand({
      StackName: name,
      TemplateBody: JSON.stringify({ Resources: resources }),
      Tags: [
        { Key: 'dapt:ttl-hours', Value: '72' },
        { Key: 'dapt:environment', Value: 'exp-alice' },
        { Key: 'experiment', Value: 'alice' },
      ],
    }),
  );
}

const parameter = (name: string) => ({
  Type: 'AWS::SSM::Parameter',
  Properties: { Name: name, Type: 'String', Value: 'x' },
});

async function liveStacks(): Promise<string[]> {
  const page = await clients.cloudformation.send(
    new ListStacksCommand({ StackStatusFilter: ['CREATE_COMPLETE', 'UPDATE_COMPLETE', 'DELETE_FAILED'] }),
  );
  return (page.StackSummaries ?? []).map((s) => s.StackName ?? '').sort();
}

test('an expired experiment goes in waves: warned, then the pipeline (its execution stopped), then the rest, network last', async () => {
  await deploy('dapt-exp-alice-network', { P: parameter('/t/network') });
  await deploy('dapt-exp-alice-data-lake', { P: parameter('/t/lake') });
  await deploy('dapt-exp-alice-eval', { P: parameter('/t/eval') });
  await deploy('dapt-exp-alice-pipeline', {
    Machine: {
      Type: 'AWS::StepFunctions::StateMachine',
      Properties: {
        StateMachineName: 'dapt-exp-alice-experiment-pipeline',
        RoleArn: 'arn:aws:iam::123456789012:role/pipeline',
        DefinitionString: JSON.stringify({ StartAt: 'W', States: { W: { Type: 'Wait', Seconds: 3600, End: true } } }),
      },
    },
  });
  const described = await clients.cloudformation.send(
    new DescribeStacksCommand({ StackName: 'dapt-exp-alice-network' }),
  );
  const deployedAt = described.Stacks![0]!.CreationTime!.getTime();
  const hours = (h: number): Date => new Date(deployedAt + h * 3600_000);
  const machine = `arn:aws:states:us-east-1:123456789012:stateMachine:dapt-exp-alice-experiment-pipeline`;
  const running = await clients.sfn.send(new StartExecutionCommand({ stateMachineArn: machine, name: 'run-1' }));

  // A day before: one warning, nothing deleted; the marker keeps the next sweep from warning again.
  const warned = await sweep(clients, { ...SETTINGS, topicArn }, quiet, hours(49));
  assert.deepEqual(
    warned.map((a) => a.kind),
    ['warn'],
  );
  assert.equal((await sweep(clients, { ...SETTINGS, topicArn }, quiet, hours(50))).length, 0);
  const marker = await clients.ssm.send(new GetParameterCommand({ Name: '/dapt/exp-alice/lifecycle/warned' }));
  assert.ok(marker.Parameter?.Value);

  // Expired: announced; the pipeline goes first. Its running execution is stopped, and its stack is
  // deleted by the next sweep, once no execution runs.
  const first = await sweep(clients, { ...SETTINGS, topicArn }, quiet, hours(73));
  assert.deepEqual(
    first.map((a) => (a.kind === 'delete-stack' ? `delete ${a.stack}` : a.kind)),
    ['announce-deletion', 'delete dapt-exp-alice-pipeline'],
  );
  const stopped = await clients.sfn.send(new DescribeExecutionCommand({ executionArn: running.executionArn }));
  assert.equal(stopped.status, 'ABORTED', 'the pipeline execution is stopped before its stack is deleted');
  assert.ok((await liveStacks()).includes('dapt-exp-alice-pipeline'), 'deletion waited for the stop');
  await sweep(clients, { ...SETTINGS, topicArn }, quiet, hours(73.5));
  assert.deepEqual(await liveStacks(), ['dapt-exp-alice-data-lake', 'dapt-exp-alice-eval', 'dapt-exp-alice-network']);

  // Each later sweep takes the next tier; nothing is deleted before what depends on it.
  await sweep(clients, { ...SETTINGS, topicArn }, quiet, hours(74));
  assert.deepEqual(await liveStacks(), ['dapt-exp-alice-data-lake', 'dapt-exp-alice-network']);
  await sweep(clients, { ...SETTINGS, topicArn }, quiet, hours(75));
  assert.deepEqual(await liveStacks(), ['dapt-exp-alice-network']);
  await sweep(clients, { ...SETTINGS, topicArn }, quiet, hours(76));
  assert.deepEqual(await liveStacks(), []);
  // With the last stack gone, its lifecycle parameters go too.
  const last = await sweep(clients, { ...SETTINGS, topicArn }, quiet, hours(77));
  assert.deepEqual(
    last.map((a) => a.kind),
    ['delete-parameters'],
  );
  await assert.rejects(
    clients.ssm.send(new GetParameterCommand({ Name: '/dapt/exp-alice/lifecycle/warned' })),
    /ParameterNotFound/,
  );
  assert.deepEqual(errors, [], 'every action (publishing to the topic included) succeeded');
});
