/** cli/eval-lib.ts against moto: SSM lookups, idempotent execution start, progress. */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { CreateStateMachineCommand, SFNClient } from '@aws-sdk/client-sfn';
import {
  countRecords,
  type Environment,
  parameterNames,
  progressBar,
  readParameter,
  runIdFor,
  startRun,
} from '../../cli/eval-lib';
import { PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { SsmParameterReader } from '../../cli/ssm';
import { parseRunSpec } from '../../lambda/shared/spec';
import { type Moto, startMoto } from './helpers';

let moto: Moto;
const ENV: Environment = { stage: 'experiment', experiment: 'alice', prefix: 'dapt', region: 'us-east-1' };

before(async () => {
  moto = await startMoto();
});
after(async () => {
  await moto?.stop();
});

test('parameter names follow /<prefix>/<envId>/...', () => {
  assert.deepEqual(parameterNames(ENV), {
    stateMachineArn: '/dapt/exp-alice/eval/state-machine-arn',
    bucket: '/dapt/exp-alice/datalake/buckets/eval',
  });
  assert.equal(parameterNames({ ...ENV, stage: 'production' }).bucket, '/dapt/prod/datalake/buckets/eval');
  assert.throws(
    () => parameterNames({ ...ENV, experiment: 'Bad_Name' }),
    /--experiment = "Bad_Name": must be 1-20 lowercase letters/,
  );
});

test('a missing SSM parameter asks whether the stack is deployed in the region', async () => {
  const ssm = new SsmParameterReader({
    region: 'us-east-1',
    endpoint: moto.endpoint,
    credentials: moto.clientConfig.credentials,
  });
  await assert.rejects(
    readParameter(ssm, '/dapt/exp-alice/eval/state-machine-arn', ENV),
    /does not exist: is the experiment eval stack \(envId 'exp-alice'\) deployed in region us-east-1\?/,
  );
  await new SSMClient(moto.clientConfig).send(
    new PutParameterCommand({ Name: '/dapt/exp-alice/datalake/buckets/eval', Value: 'eval-bucket', Type: 'String' }),
  );
  assert.equal(await readParameter(ssm, '/dapt/exp-alice/datalake/buckets/eval', ENV), 'eval-bucket');
});

test('the same run started twice is one execution; different input is reported clearly', async () => {
  const sfn = new SFNClient(moto.clientConfig);
  const machine = await sfn.send(
    new CreateStateMachineCommand({
      name: 'eval',
      roleArn: 'arn:aws:iam::123456789012:role/sfn',
      definition: JSON.stringify({ StartAt: 'P', States: { P: { Type: 'Pass', End: true } } }),
    }),
  );
  const arn = machine.stateMachineArn ?? '';
  const first = await startRun(sfn, arn, 'run-1', 'runs/run-1/spec.json');
  assert.equal(first.alreadyStarted, false);
  const second = await startRun(sfn, arn, 'run-1', 'runs/run-1/spec.json');
  assert.equal(second.alreadyStarted, true);
  assert.equal(second.executionArn, first.executionArn);
  await assert.rejects(
    startRun(sfn, arn, 'run-1', 'runs/other/spec.json'),
    /ExecutionAlreadyExists: run 'run-1' was already started with different input/,
  );
});

test('run ids are stable for the same spec and differ for a different one', () => {
  const spec = (seed: number): ReturnType<typeof parseRunSpec> =>
    parseRunSpec(
      {
        benchmark: { name: 'help-qa', version: '1.0' },
        models: [{ provider: 'bedrock', model_id: 'm' }],
        decoding: { seed },
      },
      'test',
    );
  assert.equal(runIdFor(spec(0)), runIdFor(spec(0)));
  assert.notEqual(runIdFor(spec(0)), runIdFor(spec(1)));
  assert.match(runIdFor(spec(0)), /^help-qa-1-0-[0-9a-f]{16}$/);
});

test('status counts finished units and draws a progress bar', async () => {
  await moto.s3.send(new CreateBucketCommand({ Bucket: 'cli-eval' }));
  for (const key of ['a', 'b'])
    await moto.s3.send(new PutObjectCommand({ Bucket: 'cli-eval', Key: `results/items/${key}.json`, Body: '{}' }));
  assert.equal(await countRecords(moto.s3, 'cli-eval', ['a', 'b', 'c', 'd']), 2);
  assert.equal(progressBar(2, 4, 10), '[#####.....]  50.0%');
  assert.equal(progressBar(0, 0, 4), '[....]   0.0%');
});
