/**
 * Adaptive concurrency in the worker engine: a provider that throttles above a limit the worker
 * is not told loses no unit and serves each unit once (in-memory store, no moto).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Manifest, Row } from '../../lambda/shared/benchmark';
import type { Decoding, ModelRef } from '../../lambda/shared/cache-key';
import { runShard } from '../../lambda/shared/engine';
import { AdaptiveLimiter } from '../../lambda/shared/limiter';
import { planRun } from '../../lambda/shared/plan';
import type { Generation, Oracle, Provider } from '../../lambda/shared/providers/types';
import { ThrottledError } from '../../lambda/shared/retry';
import { parseRunSpec } from '../../lambda/shared/spec';
import { MemoryResultStore } from '../../lambda/shared/store';

/** A server taking `capacity` calls at a time; the rest get HTTP 429 with Retry-After 0. */
class BusyProvider implements Provider {
  readonly identity: ModelRef = { provider: 'openai', model_id: 'busy', revision: 'r1' };
  inFlight = 0;
  served = 0;
  throttles = 0;
  constructor(private readonly capacity: number) {}

  async generate(_prompt: string, _decoding: Decoding, oracle?: Oracle): Promise<Generation> {
    if (this.inFlight >= this.capacity) {
      this.throttles++;
      throw new ThrottledError('openai: /v1/chat/completions returned HTTP 429', 0);
    }
    this.inFlight++;
    await new Promise((resolve) => setTimeout(resolve, 2));
    this.inFlight--;
    this.served++;
    return { text: oracle?.correct ?? 'x', usage: { input_tokens: 1, output_tokens: 1 }, latencyMs: 2 };
  }
}

const MANIFEST: Manifest = {
  name: 'busy-intents',
  version: '1',
  task: 'classification',
  labels: ['billing', 'refund'],
  prompt: { id: 'classify-basic', version: '1', template: 'Labels: {labels}\nText: {text}\nLabel:' },
  format_spread: [],
  items_file: 'items.jsonl',
  items_sha256: '',
  created_by: '',
  notes: '',
};

test('a provider busy above a limit the worker is not told loses no unit and serves each once', async () => {
  // Before: 8 lanes at a server taking 2 used up their 3 attempts on throttles (errored units).
  const rows: Row[] = Array.from({ length: 24 }, (_, i) => ({ id: `i${i}`, text: `t${i}`, label: 'billing' }));
  const spec = parseRunSpec(
    {
      benchmark: { name: MANIFEST.name, version: MANIFEST.version },
      models: [{ provider: 'openai', model_id: 'busy', revision: 'r1', base_url: 'http://busy.invalid' }],
      shard_size: 24,
      worker_concurrency: 8,
      retry: { max_attempts: 3, base_delay_ms: 0, max_delay_ms: 0 },
    },
    'test',
  );
  const shard = planRun('busy', spec, MANIFEST, rows).shards[0];
  assert.ok(shard);
  assert.deepEqual([shard.worker.provider_slots.openai, shard.worker.min_provider_slots], [8, 1]);
  const provider = new BusyProvider(2);
  const store = new MemoryResultStore();
  let limiter: AdaptiveLimiter | undefined;
  const counts = await runShard(shard.context, shard.units, {
    store,
    models: [provider],
    judge: null,
    retry: { maxAttempts: 3, baseDelayMs: 0, maxDelayMs: 0, sleep: () => Promise.resolve() },
    concurrency: shard.worker.concurrency,
    providerSlots: shard.worker.provider_slots,
    onLimiter: (_kind, made) => {
      limiter = made;
    },
  });
  assert.deepEqual([counts.ok, counts.errored], [24, 0]);
  assert.equal(provider.served, 24);
  assert.ok(provider.throttles > 0, 'the limit was found, not given');
  assert.ok(limiter && limiter.allowed < 8, `the limit came down from the ceiling: ${limiter?.allowed}`);
});

test('the limiter hands slots to waiters first come, first served, never above the limit', async () => {
  const limiter = new AdaptiveLimiter(2, 2);
  const order: number[] = [];
  let inFlight = 0;
  let peak = 0;
  await Promise.all(
    Array.from({ length: 6 }, (_, i) =>
      limiter.run(async () => {
        inFlight++;
        peak = Math.max(peak, inFlight);
        order.push(i);
        await new Promise((resolve) => setImmediate(resolve));
        inFlight--;
      }),
    ),
  );
  assert.deepEqual(order, [0, 1, 2, 3, 4, 5]);
  assert.equal(peak, 2);
  assert.equal(limiter.peakInFlight, 2);
});
