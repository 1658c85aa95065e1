/**
 * The pure and AWS-facing parts of `dapt eval` (cli/eval.ts), kept apart so they can be tested with moto.
 */
import { Format } from 'cli-progress';
import { type Command, Option } from 'commander';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { DescribeExecutionCommand, type SFNClient, StartExecutionCommand } from '@aws-sdk/client-sfn';
import { canonicalJson, sha256Hex } from '../lambda/shared/canonical-json';
import type { RunSpec } from '../lambda/shared/spec';
import { environmentId, parameterRoot, platformParameterName } from '../lib/config/parameter-names';
import { ExperimentNameSchema, NAME_RULE_TEXT } from '../lib/config/schema';
import { ParameterNotFound, type SsmParameterReader } from './ssm';
import { EVAL_PREFIXES } from '../lambda/shared/layout';

/** Which deployed environment to talk to. */
export interface Environment {
  readonly stage: 'production' | 'experiment';
  readonly experiment?: string;
  readonly prefix: string;
  readonly region: string;
}

/**
 * The options that name a deployed environment (`--stage`, `--experiment`, `--region`,
 * `--prefix`), shared by `dapt eval`, `dapt serve` and `dapt env`.
 */
export function environmentOptions(command: Command, defaultStage: Environment['stage'] = 'production'): Command {
  return command
    .addOption(
      new Option('--stage <stage>', 'the deployed stage').choices(['production', 'experiment']).default(defaultStage),
    )
    .option('--experiment <name>', 'the experiment environment (with --stage experiment)')
    .addOption(
      new Option('--region <region>', 'AWS region').default(
        process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? DEFAULT_REGION,
      ),
    )
    .addOption(new Option('--prefix <prefix>', 'prefix of the stacks and SSM parameters').default(DEFAULT_PREFIX));
}

/** `prod` or `exp-<experiment>`, as in lib/config/load.ts. */
export function envId(env: Environment): string {
  if (env.stage === 'production') return environmentId('production');
  if (!env.experiment || !ExperimentNameSchema.safeParse(env.experiment).success) {
    throw new Error(
      `--experiment = ${JSON.stringify(env.experiment ?? '')}: must be ${NAME_RULE_TEXT} (required with --stage experiment)`,
    );
  }
  return environmentId(env.stage, env.experiment);
}

/** SSM parameter names the CLI reads. */
export function parameterNames(env: Environment): { stateMachineArn: string; bucket: string } {
  const root = parameterRoot(env.prefix, envId(env));
  return {
    stateMachineArn: platformParameterName(root, 'evalStateMachineArn'),
    bucket: platformParameterName(root, 'evalBucket'),
  };
}

/** Reads an SSM parameter; a missing one means the stack is not deployed there. */
export async function readParameter(ssm: SsmParameterReader, name: string, env: Environment): Promise<string> {
  try {
    return await ssm.get(name);
  } catch (err) {
    if (err instanceof ParameterNotFound) {
      throw new Error(
        `SSM parameter ${name} does not exist: is the ${env.stage} eval stack (envId '${envId(env)}') deployed in region ${env.region}?`,
        { cause: err },
      );
    }
    throw err;
  }
}

/** The spec's `run_id`, or a stable one derived from its content: the same spec is the same run. */
export function runIdFor(spec: RunSpec): string {
  if (spec.run_id) return spec.run_id;
  const slug = `${spec.benchmark.name}-${spec.benchmark.version}`.replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 50);
  return `${slug}-${sha256Hex(canonicalJson(spec)).slice(0, 16)}`;
}

/** Starts the execution named `runId`; the same run started twice is one execution. */
export async function startRun(
  sfn: SFNClient,
  stateMachineArn: string,
  runId: string,
  specKey: string,
): Promise<{ executionArn: string; alreadyStarted: boolean }> {
  const input = JSON.stringify({ run_id: runId, spec_key: specKey });
  const executionArn = `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${runId}`;
  const existing = await describe(sfn, executionArn);
  if (existing === null) {
    try {
      const response = await sfn.send(new StartExecutionCommand({ stateMachineArn, name: runId, input }));
      return { executionArn: response.executionArn ?? executionArn, alreadyStarted: false };
    } catch (err) {
      if ((err as { name?: string }).name !== 'ExecutionAlreadyExists') throw err;
    }
  }
  const current = existing ?? (await describe(sfn, executionArn));
  if (current !== null && current !== input) {
    throw new Error(
      `ExecutionAlreadyExists: run '${runId}' was already started with different input (${current}); give the spec a new run_id`,
    );
  }
  return { executionArn, alreadyStarted: true };
}

/** The execution's input, or null when there is no such execution. */
async function describe(sfn: SFNClient, executionArn: string): Promise<string | null> {
  try {
    return (await sfn.send(new DescribeExecutionCommand({ executionArn }))).input ?? '';
  } catch (err) {
    if ((err as { name?: string }).name === 'ExecutionDoesNotExist') return null;
    throw err;
  }
}

/** Progress of a run from S3: finished units (records present with the run's keys) out of expected. */
export interface Progress {
  readonly expected: number;
  readonly finished: number;
  readonly errored: number;
}

/** `[#########...........]  45.0%` */
export function progressBar(done: number, total: number, width = DEFAULT_BAR_WIDTH): string {
  const ratio = total > 0 ? Math.min(1, done / total) : 0;
  // cli-progress's own bar renderer (the live bars of its SingleBar use the same one).
  const bar = Format.BarFormat(ratio, {
    barsize: width,
    barCompleteString: '#'.repeat(width),
    barIncompleteString: '.'.repeat(width),
    barGlue: '',
  });
  return `[${bar}] ${(ratio * 100).toFixed(1).padStart(5)}%`;
}

/** Lists `results/items/` and counts how many of `keys` have a record. */
export async function countRecords(s3: S3Client, bucket: string, keys: readonly string[]): Promise<number> {
  const wanted = new Set(keys.map((k) => `${EVAL_PREFIXES.results}${k}.json`));
  let found = 0;
  let token: string | undefined;
  do {
    const page = await s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: EVAL_PREFIXES.results, ContinuationToken: token }),
    );
    for (const object of page.Contents ?? []) if (object.Key && wanted.has(object.Key)) found++;
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return found;
}

/** What the Plan step records of a run (`runs/<run_id>/run.json`): the units it expects. */
export interface RunRecord {
  readonly expected_units: number;
  readonly quarantined_rows: number;
  readonly cache_keys: string[];
}

/** The run's `run.json`, or undefined while the run is not planned yet. */
export async function readRunRecord(s3: S3Client, bucket: string, runId: string): Promise<RunRecord | undefined> {
  try {
    const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: `runs/${runId}/run.json` }));
    return JSON.parse((await response.Body?.transformToString()) ?? '{}') as RunRecord;
  } catch (err) {
    if ((err as { name?: string }).name === 'NoSuchKey') return undefined;
    throw err;
  }
}

const DEFAULT_BAR_WIDTH = 30;

/** Region when neither --region nor AWS_REGION / AWS_DEFAULT_REGION is set. */
const DEFAULT_REGION = 'us-east-1';
/** Prefix of the stacks and SSM parameters unless --prefix says otherwise (config `prefix`). */
const DEFAULT_PREFIX = 'dapt';
