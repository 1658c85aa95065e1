/**
 * Operate evaluation runs on a deployed stage: `npx dapt eval <command>` (`--help` on each; help
 * and `start --dry-run` need no AWS credentials).
 *
 *   dapt eval start  --spec FILE [--stage production|experiment --experiment NAME] [--dry-run]
 *   dapt eval status --run-id ID [--stage ... --experiment NAME]
 *   dapt eval report --run-id ID [--stage ... --experiment NAME]
 *
 * The state machine ARN and the eval bucket come from SSM (`/dapt/<envId>/eval/state-machine-arn`,
 * `/dapt/<envId>/datalake/buckets/eval`). `start` validates the spec with the Plan Lambda's schema,
 * uploads it to `runs/<run_id>/spec.json` and starts the execution named `run_id`.
 */
import { readFileSync } from 'node:fs';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { DescribeExecutionCommand, SFNClient } from '@aws-sdk/client-sfn';
import { Command } from 'commander';
import { parseRunSpec } from '../lambda/shared/spec';
import {
  countRecords,
  type Environment,
  environmentOptions,
  parameterNames,
  progressBar,
  readParameter,
  readRunRecord,
  type RunRecord,
  runIdFor,
  startRun,
} from './eval-lib';
import { SsmParameterReader } from './ssm';

/** Where the eval commands write. */
export interface EvalIo {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
}

interface EvalValues {
  spec?: string;
  runId?: string;
  stage: 'production' | 'experiment';
  experiment?: string;
  region: string;
  prefix: string;
  dryRun?: boolean;
}

/** The `eval` command group, on commander (parsing, validation and generated help). */
export function evalCommand(io: EvalIo): Command {
  const group = new Command('eval').description('Run evaluations on a deployed stage (Step Functions fan-out)');
  const common = (command: Command): Command => environmentOptions(command);
  common(group.command('start').description('Validate a run spec, upload it and start its execution (once per run id)'))
    .requiredOption('--spec <file>', 'run spec (JSON)')
    .option(
      '--dry-run',
      'validate the spec and print the run id and where it would go; start nothing (needs no credentials)',
      false,
    )
    .action(async (values: EvalValues) => start(values, io));
  common(group.command('status').description("A run's execution status and how many units have a record"))
    .requiredOption('--run-id <id>', 'the run')
    .action(async (values: EvalValues) => status(values, io));
  common(group.command('report').description("Where a run's report, records and quarantine are"))
    .requiredOption('--run-id <id>', 'the run')
    .action(async (values: EvalValues) => report(values, io));
  return group;
}

function environmentOf(values: EvalValues): Environment {
  return {
    stage: values.stage,
    ...(values.experiment ? { experiment: values.experiment } : {}),
    prefix: values.prefix,
    region: values.region,
  };
}

async function start(values: EvalValues, io: EvalIo): Promise<void> {
  const env = environmentOf(values);
  const names = parameterNames(env);
  const spec = parseRunSpec(JSON.parse(readFileSync(values.spec!, 'utf8')), values.spec!);
  const runId = runIdFor(spec);
  const specKey = `runs/${runId}/spec.json`;
  if (values.dryRun) {
    io.out(`spec ${values.spec}: valid; run_id=${runId}`);
    io.out(
      `would upload s3://<bucket at ${names.bucket}>/${specKey} and start execution ${runId} of <state machine at ${names.stateMachineArn}>`,
    );
    return;
  }
  const ssm = new SsmParameterReader({ region: env.region });
  const s3 = new S3Client({ region: env.region });
  const bucket = await readParameter(ssm, names.bucket, env);
  const stateMachineArn = await readParameter(ssm, names.stateMachineArn, env);
  await s3.send(
    new PutObjectCommand({
      Bucket: bucket,
      Key: specKey,
      Body: `${JSON.stringify({ ...spec, run_id: runId }, null, 2)}\n`,
      ContentType: 'application/json',
    }),
  );
  const started = await startRun(new SFNClient({ region: env.region }), stateMachineArn, runId, specKey);
  io.out(`${started.alreadyStarted ? 'already started (same run, same execution)' : 'started'}: run_id=${runId}`);
  io.out(`execution: ${started.executionArn}`);
  io.out(`spec: s3://${bucket}/${specKey}`);
}

async function status(values: EvalValues, io: EvalIo): Promise<void> {
  const env = environmentOf(values);
  const names = parameterNames(env);
  const ssm = new SsmParameterReader({ region: env.region });
  const s3 = new S3Client({ region: env.region });
  const bucket = await readParameter(ssm, names.bucket, env);
  const runId = values.runId!;
  const run = await readRun(s3, bucket, runId);
  const finished = await countRecords(s3, bucket, run.cache_keys);
  const stateMachineArn = await readParameter(ssm, names.stateMachineArn, env);
  const execution = await new SFNClient({ region: env.region }).send(
    new DescribeExecutionCommand({
      executionArn: `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${runId}`,
    }),
  );
  io.out(`run ${runId}: execution ${execution.status ?? 'UNKNOWN'}`);
  io.out(`${progressBar(finished, run.expected_units)}  ${finished} / ${run.expected_units} units have a record`);
  io.out(
    `quarantined rows: ${run.quarantined_rows}; errored units are counted in the report (records with status 'errored' are retried by the next run)`,
  );
}

async function report(values: EvalValues, io: EvalIo): Promise<void> {
  const env = environmentOf(values);
  const bucket = await readParameter(new SsmParameterReader({ region: env.region }), parameterNames(env).bucket, env);
  io.out(`report: s3://${bucket}/runs/${values.runId}/report.json (written by the Aggregate step)`);
  io.out(
    `records: s3://${bucket}/runs/${values.runId}/results.jsonl; quarantine: s3://${bucket}/runs/${values.runId}/quarantine.jsonl`,
  );
}

async function readRun(s3: S3Client, bucket: string, runId: string): Promise<RunRecord> {
  const run = await readRunRecord(s3, bucket, runId);
  if (!run)
    throw new Error(`run ${runId} has no s3://${bucket}/runs/${runId}/run.json yet: not started, or still planning`);
  return run;
}
