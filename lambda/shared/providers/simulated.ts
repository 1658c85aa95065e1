/**
 * A deterministic offline provider for tests, dry runs and the benchmark. Every decision is a
 * pure function of (decision, decoding seed, prompt), with the same hashing as Python's
 * `OfflineProvider`, so a run reproduces exactly; `latency_ms` makes it behave like a slow model.
 *
 * - error_rate: share of prompts that always fail with a server error (-> `errored`).
 * - throttle_rate: share of prompts throttled on their first call only (a retry succeeds).
 * - unparseable_rate: share of prompts answered with text no parser accepts.
 * - correct_rate: share of the rest answered with `oracle.correct`.
 */
import { sha256Hex } from '../canonical-json';
import type { Decoding, ModelRef } from '../cache-key';
import { pySplit } from '../pytext';
import { ThrottledError, TransientError } from '../retry';
import type { SimulatedBehaviour } from '../spec';
import type { Generation, Oracle, Provider } from './types';

export class SimulatedProvider implements Provider {
  readonly identity: ModelRef;
  /** Calls made so far, throttled and failed ones included (tests and the benchmark assert on it). */
  calls = 0;
  private readonly seen = new Map<string, number>();

  constructor(
    modelId: string,
    revision: string,
    private readonly behaviour: SimulatedBehaviour = DEFAULT_BEHAVIOUR,
  ) {
    this.identity = { provider: 'simulated', model_id: modelId, revision };
  }

  async generate(prompt: string, decoding: Decoding, oracle?: Oracle): Promise<Generation> {
    this.calls++;
    const previous = this.seen.get(prompt) ?? 0;
    this.seen.set(prompt, previous + 1);
    const started = performance.now();
    if (this.behaviour.latency_ms > 0) await new Promise((resolve) => setTimeout(resolve, this.behaviour.latency_ms));
    const seed = decoding.seed;
    if (unit('error', seed, prompt) < this.behaviour.error_rate)
      throw new TransientError('simulated: injected server error (HTTP 500)');
    if (previous === 0 && unit('throttle', seed, prompt) < this.behaviour.throttle_rate) {
      throw new ThrottledError('simulated: injected throttle (HTTP 429)', 0);
    }
    const text = answer(this.behaviour, prompt, seed, oracle);
    return {
      text,
      usage: { input_tokens: pySplit(prompt).length, output_tokens: pySplit(text).length },
      latencyMs: performance.now() - started,
    };
  }
}

function answer(behaviour: SimulatedBehaviour, prompt: string, seed: number, oracle: Oracle | undefined): string {
  if (unit('unparseable', seed, prompt) < behaviour.unparseable_rate)
    return `${UNPARSEABLE_PREFIX} ${digest('garbage', seed, prompt).slice(0, 8)}`;
  if (!oracle) return `offline answer ${digest('answer', seed, prompt).slice(0, 8)}`;
  if (unit('correct', seed, prompt) < behaviour.correct_rate || oracle.wrong.length === 0) return oracle.correct;
  const pick = Number(BigInt(`0x${digest('wrong', seed, prompt)}`) % BigInt(oracle.wrong.length));
  return oracle.wrong[pick] as string;
}

function digest(salt: string, seed: number, prompt: string): string {
  return sha256Hex(`${salt}\x00${seed}\x00${prompt}`);
}

/** Uniform in [0, 1) from the prompt: the provider's only randomness. */
function unit(salt: string, seed: number, prompt: string): number {
  return Number(BigInt(`0x${digest(salt, seed, prompt).slice(0, 16)}`)) / 16 ** 16;
}

export const UNPARSEABLE_PREFIX = '¯\\_(ツ)_/¯ I cannot decide';
const DEFAULT_BEHAVIOUR: SimulatedBehaviour = {
  correct_rate: 1,
  unparseable_rate: 0,
  error_rate: 0,
  throttle_rate: 0,
  latency_ms: 0,
};
