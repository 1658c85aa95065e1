/**
 * The provider error taxonomy and the single retry layer (`dapt_eval.providers.base/retry`):
 * exponential backoff with full jitter, or the server's Retry-After when a throttle has one; SDK retries
 * are off so throttles are counted the same way for every provider.
 */
import rules from '../../containers/eval/src/dapt_eval/adaptive_concurrency.json';

/** Base of provider failures; the message is what lands in the record's `error`. */
export class ProviderError extends Error {
  override readonly name: string = 'ProviderError';
}

/** The provider asked us to slow down (HTTP 429, ThrottlingException). */
export class ThrottledError extends ProviderError {
  override readonly name = 'ThrottledError';
  constructor(
    message: string,
    readonly retryAfterMs: number | null = null,
  ) {
    super(message);
  }
}

/** Worth retrying: 5xx, timeouts, connection resets, model not ready. */
export class TransientError extends ProviderError {
  override readonly name = 'TransientError';
}

/** Retrying cannot fix it: bad request, access denied, malformed response. */
export class PermanentError extends ProviderError {
  override readonly name = 'PermanentError';
}

/** The last error after all attempts: `"<ErrorType> after N attempt(s): <message>"`. */
export class RetriesExhaustedError extends ProviderError {
  override readonly name = 'RetriesExhaustedError';
  constructor(
    readonly last: ProviderError,
    readonly attempts: number,
  ) {
    super(`${last.name} after ${attempts} attempt(s): ${last.message}`);
  }
}

/** How often and how long to retry; `sleep` and `random` are injectable for fast tests. */
export interface RetryPolicy {
  /** Failed attempts including the first; throttled attempts are counted apart. @default 5 */
  readonly maxAttempts: number;
  /**
   * Throttled attempts before the call is given up: a throttle says "later", not "failed", so it
   * does not use `maxAttempts`. @default - `max_throttled_attempts` of adaptive_concurrency.json (20)
   */
  readonly maxThrottledAttempts?: number;
  /** Ceiling of the first backoff. @default 500 */
  readonly baseDelayMs: number;
  /** Largest backoff ceiling. @default 30000 */
  readonly maxDelayMs: number;
  readonly sleep?: (ms: number) => Promise<void>;
  readonly random?: () => number;
}

/** A call's value and how many attempts it took. */
export interface Attempted<T> {
  readonly value: T;
  readonly attempts: number;
}

/**
 * Full-jitter delay for the `attempt`-th failure of its kind (1-based: throttles and other
 * failures are numbered apart); a throttle with Retry-After waits exactly that (the server said
 * when, and the adaptive limit already slows the run: a growing backoff on top would only keep the
 * call out of slots it could use), as in Python.
 */
export function retryDelayMs(policy: RetryPolicy, attempt: number, error: ProviderError): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  const jittered = (policy.random ?? Math.random)() * ceiling;
  if (error instanceof ThrottledError && error.retryAfterMs !== null) return error.retryAfterMs;
  return jittered;
}

/**
 * A non-provider exception from a provider call, as the retry layer sees it
 * (`dapt_eval.providers.retry.unexpected_error`): transient, retried, then an errored item.
 */
export function unexpectedError(err: unknown): TransientError {
  const name = err instanceof Error ? err.name : typeof err;
  const message = err instanceof Error ? err.message : String(err);
  return new TransientError(`unexpected ${name}: ${message}`);
}

/**
 * Runs `call`, retrying throttles and transient errors; permanent errors fail at once. Throttles
 * are counted apart (`maxThrottledAttempts`), so a provider that is only busy does not turn items
 * into errors. Any other exception is `unexpectedError` (retried, then recorded as an errored
 * item), as in Python. Vectors: `containers/eval/conformance/concurrency.json` ("retries").
 */
export async function callWithRetry<T>(call: () => Promise<T>, policy: RetryPolicy): Promise<Attempted<T>> {
  const sleep = policy.sleep ?? defaultSleep;
  const maxThrottled = policy.maxThrottledAttempts ?? MAX_THROTTLED_ATTEMPTS;
  let failures = 0;
  let throttles = 0;
  for (let attempt = 1; ; attempt++) {
    try {
      return { value: await call(), attempts: attempt };
    } catch (err) {
      const error = err instanceof ProviderError ? err : unexpectedError(err);
      if (error instanceof PermanentError) throw new RetriesExhaustedError(error, attempt);
      const throttled = error instanceof ThrottledError;
      const count = throttled ? ++throttles : ++failures;
      if (count >= (throttled ? maxThrottled : policy.maxAttempts)) throw new RetriesExhaustedError(error, attempt);
      await sleep(retryDelayMs(policy, count, error));
    }
  }
}

/** Retry-After seconds as milliseconds; HTTP-date forms are ignored (backoff applies instead). */
export function parseRetryAfter(value: string | null | undefined): number | null {
  if (value === null || value === undefined || value.trim() === '') return null;
  const seconds = Number(value);
  return Number.isFinite(seconds) ? Math.max(0, seconds * 1000) : null;
}

function defaultSleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Throttled attempts of one call before it is recorded as errored (`adaptive_concurrency.json`). */
export const MAX_THROTTLED_ATTEMPTS: number = rules.max_throttled_attempts;
export const DEFAULT_RETRY_POLICY: RetryPolicy = { maxAttempts: 5, baseDelayMs: 500, maxDelayMs: 30_000 };
