/**
 * `dapt data submit|watch`: the data pipeline as an EMR Serverless job run, against moto's
 * EMR Serverless, S3 and SSM (moto finishes each job run at once); following a run through its
 * states with a scripted GetJobRun.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { CreateApplicationCommand, EMRServerlessClient, GetJobRunCommand } from '@aws-sdk/client-emr-serverless';
import { CreateBucketCommand, GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { main } from '../../cli/dapt';
import { followJobRun } from '../../cli/data-lib';
import { SsmParameterReader } from '../../cli/ssm';
import type { Clients } from '../../cli/train';
import { SPARK_JOB, WRITE_PREFIX_ENV } from '../../lib/config/spark-job';
import { type Moto, startMoto } from '../lambda/helpers';
import { tempDir } from './helpers';

let moto: Moto;
let applicationId: string;
const ROLE = 'arn:aws:iam::123456789012:role/dapt-prod-run-alpha-spark';

before(async () => {
  moto = await startMoto();
  const emr = new EMRServerlessClient(moto.clientConfig);
  ({ applicationId } = (await emr.send(
    new CreateApplicationCommand({ name: 'dapt-prod-data', type: 'SPARK', releaseLabel: SPARK_JOB.releaseLabel }),
  )) as { applicationId: string });
  const ssm = new SSMClient(moto.clientConfig);
  const parameters: Record<string, string> = {
    'training/spark/application-id': applicationId,
    'runs/alpha/spark/job-role-arn': ROLE,
    'datalake/buckets/artifacts': 'artifacts-prod',
    'datalake/buckets/datasets': 'datasets-prod',
    'datalake/kms-key-arn': 'arn:aws:kms:us-east-1:123456789012:key/lake',
    'training/spark/log-group': 'dapt-prod-spark',
    'training/kms-key-arn': 'arn:aws:kms:us-east-1:123456789012:key/training',
  };
  for (const [key, value] of Object.entries(parameters)) {
    await ssm.send(new PutParameterCommand({ Name: `/dapt/prod/${key}`, Value: value, Type: 'String' }));
  }
  for (const bucket of ['artifacts-prod', 'datasets-prod'])
    await moto.s3.send(new CreateBucketCommand({ Bucket: bucket }));
});

after(async () => {
  await moto?.stop();
});

async function dapt(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const unused = (): Clients => {
    throw new Error('dapt data uses its own clients');
  };
  const code = await main(argv, {
    out: (l) => out.push(l),
    err: (l) => err.push(l),
    clients: unused,
    dataClients: () => ({
      ssm: new SsmParameterReader({
        region: moto.clientConfig.region,
        endpoint: moto.endpoint,
        credentials: moto.clientConfig.credentials,
      }),
      s3: new S3Client({ ...moto.clientConfig, forcePathStyle: true }),
      emr: new EMRServerlessClient(moto.clientConfig),
    }),
    pollMs: 1,
  });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

test("data submit starts the Spark entry point with the run's role, its config and its own log prefix (moto)", async () => {
  const config = path.join(tempDir(), 'pipeline.yaml');
  writeFileSync(config, 'output: s3://datasets-prod/runs/alpha/data/\n');
  const result = await dapt('data', 'submit', '--config', config, '--stage', 'production', '--run', 'alpha');
  assert.equal(result.code, 0, result.err);
  const id = /job run (\S+) /.exec(result.out)?.[1];
  assert.ok(id, result.out);
  assert.match(result.out, /state SUCCESS/);
  assert.match(result.out, /logs: s3:\/\/artifacts-prod\/runs\/alpha\/spark-logs\/applications\/\S+\/jobs\//);

  const { jobRun } = await new EMRServerlessClient(moto.clientConfig).send(
    new GetJobRunCommand({ applicationId, jobRunId: id }),
  );
  assert.equal(jobRun?.executionRole, ROLE);
  const submit = jobRun?.jobDriver?.sparkSubmit;
  assert.equal(submit?.entryPoint, `s3://artifacts-prod/${SPARK_JOB.entryPoint}`);
  assert.deepEqual(submit?.entryPointArguments, [...SPARK_JOB.entryPointArguments]);
  const conf = submit?.sparkSubmitParameters ?? '';
  assert.match(conf, /--conf spark\.archives=s3:\/\/artifacts-prod\/code\/dapt-data\/environment\.tar\.gz#environment/);
  assert.match(conf, new RegExp(`spark\\.emr-serverless\\.driverEnv\\.${WRITE_PREFIX_ENV}=runs/alpha/( |$)`));
  assert.match(conf, new RegExp(`spark\\.executorEnv\\.${WRITE_PREFIX_ENV}=runs/alpha/( |$)`));
  const configUri = /driverEnv\.PIPELINE_CONFIG=(\S+)/.exec(conf)?.[1];
  assert.match(configUri ?? '', /^s3:\/\/datasets-prod\/runs\/alpha\/data\/[0-9a-f]{8}\/pipeline\.yaml$/);
  const key = configUri!.replace('s3://datasets-prod/', '');
  const uploaded = await moto.s3.send(new GetObjectCommand({ Bucket: 'datasets-prod', Key: key }));
  assert.equal(await uploaded.Body?.transformToString(), 'output: s3://datasets-prod/runs/alpha/data/\n');
  const monitoring = jobRun?.configurationOverrides?.monitoringConfiguration;
  assert.deepEqual(monitoring?.s3MonitoringConfiguration, {
    logUri: 's3://artifacts-prod/runs/alpha/spark-logs/',
    encryptionKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/lake',
  });
  assert.equal(monitoring?.cloudWatchLoggingConfiguration?.logGroupName, 'dapt-prod-spark');
});

test('data submit in production names the missing run stack when the run has no Spark role (moto)', async () => {
  const config = path.join(tempDir(), 'pipeline.yaml');
  writeFileSync(config, 'output: x\n');
  const result = await dapt('data', 'submit', '--config', config, '--stage', 'production', '--run', 'beta');
  assert.equal(result.code, 1);
  assert.match(result.err, /Spark job role of run 'beta' is not deployed .*-c run=beta/);
});

test('following a job run prints each state change once and stops at a terminal state', async () => {
  const states = [
    { state: 'SUBMITTED' },
    { state: 'PENDING' },
    { state: 'PENDING' },
    { state: 'RUNNING' },
    { state: 'RUNNING' },
    { state: 'FAILED', details: 'Job failed, ExitCode: 2' },
    { state: 'SUCCESS' },
  ];
  const out: string[] = [];
  let sleeps = 0;
  const final = await followJobRun(
    async () => states.shift()!,
    (l) => out.push(l),
    async () => {
      sleeps += 1;
    },
  );
  assert.deepEqual(out, ['state SUBMITTED', 'state PENDING', 'state RUNNING', 'state FAILED: Job failed, ExitCode: 2']);
  assert.deepEqual(final, { state: 'FAILED', details: 'Job failed, ExitCode: 2' });
  assert.equal(sleeps, 5);
});
