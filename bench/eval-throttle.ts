/**
 * Benchmark (not a test): the worker engine's adaptive concurrency against a provider that
 * throttles above a limit the engine is not told.
 *
 *   npx tsx bench/eval-throttle.ts [--n 1200] [--limit 8] [--latency-ms 100] [--retry-after-s 1] [--fixed 4,8,32] [--ceiling 32]
 *
 * A simulated OpenAI-compatible server runs in this process (node:http): at most `--limit`
 * requests at a time, each taking `--latency-ms`; any request beyond that gets HTTP 429 with
 * `Retry-After: --retry-after-s`. One worker (`runShard`, in-memory result store) evaluates N
 * classification units through the real `OpenAICompatibleProvider` (fetch) with the default retry
 * policy: first at the fixed concurrencies a user would otherwise pick (floor = ceiling), then
 * adaptive (floor 1, ceiling `--ceiling`). The ideal is limit / latency requests per second.
 * Printed per run: wall time, served requests per second and as a share of the ideal, 429
 * answers, units lost (no finished record), units served more than once, errored records.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import { parseArgs } from 'node:util';
import type { Manifest, Row } from '../lambda/shared/benchmark';
import { runShard } from '../lambda/shared/engine';
import { planRun } from '../lambda/shared/plan';
import { OpenAICompatibleProvider } from '../lambda/shared/providers/openai';
import { FINISHED_STATUSES } from '../lambda/shared/records';
import { DEFAULT_RETRY_POLICY } from '../lambda/shared/retry';
import { parseRunSpec } from '../lambda/shared/spec';
import { MemoryResultStore } from '../lambda/shared/store';

const { values } = parseArgs({
  options: {
    n: { type: 'string', default: '1200' },
    limit: { type: 'string', default: '8' },
    'latency-ms': { type: 'string', default: '100' },
    'retry-after-s': { type: 'string', default: '1' },
    fixed: { type: 'string', default: '4,8,32' },
    ceiling: { type: 'string', default: '32' },
  },
});
const n = Number(values.n);
const limit = Number(values.limit);
const latencyMs = Number(values['latency-ms']);
const retryAfterS = Number(values['retry-after-s']);
const ceiling = Number(values.ceiling);
const idealPerS = limit / (latencyMs / 1000);
const LABELS = ['billing', 'refund', 'login', 'other'];

interface ServerStats {
  inFlight: number;
  peak: number;
  throttled: number;
  readonly served: Map<string, number>;
}

/** The simulated provider: `limit` in flight, 429 + Retry-After above it. */
async function startServer(stats: ServerStats): Promise<{ url: string; close: () => Promise<void> }> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { messages: Array<{ content: string }> };
      if (stats.inFlight >= limit) {
        stats.throttled++;
        res.writeHead(429, { 'content-type': 'application/json', 'retry-after': String(retryAfterS) });
        res.end(JSON.stringify({ error: { message: 'Rate limit reached', type: 'rate_limit_exceeded' } }));
        return;
      }
      stats.inFlight++;
      stats.peak = Math.max(stats.peak, stats.inFlight);
      setTimeout(() => {
        stats.inFlight--;
        const prompt = body.messages[0]?.content ?? '';
        stats.served.set(prompt, (stats.served.get(prompt) ?? 0) + 1);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            choices: [{ message: { role: 'assistant', content: 'billing' } }],
            usage: { prompt_tokens: prompt.split(/\s+/).length, completion_tokens: 1 },
          }),
        );
      }, latencyMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function runOnce(label: string, floor: number, top: number): Promise<void> {
  const manifest: Manifest = {
    name: 'bench-intents',
    version: '1',
    task: 'classification',
    labels: LABELS,
    prompt: { id: 'classify-basic', version: '1', template: 'Labels: {labels}\nText: {text}\nLabel:' },
    format_spread: [],
    items_file: 'items.jsonl',
    items_sha256: '',
    created_by: '',
    notes: '',
  };
  const rows: Row[] = Array.from({ length: n }, (_, i) => ({
    id: `i${i}`,
    text: `ticket number ${i}`,
    label: LABELS[i % 4] ?? 'other',
  }));
  const stats: ServerStats = { inFlight: 0, peak: 0, throttled: 0, served: new Map() };
  const server = await startServer(stats);
  try {
    const spec = parseRunSpec(
      {
        benchmark: { name: manifest.name, version: manifest.version },
        models: [{ provider: 'openai', model_id: 'sim', revision: '1', base_url: server.url }],
        shard_size: n,
        worker_concurrency: top,
        provider_concurrency: { openai: top },
        min_provider_concurrency: floor,
      },
      'bench',
    );
    const plan = planRun(`bench-${label}`, spec, manifest, rows);
    const shard = plan.shards[0];
    if (!shard) throw new Error('plan produced no shard');
    const store = new MemoryResultStore();
    const started = performance.now();
    const counts = await runShard(shard.context, shard.units, {
      store,
      models: [new OpenAICompatibleProvider(server.url, 'sim', '1')],
      judge: null,
      retry: DEFAULT_RETRY_POLICY,
      concurrency: shard.worker.concurrency,
      providerSlots: shard.worker.provider_slots,
      minProviderSlots: floor,
    });
    const wallS = (performance.now() - started) / 1000;
    let finished = 0;
    for (const key of plan.cacheKeys.flat()) {
      const got = await store.get(key);
      if (got && FINISHED_STATUSES.has(got.record.status)) finished++;
    }
    const served = [...stats.served.values()].reduce((a, b) => a + b, 0);
    const twice = [...stats.served.values()].filter((c) => c > 1).length;
    const rate = served / wallS;
    console.log(
      `| ${label} | ${wallS.toFixed(2)} | ${rate.toFixed(1)} | ${((rate / idealPerS) * 100).toFixed(1)}% | ${stats.throttled} | ${stats.peak} | ${n - finished} | ${twice} | ${counts.errored} |`,
    );
  } finally {
    await server.close();
  }
}

async function main(): Promise<void> {
  console.log(
    `adaptive concurrency benchmark (TypeScript worker engine): N=${n} units, server limit ${limit} in flight (not told), latency ${latencyMs} ms, 429 with Retry-After ${retryAfterS} s above it; ideal ${idealPerS.toFixed(1)} requests/s; node ${process.version}, ${os.cpus().length} CPU(s), load ${os.loadavg()[0]?.toFixed(1)}`,
  );
  console.log(
    '| concurrency | wall (s) | served/s | of ideal | 429s | peak in flight | lost | served twice | errored |',
  );
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const c of (values.fixed ?? '').split(',').filter(Boolean).map(Number)) await runOnce(`fixed ${c}`, c, c);
  await runOnce(`adaptive 1..${ceiling}`, 1, ceiling);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
