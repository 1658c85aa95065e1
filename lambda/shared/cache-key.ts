/**
 * The content-addressed key of one evaluation unit, identical to `dapt_eval.results.cache_key`.
 * Every runner (Python local, this fan-out) writes a unit's record under this key, so a rerun
 * anywhere skips finished units.
 */
import { canonicalJson, sha256Hex } from './canonical-json';

/** `{provider, model_id, revision}` of the model that answers. */
export interface ModelRef {
  readonly provider: string;
  readonly model_id: string;
  readonly revision: string;
}

/** Decoding settings exactly as they enter the key and the record (`DecodingParams.cache_dict`). */
export interface Decoding {
  readonly temperature: number;
  readonly max_tokens: number;
  readonly top_p: number;
  readonly seed: number;
  readonly stop: readonly string[];
}

/** `{model, prompt_version}` of the judge (qa only). */
export interface JudgeRef {
  readonly model: string;
  readonly prompt_version: string;
}

/** Inputs of the key; field names follow the Python keyword arguments. */
export interface CacheKeyInput {
  readonly benchmark: string;
  readonly benchmark_version: string;
  readonly item_id: string;
  /** `itemSha256(row)`: the row's content, so an edited item never reuses a stale record. */
  readonly item_sha256: string;
  readonly prompt_id: string;
  readonly prompt_version: string;
  readonly model: ModelRef;
  readonly decoding: Decoding;
  readonly mode: string;
  readonly judge: JudgeRef | null;
}

/** The object whose canonical JSON is hashed (containers/eval/README.md, "cache_key"). */
export function cacheKeyPayload(input: CacheKeyInput): Record<string, unknown> {
  return {
    benchmark: { name: input.benchmark, version: input.benchmark_version },
    item_id: input.item_id,
    item_sha256: input.item_sha256,
    prompt: { id: input.prompt_id, version: input.prompt_version },
    model: { provider: input.model.provider, model_id: input.model.model_id, revision: input.model.revision },
    decoding: decodingDict(input.decoding),
    mode: input.mode,
    judge: input.judge ? { model: input.judge.model, prompt_version: input.judge.prompt_version } : null,
  };
}

/** sha256 hex of the canonical JSON of `cacheKeyPayload(input)`. */
export function cacheKey(input: CacheKeyInput): string {
  return sha256Hex(canonicalJson(cacheKeyPayload(input)));
}

/**
 * sha256 hex of a benchmark row's canonical JSON (`dapt_eval.hashing.item_sha256`): the row as
 * parsed from `items.jsonl`, the fields it sets and nothing added.
 */
export function itemSha256(row: Readonly<Record<string, unknown>>): string {
  return sha256Hex(canonicalJson(row));
}

/** The decoding object with exactly the Python keys, in the Python order. */
export function decodingDict(d: Decoding): Decoding {
  return { temperature: d.temperature, max_tokens: d.max_tokens, top_p: d.top_p, seed: d.seed, stop: [...d.stop] };
}

/** `"<provider>:<model_id>@<revision>"`, the judge's model string. */
export function describeModel(model: ModelRef): string {
  return `${model.provider}:${model.model_id}@${model.revision}`;
}
