/** The one interface every provider implements (mirrors `dapt_eval.providers.base.Provider`). */
import type { Decoding, ModelRef } from '../cache-key';

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
