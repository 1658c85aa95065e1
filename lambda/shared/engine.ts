/**
 * The worker engine: evaluate a shard's units with bounded concurrency, skipping units whose
 * record is already finished, and write each record with a conditional put. Store and
 * providers are injected, so the Lambda, the tests and the benchmark run the same code.
 */
import type { Row } from './benchmark';
import type { ModelRef } from './cache-key';
import { evaluateUnit, type RunContext, unitKey } from './evaluate';
import { AdaptiveLimiter, DEFAULT_FLOOR } from './limiter';
import { mapPool } from './pool';
import type { Provider } from './providers/types';
import { FINISHED_STATUSES, type Status } from './records';
import type { RetryPolicy } from './retry';
import type { ResultStore } from './store';

/** One unit of work: an item evaluated by the model at `model` (index into the run's models). */
export interface Unit {
  readonly model: number;
  readonly item: Row;
}

/** Counts a shard reports: records written now by status, and units skipped as already finished. */
export interface ShardCounts {
  ok: number;
  errored: number;
  unparseable: number;
  skipped: number;
}

export interface EngineOptions {
  readonly store: ResultStore;
  /** Providers by model index, as in the run's `models`. */
  readonly models: readonly Provider[];
  readonly judge: Provider | null;
  readonly retry: RetryPolicy;
  /** Units evaluated at once by this worker. */
  readonly concurrency: number;
  /**
   * Most in-flight calls per provider kind *in this worker* (`min(concurrency, run limit / shards in flight)`):
   * the adaptive limit's ceiling, where it starts; throttling lowers it (AIMD, `limiter.ts`).
   */
  readonly providerSlots: Readonly<Record<string, number>>;
  /** Fewest in-flight calls per provider kind the adaptive limit keeps when throttled (at most the ceiling). @default 1 */
  readonly minProviderSlots?: number;
  /** Called with each provider kind's limiter when it is made (benchmarks read its `peakInFlight`). */
  readonly onLimiter?: (kind: string, limiter: AdaptiveLimiter) => void;
  /** Milliseconds left before the worker must stop starting units. @default - no deadline */
  readonly remainingMs?: () => number;
  /** Called after every successful provider call. */
  readonly onCall?: (provider: ModelRef, latencyMs: number) => void;
}

/** Some units were not started before the deadline; the Map state retries the shard (finished units are skipped). */
export class ShardIncompleteError extends Error {
  override readonly name = 'ShardIncompleteError';
}

/** Evaluates every unit not yet finished in the store. */
export async function runShard(ctx: RunContext, units: readonly Unit[], options: EngineOptions): Promise<ShardCounts> {
  const counts: ShardCounts = { ok: 0, errored: 0, unparseable: 0, skipped: 0 };
  const limiters = new Map<string, AdaptiveLimiter>();
  const slotsFor = (kind: string): AdaptiveLimiter => {
    let limiter = limiters.get(kind);
    if (!limiter) {
      const ceiling = Math.max(1, Math.min(options.concurrency, options.providerSlots[kind] ?? options.concurrency));
      limiter = new AdaptiveLimiter(Math.min(ceiling, options.minProviderSlots ?? DEFAULT_FLOOR), ceiling);
      limiters.set(kind, limiter);
      options.onLimiter?.(kind, limiter);
    }
    return limiter;
  };
  let notStarted = 0;
  await mapPool(units, options.concurrency, async (unit) => {
    if (options.remainingMs && options.remainingMs() < DEADLINE_MARGIN_MS) {
      notStarted++;
      return;
    }
    const model = options.models[unit.model];
    if (!model)
      throw new Error(
        `unit of item '${unit.item.id}' names model index ${unit.model}, but the run has ${options.models.length} model(s)`,
      );
    const key = unitKey(ctx, unit.item, model.identity, options.judge?.identity ?? null);
    const existing = await options.store.get(key);
    if (existing && FINISHED_STATUSES.has(existing.record.status)) {
      counts.skipped++;
      return;
    }
    const record = await evaluateUnit(
      {
        ctx,
        model,
        judge: options.judge,
        retry: options.retry,
        call: (provider, prompt, decoding, oracle) =>
          slotsFor(provider.identity.provider).run(async () => {
            const generation = await provider.generate(prompt, decoding, oracle);
            options.onCall?.(provider.identity, generation.latencyMs);
            return generation;
          }),
      },
      unit.item,
      key,
    );
    if (await options.store.putIfUnchanged(record, existing?.version ?? null)) {
      count(counts, record.status);
    } else {
      // Another delivery of this shard wrote the key first; its record stands and ours is dropped.
      counts.skipped++;
    }
  });
  if (notStarted > 0) {
    throw new ShardIncompleteError(
      `${notStarted} of ${units.length} unit(s) not started: less than ${DEADLINE_MARGIN_MS} ms of Lambda time left; retry the shard (finished units are skipped)`,
    );
  }
  return counts;
}

function count(counts: ShardCounts, status: Status): void {
  counts[status]++;
}

/** Time kept in reserve to finish in-flight units and return before the Lambda timeout. */
export const DEADLINE_MARGIN_MS = 60_000;
