/**
 * Benchmark (not a test) of the evaluation worker engine with the simulated provider.
 *
 *   npx tsx bench/eval-fanout.ts [--n 10000] [--latency-ms 50] [--concurrency 64] [--mode memory|moto|both]
 *
 * One worker evaluates N units (classification items x 1 model) with C units in flight against a
 * provider that takes L ms per call. The floor is N*L/C; the goal is to land within 10% of it.
 * Then an identical second run over the same store must make 0 provider calls.
 * Modes: `memory` (in-memory result store: engine overhead only) and `moto` (S3 result store on a
 * local moto server: adds a GET and a conditional PUT per unit through moto's single process).
 */
import { parseArgs } from 'node:util';
import * as os from 'node:os';
import type { Manifest, Row } from '../lambda/shared/benchmark';
import { runShard } from '../lambda/shared/engine';
import { planRun } from '../lambda/shared/plan';
import { SimulatedProvider } from '../lambda/shared/providers/simulated';
import { parseRunSpec } from '../lambda/shared/spec';
import { MemoryResultStore, type ResultStore, S3ResultStore } from '../lambda/shared/store';
import { createEvalResources, startMoto } from '../test/lambda/helpers';

const { values } = parseArgs({
  options: {
    n: { type: 'string', default: String(DEFAULT_N()) },
    'latency-ms': { type: 'string', default: String(DEFAULT_LATENCY_MS()) },
    concurrency: { type: 'string', default: String(DEFAULT_CONCURRENCY()) },
    mode: { type: 'string', default: 'both' },
  },
});
const n = Number(values.n);
const latencyMs = Number(values['latency-ms']);
const concurrency = Number(values.concurrency);

async function runOnce(store: ResultStore, label: string): Promise<void> {
  const manifest: Manifest = {
    name: 'bench-intents',
    version: '1',
    task: 'classification',
    labels: ['billing', 'refund', 'login', 'other'],
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
    label: manifest.labels?.[i % 4] ?? 'other',
  }));
  const spec = parseRunSpec(
    {
      benchmark: { name: manifest.name, version: manifest.version },
      models: [
        {
          provider: 'simulated',
          model_id: 'bench',
          revision: '1',
          simulated: { latency_ms: latencyMs, correct_rate: 0.8 },
        },
      ],
      shard_size: n,
      worker_concurrency: concurrency,
      provider_concurrency: { simulated: concurrency },
    },
    'bench',
  );
  const plan = planRun(`bench-${label}`, spec, manifest, rows);
  const shard = plan.shards[0];
  if (!shard) throw new Error('plan produced no shard');
  const floorMs = (n * latencyMs) / concurrency;
  const runs: Array<{ wallMs: number; calls: number; ok: number; skipped: number }> = [];
  for (let pass = 0; pass < 2; pass++) {
    const provider = new SimulatedProvider('bench', '1', {
      latency_ms: latencyMs,
      correct_rate: 0.8,
      unparseable_rate: 0,
      error_rate: 0,
      throttle_rate: 0,
    });
    const started = performance.now();
    const counts = await runShard(shard.context, shard.units, {
      store,
      models: [provider],
      judge: null,
      retry: { maxAttempts: 5, baseDelayMs: 500, maxDelayMs: 30_000 },
      concurrency,
      providerSlots: shard.worker.provider_slots,
    });
    runs.push({ wallMs: performance.now() - started, calls: provider.calls, ok: counts.ok, skipped: counts.skipped });
  }
  const [first, second] = runs;
  if (!first || !second) return;
  const overhead = (first.wallMs / floorMs - 1) * 100;
  console.log(
    `| ${label} | ${n} | ${latencyMs} | ${concurrency} | ${(floorMs / 1000).toFixed(2)} | ${(first.wallMs / 1000).toFixed(2)} | ${overhead >= 0 ? '+' : ''}${overhead.toFixed(1)}% | ${first.calls} | ${second.calls} (${second.skipped} skipped, ${(second.wallMs / 1000).toFixed(2)} s) |`,
  );
}

async function main(): Promise<void> {
  console.log(
    `eval fan-out engine benchmark: N=${n} units, L=${latencyMs} ms, C=${concurrency}; node ${process.version}, ${os.cpus().length} CPU(s) (${os.cpus()[0]?.model ?? 'unknown'})`,
  );
  console.log('| store | N | L (ms) | C | floor N*L/C (s) | wall (s) | vs floor | provider calls | 2nd run calls |');
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  if (values.mode === 'memory' || values.mode === 'both') await runOnce(new MemoryResultStore(), 'memory');
  if (values.mode === 'moto' || values.mode === 'both') {
    const moto = await startMoto();
    try {
      await createEvalResources(moto, 'dapt-eval-bench', 'bench-idempotency');
      await runOnce(new S3ResultStore(moto.s3, 'dapt-eval-bench'), 'moto S3');
    } finally {
      await moto.stop();
    }
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});

function DEFAULT_N(): number {
  return 10_000;
}
function DEFAULT_LATENCY_MS(): number {
  return 50;
}
function DEFAULT_CONCURRENCY(): number {
  return 64;
}
