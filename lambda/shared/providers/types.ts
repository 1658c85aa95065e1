/** The one interface every provider implements (mirrors `dapt_eval.providers.base.Provider`). */
import type { Decoding, ModelRef } from '../cache-key';
import { PermanentError } from '../retry';

/** Token counts as reported by the provider (0 where it reports none). */
export interface Usage {
  readonly input_tokens: number;
  readonly output_tokens: number;
}

/** One completion. */
export interface Generation {
  readonly text: string;
  readonly usage: Usage;
  readonly latencyMs: number;
}

/** The expected output, given only to the simulated provider to drive a model of known accuracy. */
export interface Oracle {
  readonly correct: string;
  readonly wrong: readonly string[];
}

/** A model endpoint; implementations are safe to call concurrently. */
export interface Provider {
  readonly identity: ModelRef;
  /** One completion for `prompt`; rejects with a ProviderError subclass on failure. */
  generate(prompt: string, decoding: Decoding, oracle?: Oracle): Promise<Generation>;
}

/**
 * A usage count from a provider's reply (`dapt_eval.providers.base.token_count`): absent or null
 * is 0 (the server reports none); anything but a non-negative integer is a malformed reply,
 * a `PermanentError` naming `where` (vectors: `containers/eval/conformance/providers.json`).
 */
export function tokenCount(value: unknown, where: string): number {
  if (value === null || value === undefined) return 0;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0)
    throw new PermanentError(`${where} is not a token count: ${JSON.stringify(value)}`);
  return value;
}

/**
 * What kind of failure to get an answer `err` is, from the Node error code it (or a cause of it)
 * carries: "connection refused", "connection reset", "name not resolved", else null. Error strings
 * name the kind only, never the client's text (fetch, the AWS SDK, httpx and botocore word the
 * same failure differently; `dapt_eval.providers.base.transport_kind` follows the same vectors).
 */
export function transportKind(err: unknown): string | null {
  for (let e: unknown = err; e !== null && typeof e === 'object'; e = (e as { cause?: unknown }).cause) {
    const code = (e as { code?: unknown }).code;
    if (code === 'ECONNREFUSED') return 'connection refused';
    if (code === 'ECONNRESET' || code === 'EPIPE') return 'connection reset';
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'name not resolved';
  }
  return null;
}
