/**
 * The Plan step: validate the run spec, load and verify the benchmark, quarantine bad rows,
 * and write the shards, the shard manifest (the Distributed Map's ItemReader input) and run.json.
 */
import type { S3Client } from '@aws-sdk/client-s3';
import type { Logger } from '@aws-lambda-powertools/logger';
import { z } from 'zod';
import { BenchmarkError, loadRows, parseManifest, quarantineJsonl, verifyItemsHash } from '../shared/benchmark';
import { checkCalibration, type JudgeCalibration } from '../shared/calibration';
import { planRun, runPrefix, runRecord } from '../shared/plan';
import { mapPool } from '../shared/pool';
import { getBytes, getText, MissingObjectError, putText } from '../shared/s3io';
import { type JudgeSpec, parseRunSpec } from '../shared/spec';

export const planEventSchema = z.strictObject({
  run_id: z.string().regex(/^[A-Za-z0-9_-]{1,80}$/, 'must be 1-80 characters of A-Z a-z 0-9 _ -'),
  spec_key: z.string().min(1),
});

/** What the state machine reads: `manifest_key` feeds the ItemReader, `max_concurrency` the MaxConcurrencyPath. */
export interface PlanResult {
  readonly run_id: string;
  readonly manifest_key: string;
  readonly shard_count: number;
  readonly unit_count: number;
  readonly quarantined: number;
  readonly max_concurrency: number;
}

export interface PlanDeps {
  readonly s3: S3Client;
  readonly bucket: string;
  readonly logger: Logger;
}

/** The Lambda handler (re-running it for the same run rewrites the same objects). */
export function createPlanHandler(deps: PlanDeps): (event: unknown) => Promise<PlanResult> {
  return async (event) => {
    const parsed = planEventSchema.safeParse(event);
    if (!parsed.success) {
      throw new Error(
        `plan event is invalid: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'event'}: ${i.message}`).join('; ')}`,
      );
    }
    return planShards(deps, parsed.data.run_id, parsed.data.spec_key);
  };
}

export async function planShards(deps: PlanDeps, runId: string, specKey: string): Promise<PlanResult> {
  const { s3, bucket } = deps;
  const specText = await getText(s3, bucket, specKey);
  let specData: unknown;
  try {
    specData = JSON.parse(specText);
  } catch (err) {
    throw new Error(`run spec s3://${bucket}/${specKey} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  const spec = parseRunSpec(specData, `s3://${bucket}/${specKey}`);
  if (spec.run_id !== undefined && spec.run_id !== runId) {
    throw new Error(
      `run spec s3://${bucket}/${specKey} has run_id '${spec.run_id}' but the execution's run_id is '${runId}'`,
    );
  }
  const prefix = `benchmarks/${spec.benchmark.name}/${spec.benchmark.version}/`;
  const manifestWhere = `s3://${bucket}/${prefix}benchmark.json`;
  const manifest = parseManifest(await getText(s3, bucket, `${prefix}benchmark.json`), manifestWhere);
  if (manifest.name !== spec.benchmark.name || manifest.version !== spec.benchmark.version) {
    throw new BenchmarkError(
      `${manifestWhere}: manifest names '${manifest.name}'@'${manifest.version}' but the spec asks for '${spec.benchmark.name}'@'${spec.benchmark.version}'`,
    );
  }
  const itemsWhere = `s3://${bucket}/${prefix}${manifest.items_file}`;
  const items = await getBytes(s3, bucket, `${prefix}${manifest.items_file}`);
  verifyItemsHash(items, manifest.items_sha256, itemsWhere);
  const load = loadRows(
    new TextDecoder('utf-8', { fatal: true }).decode(items),
    manifest.task,
    manifest.labels ?? null,
    itemsWhere,
  );

  const calibration = manifest.task === 'qa' && spec.judge ? await judgeCalibration(deps, spec.judge) : null;
  const plan = planRun(runId, spec, manifest, load.rows, calibration);
  const run = runPrefix(runId);
  await putText(s3, bucket, `${run}quarantine.jsonl`, quarantineJsonl(load.quarantined), 'application/x-ndjson');
  await mapPool(plan.shards, SHARD_WRITE_CONCURRENCY, (shard, i) =>
    putText(s3, bucket, plan.entries[i]?.shard_key ?? '', JSON.stringify(shard)),
  );
  const manifestKey = `${run}shards/manifest.json`;
  await putText(s3, bucket, manifestKey, JSON.stringify(plan.entries));
  await putText(
    s3,
    bucket,
    `${run}run.json`,
    `${JSON.stringify(runRecord(plan, spec, manifest, specKey, load.quarantined.length), null, 2)}\n`,
  );
  const result: PlanResult = {
    run_id: runId,
    manifest_key: manifestKey,
    shard_count: plan.shards.length,
    unit_count: plan.unitCount,
    quarantined: load.quarantined.length,
    max_concurrency: plan.maxConcurrency,
  };
  deps.logger.info('run planned', { ...result, judge_calibrated: plan.judgeCalibration?.calibrated ?? null });
  if (plan.judgeCalibration && !plan.judgeCalibration.calibrated) {
    deps.logger.warn('judge is not calibrated; running because judge.allow_uncalibrated is true', {
      problems: plan.judgeCalibration.problems,
    });
  }
  return result;
}

/** Loads the judge's calibration report (a missing object is a gate problem, not a crash) and checks it. */
async function judgeCalibration(deps: PlanDeps, judge: JudgeSpec): Promise<JudgeCalibration> {
  const key = judge.calibration_report;
  if (key === undefined) return checkCalibration(judge, null, '');
  const where = `s3://${deps.bucket}/${key}`;
  let text: string | null;
  try {
    text = await getText(deps.s3, deps.bucket, key);
  } catch (err) {
    if (!(err instanceof MissingObjectError)) throw err;
    text = null;
  }
  return checkCalibration(judge, text, where);
}

const SHARD_WRITE_CONCURRENCY = 16;
