/**
 * Planning a run (pure): check the spec against the benchmark, expand units = items x models,
 * cut them into shards, and size the Distributed Map so provider limits hold run-wide.
 */
import type { Manifest, Row } from './benchmark';
import type { JudgeCalibration } from './calibration';
import { decodingDict, type ModelRef } from './cache-key';
import type { Unit } from './engine';
import { judgeRef, type RunContext, TASK_MODES, unitKey } from './evaluate';
import { judgeProvider, type ProviderKind, type ProviderSpec, providerLimit, type RunSpec } from './spec';
import { EVAL_PREFIXES } from './layout';

/** Worker settings carried by every shard. */
export interface WorkerSettings {
  readonly concurrency: number;
  /** Most in-flight calls per provider kind within one worker (the adaptive limit's ceiling). */
  readonly provider_slots: Readonly<Partial<Record<ProviderKind, number>>>;
  /** Fewest in-flight calls per provider kind a throttled worker keeps. Absent in older shards: 1. */
  readonly min_provider_slots?: number;
  readonly retry: {
    readonly max_attempts: number;
    readonly base_delay_ms: number;
    readonly max_delay_ms: number;
    /** Absent in older shards: `MAX_THROTTLED_ATTEMPTS`. */
    readonly max_throttled_attempts?: number;
  };
}

/** `runs/<run_id>/shards/<00000>.json`: self-contained, so a worker makes one read. */
export interface ShardFile {
  readonly schema_version: 1;
  readonly run_id: string;
  readonly shard_index: number;
  readonly context: RunContext;
  readonly models: readonly ProviderSpec[];
  readonly judge: ProviderSpec | null;
  readonly worker: WorkerSettings;
  readonly units: readonly Unit[];
}

/** One entry of the shard manifest (the Distributed Map's items). */
export interface ShardEntry {
  readonly run_id: string;
  readonly shard_key: string;
  readonly shard_index: number;
}

export interface Plan {
  readonly context: RunContext;
  readonly shards: ShardFile[];
  readonly entries: ShardEntry[];
  readonly maxConcurrency: number;
  readonly unitCount: number;
  /** Cache keys of every unit, per model (same order as `spec.models`). */
  readonly cacheKeys: string[][];
  /** The judge's calibration gate; null when the run uses no judge (every task but qa). */
  readonly judgeCalibration: JudgeCalibration | null;
}

/** The plan is impossible: mode or judge incompatible with the benchmark, or an uncalibrated judge. */
export class PlanError extends Error {
  override readonly name = 'PlanError';
}

/**
 * Builds the plan; throws PlanError listing every incompatibility. `calibration` is the judge's
 * calibration gate (`checkCalibration`); a qa run whose judge has none, or fails it, is refused
 * unless the spec sets `judge.allow_uncalibrated`.
 */
export function planRun(
  runId: string,
  spec: RunSpec,
  manifest: Manifest,
  rows: readonly Row[],
  calibration: JudgeCalibration | null = null,
): Plan {
  const problems: string[] = [];
  const allowed = TASK_MODES[manifest.task];
  const mode = spec.mode ?? (allowed[0] as string);
  if (!allowed.includes(mode))
    problems.push(`mode: '${mode}' is not valid for task '${manifest.task}'; use one of [${allowed.join(', ')}]`);
  if (manifest.task === 'qa' && !spec.judge)
    problems.push("judge: task 'qa' is scored by a judge: add a 'judge' provider");
  const judgeCalibration = manifest.task === 'qa' && spec.judge ? (calibration ?? NOT_CHECKED) : null;
  if (judgeCalibration && !judgeCalibration.calibrated && !spec.judge?.allow_uncalibrated) {
    problems.push(
      `judge: not calibrated: ${judgeCalibration.problems.join('; ')} (run \`dapt-eval calibrate-judge\` for this judge and set judge.calibration_report to the report's key, or set judge.allow_uncalibrated: true to run anyway; run.json then records judge_calibrated: false)`,
    );
  }
  if (problems.length > 0) throw new PlanError(`run ${runId} cannot be planned: ${problems.join('; ')}`);

  const context: RunContext = {
    run_id: runId,
    benchmark: manifest.name,
    benchmark_version: manifest.version,
    task: manifest.task,
    prompt: manifest.prompt,
    labels: manifest.labels ?? null,
    mode,
    decoding: decodingDict(spec.decoding),
  };
  const judge = manifest.task === 'qa' && spec.judge ? judgeProvider(spec.judge) : null;
  const worker = workerSettings(spec, judge);
  const units: Unit[] = spec.models.flatMap((_, model) => rows.map((item) => ({ model, item })));
  const shards: ShardFile[] = [];
  for (let start = 0, index = 0; start < units.length; start += spec.shard_size, index++) {
    shards.push({
      schema_version: 1,
      run_id: runId,
      shard_index: index,
      context,
      models: spec.models,
      judge,
      worker,
      units: units.slice(start, start + spec.shard_size),
    });
  }
  const judgeIdentity = judge ? identityOf(judge) : null;
  return {
    context,
    shards,
    entries: shards.map((s) => ({
      run_id: runId,
      shard_key: shardKey(runId, s.shard_index),
      shard_index: s.shard_index,
    })),
    maxConcurrency: maxConcurrency(spec, judge, shards.length),
    unitCount: units.length,
    cacheKeys: spec.models.map((m) => rows.map((row) => unitKey(context, row, identityOf(m), judgeIdentity))),
    judgeCalibration,
  };
}

/** The gate when the caller checked no report (`planRun` without `calibration`). */
const NOT_CHECKED: JudgeCalibration = {
  calibrated: false,
  report_key: null,
  cohen_kappa: null,
  kappa_threshold: null,
  injection_resistance: null,
  problems: ['no calibration report was checked'],
};

/**
 * Shards allowed in flight so that, for every provider kind p the run uses,
 * (shards in flight) x (slots per worker for p) <= limit(p), where slots(p) = min(worker_concurrency, limit(p)):
 *
 *   max_concurrency = max(1, min(shard_count, min_p floor(limit(p) / slots(p))))
 *
 * A worker's unit lanes call at most one provider at a time (the qa judge runs after the model),
 * so a worker never holds more than slots(p) calls to p.
 */
export function maxConcurrency(spec: RunSpec, judge: ProviderSpec | null, shardCount: number): number {
  const kinds = new Set<ProviderKind>([...spec.models.map((m) => m.provider), ...(judge ? [judge.provider] : [])]);
  let shards = shardCount;
  for (const kind of kinds) {
    const limit = providerLimit(spec, kind);
    shards = Math.min(shards, Math.floor(limit / Math.min(spec.worker_concurrency, limit)));
  }
  return Math.max(1, shards);
}

/** `runs/<run_id>/shards/<00000>.json`. */
export function shardKey(runId: string, index: number): string {
  return `${runPrefix(runId)}shards/${String(index).padStart(5, '0')}.json`;
}

export function runPrefix(runId: string): string {
  return `runs/${runId}/`;
}

/** `{provider, model_id, revision}` of a provider spec (what the cache key records). */
export function identityOf(spec: ProviderSpec): ModelRef {
  return { provider: spec.provider, model_id: spec.model_id, revision: spec.revision };
}

function workerSettings(spec: RunSpec, judge: ProviderSpec | null): WorkerSettings {
  const slots: Partial<Record<ProviderKind, number>> = {};
  for (const p of [...spec.models, ...(judge ? [judge] : [])])
    slots[p.provider] = Math.min(spec.worker_concurrency, providerLimit(spec, p.provider));
  return {
    concurrency: spec.worker_concurrency,
    provider_slots: slots,
    min_provider_slots: spec.min_provider_concurrency,
    retry: spec.retry,
  };
}

/**
 * `runs/<run_id>/run.json`: the Python `run.json` fields where they apply (`run_id`, `manifest`,
 * `model`, `decoding`, `mode`, `include_format_spread`, `judge`, `n_items`, `summary`), plus what
 * the Aggregate step reads (`benchmark`, `cache_keys` of every unit, `models` in spec order), the
 * judge's calibration (`judge_calibrated`, `judge_calibration`; null without a judge) and the sharding.
 */
export function runRecord(
  plan: Plan,
  spec: RunSpec,
  manifest: Manifest,
  specKey: string,
  quarantinedRows: number,
): Record<string, unknown> {
  const judge = plan.shards[0]?.judge ?? null;
  const models = spec.models.map(identityOf);
  return {
    run_id: plan.context.run_id,
    benchmark: {
      name: manifest.name,
      version: manifest.version,
      task: manifest.task,
      prompt: { id: manifest.prompt.id, version: manifest.prompt.version },
      labels: manifest.labels ?? null,
      n_items: plan.unitCount / spec.models.length,
    },
    cache_keys: plan.cacheKeys.flat(),
    models,
    manifest: { ...manifest, labels: manifest.labels ?? null },
    model: models.length === 1 ? models[0] : null,
    decoding: plan.context.decoding,
    mode: plan.context.mode,
    include_format_spread: false,
    judge: judge ? judgeRef(identityOf(judge)) : null,
    judge_calibrated: plan.judgeCalibration?.calibrated ?? null,
    judge_calibration: plan.judgeCalibration,
    n_items: plan.unitCount / spec.models.length,
    summary: null,
    spec_key: specKey,
    cache_keys_by_model: plan.cacheKeys,
    provider_concurrency: Object.fromEntries(
      models.map((m) => [m.provider, providerLimit(spec, m.provider as ProviderKind)]),
    ),
    expected_units: plan.unitCount,
    quarantined_rows: quarantinedRows,
    shard_size: spec.shard_size,
    shard_count: plan.shards.length,
    max_concurrency: plan.maxConcurrency,
    worker_concurrency: spec.worker_concurrency,
    min_provider_concurrency: spec.min_provider_concurrency,
    results_prefix: EVAL_PREFIXES.results,
  };
}
