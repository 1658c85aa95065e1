/**
 * The per-item result record (`dapt_eval.results.ItemResult`): same field names, same order,
 * one line of JSON per `results/items/<cache_key>.json`.
 */
import type { Decoding, JudgeRef, ModelRef } from './cache-key';
import type { VerdictLabel } from './scoring';

export type Status = 'ok' | 'errored' | 'unparseable';
/** Finished records are skipped by every rerun; `errored` ones are retried and overwritten. */
export const FINISHED_STATUSES: ReadonlySet<Status> = new Set(['ok', 'unparseable']);
export const RESULT_SCHEMA_VERSION = 1;

/** The judge's verdict on a qa answer (`verdict` null when its reply was unparseable). */
export interface JudgeRecord extends JudgeRef {
  readonly verdict: VerdictLabel | null;
  readonly reason: string | null;
  /** The judge's reply exactly as received (null when the call failed). */
  readonly raw_reply: string | null;
  /** Code points of the candidate answer before the judge prompt's cut. */
  readonly candidate_chars: number | null;
  /** The judge saw only the first `JUDGE_CANDIDATE_MAX_CHARS` code points. */
  readonly candidate_truncated: boolean;
}

export interface ItemResult {
  readonly schema_version: number;
  readonly run_id: string;
  readonly benchmark: string;
  readonly benchmark_version: string;
  readonly item_id: string;
  readonly task: string;
  readonly model: ModelRef;
  readonly decoding: Decoding;
  readonly prompt_id: string;
  readonly prompt_version: string;
  readonly mode: string;
  readonly status: Status;
  readonly prediction: string | null;
  readonly correct: boolean | null;
  readonly score: number | null;
  readonly judge: JudgeRecord | null;
  readonly error: string | null;
  readonly cache_key: string;
  readonly latency_ms: number | null;
  readonly usage: Readonly<Record<string, number>>;
  readonly details: Readonly<Record<string, unknown>>;
  readonly attempts: number;
}

/** The record as one line of JSON (with the trailing newline Python's `ResultStore.put` writes). */
export function recordLine(r: ItemResult): string {
  const ordered: ItemResult = {
    schema_version: r.schema_version,
    run_id: r.run_id,
    benchmark: r.benchmark,
    benchmark_version: r.benchmark_version,
    item_id: r.item_id,
    task: r.task,
    model: { provider: r.model.provider, model_id: r.model.model_id, revision: r.model.revision },
    decoding: r.decoding,
    prompt_id: r.prompt_id,
    prompt_version: r.prompt_version,
    mode: r.mode,
    status: r.status,
    prediction: r.prediction,
    correct: r.correct,
    score: r.score,
    judge: r.judge && {
      model: r.judge.model,
      prompt_version: r.judge.prompt_version,
      verdict: r.judge.verdict,
      reason: r.judge.reason,
      raw_reply: r.judge.raw_reply,
      candidate_chars: r.judge.candidate_chars,
      candidate_truncated: r.judge.candidate_truncated,
    },
    error: r.error,
    cache_key: r.cache_key,
    latency_ms: r.latency_ms,
    usage: r.usage,
    details: r.details,
    attempts: r.attempts,
  };
  return `${JSON.stringify(ordered)}\n`;
}

/** Parses a stored record; throws naming the key when it is not a record. */
export function parseRecord(text: string, key: string): ItemResult {
  const value = JSON.parse(text) as Partial<ItemResult>;
  if (typeof value !== 'object' || value === null || typeof value.status !== 'string' || value.cache_key !== key) {
    throw new Error(`results/items/${key}.json is not a result record for key ${key}`);
  }
  return value as ItemResult;
}
