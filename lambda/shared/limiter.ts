/**
 * Adaptive concurrency (`dapt_eval.providers.limiter`): how many provider calls are in flight,
 * found from the provider's throttling (AIMD: additive increase, multiplicative decrease) within
 * a floor and a ceiling. `AimdLimit` is the rule set, written once for both runtimes: its
 * constants are `containers/eval/src/dapt_eval/adaptive_concurrency.json` and its decisions are
 * pinned by `containers/eval/conformance/concurrency.json`, which both test suites run.
 * `AdaptiveLimiter` is the gate the engine calls through. Waiting before a throttled call's retry
 * (at least Retry-After) stays in `callWithRetry`; a call waiting there holds no slot.
 */
import rules from '../../containers/eval/src/dapt_eval/adaptive_concurrency.json';
import { ThrottledError } from './retry';

/** Slots added per window of `limit` successful calls. */
export const INCREASE_PER_WINDOW: number = rules.increase_per_window;
/** The limit is multiplied by this on a throttle (once per overload, see `AimdLimit`). */
export const DECREASE_FACTOR: number = rules.decrease_factor;
/** The fewest calls kept in flight, however often the provider throttles. */
export const DEFAULT_FLOOR: number = rules.default_floor;

/**
 * The controller's state and rules (`adaptive_concurrency.json`'s "rules"): the limit starts at
 * the ceiling; a success adds `INCREASE_PER_WINDOW / limit`; a throttle multiplies it by
 * `DECREASE_FACTOR` unless the call started before the previous decrease took effect.
 * `floor === ceiling` is a fixed concurrency.
 */
export class AimdLimit {
  limit: number;
  inFlight = 0;
  private nextTicket = 0;
  private decreasedBefore = 0;

  constructor(
    readonly floor: number,
    readonly ceiling: number,
  ) {
    if (!Number.isInteger(floor) || !Number.isInteger(ceiling) || floor < 1 || floor > ceiling)
      throw new Error(`AimdLimit 'floor' = ${floor}, 'ceiling' = ${ceiling}: need integers 1 <= floor <= ceiling`);
    this.limit = ceiling;
  }

  /** Calls that may be in flight now. */
  get allowed(): number {
    return Math.max(this.floor, Math.min(this.ceiling, Math.trunc(this.limit)));
  }

  canStart(): boolean {
    return this.inFlight < this.allowed;
  }

  /** Counts a call in flight and returns its ticket (the caller checked `canStart`). */
  start(): number {
    this.inFlight++;
    return this.nextTicket++;
  }

  /** A call returned: one more slot per window of successes. */
  succeeded(_ticket: number): void {
    this.inFlight--;
    this.limit = Math.min(this.ceiling, this.limit + INCREASE_PER_WINDOW / this.limit);
  }

  /** The provider throttled a call: decrease, once for the calls already in flight. */
  throttled(ticket: number): void {
    this.inFlight--;
    if (ticket >= this.decreasedBefore) {
      this.limit = Math.max(this.floor, this.limit * DECREASE_FACTOR);
      this.decreasedBefore = this.nextTicket;
    }
  }

  /** Any other failure says nothing about the provider's capacity. */
  failed(_ticket: number): void {
    this.inFlight--;
  }
}

/** Runs calls through an `AimdLimit`; callers beyond the limit wait, served first come, first served. */
export class AdaptiveLimiter {
  private readonly state: AimdLimit;
  private readonly waiters: Array<(ticket: number) => void> = [];
  /** Most calls seen in flight at once (benchmarks and tests read it). */
  peakInFlight = 0;

  constructor(floor: number, ceiling: number) {
    this.state = new AimdLimit(floor, ceiling);
  }

  /** Calls that may be in flight now. */
  get allowed(): number {
    return this.state.allowed;
  }

  /** Waits for a slot, runs `task`, and feeds its outcome to the controller. */
  async run<T>(task: () => Promise<T>): Promise<T> {
    const ticket =
      this.waiters.length === 0 && this.state.canStart()
        ? this.state.start()
        : await new Promise<number>((resolve) => this.waiters.push(resolve));
    this.peakInFlight = Math.max(this.peakInFlight, this.state.inFlight);
    let value: T;
    try {
      value = await task();
    } catch (err) {
      if (err instanceof ThrottledError) this.state.throttled(ticket);
      else this.state.failed(ticket);
      this.wake();
      throw err;
    }
    this.state.succeeded(ticket);
    this.wake();
    return value;
  }

  /** Hands the free slots to the waiters in order (each gets its ticket already counted). */
  private wake(): void {
    while (this.waiters.length > 0 && this.state.canStart()) this.waiters.shift()?.(this.state.start());
  }
}
