/**
 * Operate evaluation runs on a deployed stage.
 *
 *   npx tsx cli/eval.ts start  --spec FILE [--stage production|experiment --experiment NAME] [--region R]
 *   npx tsx cli/eval.ts status --run-id ID [--stage ... --experiment NAME] [--region R]
 *   npx tsx cli/eval.ts report --run-id ID [--stage ... --experiment NAME] [--region R]
 *
 * The state machine ARN and the eval bucket come from SSM (`/dapt/<envId>/eval/state-machine-arn`,
 * `/dapt/<envId>/datalake/buckets/eval`). `start` validates the spec with the Plan Lambda's schema,
 * uploads it to `runs/<run_id>/spec.json` and starts the execution named `run_id`.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { DescribeExecutionCommand, SFNClient } from '@aws-sdk/client-sfn';
import { parseRunSpec } from '../lambda/shared/spec';
import { countRecords, type Environment, parameterNames, progressBar, readParameter, runIdFor, startRun } from './eval-lib';
import { SsmParameterReader } from './ssm';

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: {
      spec: { type: 'string' },
      'run-id': { type: 'string' },
      stage: { type: 'string', default: 'production' },
      experiment: { type: 'string' },
      region: { type: 'string', default: process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1' },
      prefix: { type: 'string', default: DEFAULT_PREFIX },
    },
  });
  if (values.stage !== 'production' && values.stage !== 'experiment') throw new Error(`--stage = '${values.stage}': must be 'production' or 'experiment'`);
  const env: Environment = { stage: values.stage, ...(values.experiment ? { experiment: values.experiment } : {}), prefix: values.prefix, region: values.region };
  const names = parameterNames(env);
  const ssm = new SsmParameterReader({ region: env.region });
  const s3 = new S3Client({ region: env.region });
  const bucket = await readParameter(ssm, names.bucket, env);

  if (command === 'start') {
    if (!values.spec) throw new Error('start needs --spec FILE');
    const spec = parseRunSpec(JSON.parse(readFileSync(values.spec, 'utf8')), values.spec);
    const runId = runIdFor(spec);
    const specKey = `runs/${runId}/spec.json`;
    const stateMachineArn = await readParameter(ssm, names.stateMachineArn, env);
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: specKey, Body: `${JSON.stringify({ ...spec, run_id: runId }, null, 2)}\n`, ContentType: 'application/json' }));
    const started = await startRun(new SFNClient({ region: env.region }), stateMachineArn, runId, specKey);
    console.log(`${started.alreadyStarted ? 'already started (same run, same execution)' : 'started'}: run_id=${runId}`);
    console.log(`execution: ${started.executionArn}`);
    console.log(`spec: s3://${bucket}/${specKey}`);
    return;
  }
  const runId = values['run-id'];
  if (!runId) throw new Error(`${command ?? '(none)'} needs --run-id ID`);
  if (command === 'status') {
    const run = await readRun(s3, bucket, runId);
    const finished = await countRecords(s3, bucket, run.cache_keys);
    const stateMachineArn = await readParameter(ssm, names.stateMachineArn, env);
    const execution = await new SFNClient({ region: env.region }).send(
      new DescribeExecutionCommand({ executionArn: `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${runId}` }),
    );
    console.log(`run ${runId}: execution ${execution.status ?? 'UNKNOWN'}`);
    console.log(`${progressBar(finished, run.expected_units)}  ${finished} / ${run.expected_units} units have a record`);
    console.log(`quarantined rows: ${run.quarantined_rows}; errored units are counted in the report (records with status 'errored' are retried by the next run)`);
    return;
  }
  if (command === 'report') {
    console.log(`report: s3://${bucket}/runs/${runId}/report.json (written by the Aggregate step)`);
    console.log(`records: s3://${bucket}/runs/${runId}/results.jsonl; quarantine: s3://${bucket}/runs/${runId}/quarantine.jsonl`);
    return;
  }
  throw new Error(`unknown command '${command ?? ''}': use start, status or report`);
}

async function readRun(s3: S3Client, bucket: string, runId: string): Promise<{ expected_units: number; quarantined_rows: number; cache_keys: string[] }> {
  try {
    const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: `runs/${runId}/run.json` }));
    return JSON.parse((await response.Body?.transformToString()) ?? '{}') as Awaited<ReturnType<typeof readRun>>;
  } catch (err) {
    if ((err as { name?: string }).name === 'NoSuchKey') throw new Error(`run ${runId} has no s3://${bucket}/runs/${runId}/run.json yet: not started, or still planning`, { cause: err });
    throw err;
  }
}

const DEFAULT_PREFIX = 'dapt';

main(process.argv.slice(2)).catch((err: unknown) => {
  console.error(`error: ${(err as Error).message}`);
  process.exitCode = 1;
});
