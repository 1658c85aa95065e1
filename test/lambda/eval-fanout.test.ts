/**
 * The Plan and Worker Lambdas against moto (S3 + DynamoDB), with the simulated provider:
 * sharding, quarantine, benchmark errors, Python-compatible records, resume, idempotency.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { Logger } from '@aws-lambda-powertools/logger';
import { MetricUnit, Metrics } from '@aws-lambda-powertools/metrics';
import { createPlanHandler, type PlanResult } from '../../lambda/eval-plan/plan';
import {
  createWorkerHandler,
  processShard,
  publishProviderLatency,
  type WorkerDeps,
  type WorkerResult,
} from '../../lambda/eval-worker/worker';
import type { ShardEntry } from '../../lambda/shared/plan';
import { buildProvider } from '../../lambda/shared/providers/factory';
import { SimulatedProvider } from '../../lambda/shared/providers/simulated';
import type { ItemResult } from '../../lambda/shared/records';
import { createEvalResources, fakeContext, type Moto, putBenchmark, python, startMoto } from './helpers';

process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
process.env.POWERTOOLS_METRICS_DISABLED = 'true';
process.env.POWERTOOLS_METRICS_NAMESPACE = 'dapt-test';
process.env.POWERTOOLS_SERVICE_NAME = 'eval-test';

const BUCKET = 'dapt-eval-test';
const TABLE = 'eval-idempotency';
let moto: Moto;

const CLASSIFY = {
  name: 'support-intents',
  version: '1.0.0',
  task: 'classification',
  labels: ['billing', 'refund', 'login'],
  prompt: {
    id: 'classify-basic',
    version: '1',
    template: 'Classify into one of: {labels}.\nReply with the label only.\n\nText: {text}\nLabel:',
  },
};
const GOOD_ROWS = Array.from({ length: 25 }, (_, i) =>
  JSON.stringify({ id: `c${i}`, text: `ticket ${i} — ß`, label: CLASSIFY.labels[i % 3] }),
);
const BAD_ROWS = [
  '{"id": "x1", "text": "broken',
  JSON.stringify({ id: 'x2', label: 'billing' }),
  JSON.stringify({ id: 'x3', text: 'hi', label: 'shipping' }),
  JSON.stringify({ id: 'c0', text: 'again', label: 'billing' }),
  JSON.stringify({ id: 'x5', text: '   ', label: 'login' }),
];
const QA = {
  name: 'help-qa',
  version: '2',
  task: 'qa',
  prompt: { id: 'qa-basic', version: '1', template: 'Answer the question concisely.\n\nQuestion: {question}\nAnswer:' },
};

function simulated(modelId: string, behaviour: Record<string, number> = {}): Record<string, unknown> {
  return { provider: 'simulated', model_id: modelId, revision: 'r1', simulated: behaviour };
}

/** Calibration reports as `dapt-eval calibrate-judge` writes them: trusted (offline judge right on every item) and not. */
let TRUSTED_REPORT: Record<string, unknown> & { judge: { model: string; prompt_version: string } };
let UNTRUSTED_REPORT: typeof TRUSTED_REPORT;

/**
 * Uploads `report` as the calibration report of `judge` (its `judge.model` set to the judge's
 * model string: Python's offline provider is named 'offline', TypeScript's 'simulated').
 */
async function putReport(
  key: string,
  judge: Record<string, unknown>,
  report = TRUSTED_REPORT,
  overrides: Record<string, string> = {},
): Promise<string> {
  const body = { ...report, judge: { ...report.judge, model: `simulated:${String(judge.model_id)}@r1`, ...overrides } };
  await moto.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: JSON.stringify(body) }));
  return key;
}

/** A qa judge with a trusted calibration report uploaded for it. */
async function calibratedJudge(
  modelId: string,
  behaviour: Record<string, number> = {},
): Promise<Record<string, unknown>> {
  const judge = simulated(modelId, behaviour);
  return {
    ...judge,
    calibration_report: await putReport(`benchmarks/${QA.name}/${QA.version}/judge-calibration/${modelId}.json`, judge),
  };
}

async function putSpec(runId: string, spec: Record<string, unknown>): Promise<string> {
  const key = `runs/${runId}/spec.json`;
  await moto.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: JSON.stringify(spec) }));
  return key;
}

async function getJson<T>(key: string): Promise<T> {
  const response = await moto.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  return JSON.parse((await response.Body?.transformToString()) ?? '') as T;
}

async function getText(key: string): Promise<string> {
  const response = await moto.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  return (await response.Body?.transformToString()) ?? '';
}

const plan = (runId: string, specKey: string): Promise<PlanResult> =>
  createPlanHandler({ s3: moto.s3, bucket: BUCKET, logger: new Logger() })({ run_id: runId, spec_key: specKey });

/** Metrics that keep every EMF blob they publish (publishing is disabled in tests). */
class CapturingMetrics extends Metrics {
  readonly blobs: Array<ReturnType<Metrics['serializeMetrics']>> = [];

  override publishStoredMetrics(): this {
    if (this.hasStoredMetrics()) this.blobs.push(this.serializeMetrics());
    return super.publishStoredMetrics();
  }

  /** `[dimension names, metric names, provider value, ProviderLatency value count]` of each blob. */
  summary(): Array<[string[][], string[], unknown, number]> {
    return this.blobs.map((b) => {
      const [directive] = b._aws.CloudWatchMetrics;
      const latency = (b as Record<string, unknown>).ProviderLatency;
      return [
        directive?.Dimensions ?? [],
        (directive?.Metrics ?? []).map((m) => m.Name),
        (b as Record<string, unknown>).provider,
        Array.isArray(latency) ? latency.length : latency === undefined ? 0 : 1,
      ];
    });
  }
}

/** Worker deps whose providers are recorded so tests can count provider calls. */
function workerDeps(): WorkerDeps & { calls(): number; built: SimulatedProvider[] } {
  const built: SimulatedProvider[] = [];
  return {
    s3: moto.s3,
    dynamodb: moto.dynamodb,
    bucket: BUCKET,
    idempotencyTable: TABLE,
    logger: new Logger(),
    metrics: new Metrics(),
    buildProvider: (spec) => {
      const provider = buildProvider(spec);
      if (provider instanceof SimulatedProvider) built.push(provider);
      return provider;
    },
    built,
    calls: () => built.reduce((n, p) => n + p.calls, 0),
  };
}

/** Runs every shard of a planned run through the idempotent handler, like the Distributed Map. */
async function runAll(result: PlanResult, deps = workerDeps()): Promise<{ results: WorkerResult[]; calls: number }> {
  const handler = createWorkerHandler(deps);
  const entries = await getJson<ShardEntry[]>(result.manifest_key);
  const results = await Promise.all(entries.map((e) => handler(e, fakeContext())));
  return { results, calls: deps.calls() };
}

async function recordsOf(runId: string): Promise<ItemResult[]> {
  const run = await getJson<{ cache_keys: string[] }>(`runs/${runId}/run.json`);
  return Promise.all(run.cache_keys.map((k) => getJson<ItemResult>(`results/items/${k}.json`)));
}

const sum = (results: WorkerResult[], field: keyof WorkerResult): number => results.reduce((n, r) => n + r[field], 0);

before(async () => {
  [TRUSTED_REPORT, UNTRUSTED_REPORT] = python<[typeof TRUSTED_REPORT, typeof TRUSTED_REPORT]>(
    `import json, sys
from dapt_eval.judge import Judge, calibrate
from dapt_eval.providers.offline import OfflineBehaviour, OfflineProvider
from dapt_eval.schemas import JudgeCalibrationItem
items = [JudgeCalibrationItem(id=f"j{i}", question=f"q {i}", reference_answer=f"a {i}", candidate_answer=f"c {i}",
                              human_verdict="correct" if i % 2 == 0 else "incorrect", annotator="ann") for i in range(20)]
print(json.dumps([calibrate(items, Judge(OfflineProvider("judge", "r1", OfflineBehaviour(correct_rate=rate)))) for rate in (1.0, 0.5)]))`,
    null,
  );
  assert.equal(TRUSTED_REPORT.trusted, true);
  assert.equal(UNTRUSTED_REPORT.trusted, false);
  moto = await startMoto();
  await createEvalResources(moto, BUCKET, TABLE);
  await putBenchmark(
    moto.s3,
    BUCKET,
    CLASSIFY,
    `${[...GOOD_ROWS.slice(0, 3), ...BAD_ROWS, ...GOOD_ROWS.slice(3)].join('\n')}\n`,
  );
  await putBenchmark(
    moto.s3,
    BUCKET,
    QA,
    `${Array.from({ length: 6 }, (_, i) => JSON.stringify({ id: `q${i}`, question: `How do I ${i}?`, reference_answer: `Do step ${i}.` })).join('\n')}\n`,
  );
});

after(async () => {
  await moto?.stop();
});

describe('Plan', () => {
  test('shards items x models, quarantines bad rows with line and reason, and sizes the Map', async () => {
    const specKey = await putSpec('plan-1', {
      benchmark: { name: CLASSIFY.name, version: CLASSIFY.version },
      models: [simulated('a'), simulated('b')],
      shard_size: 10,
      worker_concurrency: 4,
      provider_concurrency: { simulated: 9 },
    });
    const result = await plan('plan-1', specKey);
    assert.deepEqual(result, {
      run_id: 'plan-1',
      manifest_key: 'runs/plan-1/shards/manifest.json',
      shard_count: 5,
      unit_count: 50,
      quarantined: 5,
      max_concurrency: 2,
    });
    const entries = await getJson<ShardEntry[]>(result.manifest_key);
    assert.deepEqual(entries[4], { run_id: 'plan-1', shard_key: 'runs/plan-1/shards/00004.json', shard_index: 4 });
    const quarantine = (await getText('runs/plan-1/quarantine.jsonl'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { line: number; reason: string });
    assert.deepEqual(
      quarantine.map((q) => [q.line, q.reason.replace(/^invalid JSON: .*/, 'invalid JSON')]),
      [
        [4, 'invalid JSON'],
        [5, 'text: field required'],
        [6, "label: 'shipping' is not in the manifest label set ['billing', 'refund', 'login']"],
        [7, "duplicate id 'c0' (first seen on line 1)"],
        [8, 'text: Value error, must not be empty or whitespace only'],
      ],
    );
    const run = await getJson<{
      expected_units: number;
      n_items: number;
      cache_keys: string[];
      cache_keys_by_model: string[][];
      models: unknown[];
    }>('runs/plan-1/run.json');
    assert.equal(run.expected_units, 50);
    assert.equal(run.n_items, 25);
    assert.equal(new Set(run.cache_keys).size, 50);
    assert.deepEqual(run.cache_keys_by_model.flat(), run.cache_keys);
    assert.deepEqual(run.models, [
      { provider: 'simulated', model_id: 'a', revision: 'r1' },
      { provider: 'simulated', model_id: 'b', revision: 'r1' },
    ]);
    const parsed = python<{ n: number; task: string }>(
      `import json, sys
from dapt_eval.fanout import parse_plan
p = parse_plan(json.load(sys.stdin), "run.json")
print(json.dumps({"n": len(p.cache_keys), "task": p.benchmark.task.value}))`,
      await getText('runs/plan-1/run.json'),
    );
    assert.deepEqual(parsed, { n: 50, task: 'classification' });
  });

  test('refuses items whose sha256 differs from the manifest, naming both hashes', async () => {
    await putBenchmark(
      moto.s3,
      BUCKET,
      { ...CLASSIFY, version: 'tampered' },
      `${GOOD_ROWS.join('\n')}\n`,
      'a'.repeat(64),
    );
    const specKey = await putSpec('plan-hash', {
      benchmark: { name: CLASSIFY.name, version: 'tampered' },
      models: [simulated('a')],
    });
    await assert.rejects(
      plan('plan-hash', specKey),
      /items_sha256 in manifest is 'a{64}', file hashes to '[0-9a-f]{64}'/,
    );
  });

  test('refuses an empty items file', async () => {
    await putBenchmark(moto.s3, BUCKET, { ...CLASSIFY, version: 'empty' }, '\n  \n');
    const specKey = await putSpec('plan-empty', {
      benchmark: { name: CLASSIFY.name, version: 'empty' },
      models: [simulated('a')],
    });
    await assert.rejects(
      plan('plan-empty', specKey),
      /items file s3:\/\/dapt-eval-test\/benchmarks\/support-intents\/empty\/items.jsonl is empty/,
    );
  });

  test('reports every spec problem together, each naming its field', async () => {
    const specKey = await putSpec('plan-bad', {
      benchmark: { name: 'has space', version: '1' },
      models: [
        { provider: 'sagemaker', model_id: 'm' },
        { provider: 'openai', model_id: 'x', inference_component_name: 'dapt-prod-support' },
      ],
      shard_size: 0,
      extra: true,
    });
    await assert.rejects(plan('plan-bad', specKey), (err: Error) => {
      for (const field of [
        'benchmark.name',
        'models.0.endpoint_name',
        'models.1.base_url',
        "models.1.inference_component_name: only allowed for provider 'sagemaker'",
        'shard_size',
        'spec: Unrecognized key: "extra"',
      ]) {
        assert.ok(err.message.includes(field), `${field} missing from: ${err.message}`);
      }
      return true;
    });
  });
});

describe('Worker', () => {
  test('writes one Python-valid record per unit; an identical rerun makes 0 provider calls', async () => {
    const spec = {
      benchmark: { name: CLASSIFY.name, version: CLASSIFY.version },
      models: [simulated('m', { correct_rate: 0.7, unparseable_rate: 0.1 })],
      shard_size: 7,
    };
    const first = await runAll(await plan('work-1', await putSpec('work-1', spec)));
    assert.equal(first.calls, 25);
    assert.equal(sum(first.results, 'ok') + sum(first.results, 'unparseable'), 25);
    assert.ok(sum(first.results, 'unparseable') > 0);
    const records = await recordsOf('work-1');
    const validated = python<number>(
      `import json, sys
from dapt_eval.results import ItemResult
print(json.dumps(len([ItemResult.model_validate_json(json.dumps(r)) for r in json.load(sys.stdin)])))`,
      records,
    );
    assert.equal(validated, 25);
    assert.deepEqual(Object.keys(records[0] ?? {}), [
      'schema_version',
      'run_id',
      'benchmark',
      'benchmark_version',
      'item_id',
      'task',
      'model',
      'decoding',
      'prompt_id',
      'prompt_version',
      'mode',
      'status',
      'prediction',
      'correct',
      'score',
      'judge',
      'error',
      'cache_key',
      'latency_ms',
      'usage',
      'details',
      'attempts',
    ]);
    const rerun = await runAll(await plan('work-2', await putSpec('work-2', spec)));
    assert.equal(rerun.calls, 0);
    assert.equal(sum(rerun.results, 'skipped'), 25);
  });

  test('a shard delivered twice is processed once and returns the same result', async () => {
    const result = await plan(
      'twice',
      await putSpec('twice', {
        benchmark: { name: CLASSIFY.name, version: CLASSIFY.version },
        models: [simulated('twice')],
        shard_size: 30,
      }),
    );
    const deps = workerDeps();
    const handler = createWorkerHandler(deps);
    const [entry] = await getJson<ShardEntry[]>(result.manifest_key);
    const first = await handler(entry, fakeContext());
    const second = await handler(entry, fakeContext());
    assert.deepEqual(second, first);
    assert.deepEqual(first, { shard_index: 0, ok: 25, errored: 0, unparseable: 0, skipped: 0 });
    assert.equal(deps.built.length, 1, 'the second delivery must not even build providers');
    assert.equal(deps.calls(), 25);
  });

  test('concurrent deliveries bypassing idempotency still leave one record per key', async () => {
    const result = await plan(
      'race',
      await putSpec('race', {
        benchmark: { name: CLASSIFY.name, version: CLASSIFY.version },
        models: [simulated('race', { latency_ms: 5 })],
        shard_size: 30,
      }),
    );
    const [entry] = await getJson<ShardEntry[]>(result.manifest_key);
    assert.ok(entry);
    const [a, b] = await Promise.all([processShard(workerDeps(), entry), processShard(workerDeps(), entry)]);
    assert.ok(a && b);
    assert.equal(a.ok + b.ok, 25, 'each key is written by exactly one delivery');
    assert.equal(a.skipped + b.skipped, 25);
  });

  test('provider failures become errored records with the message; the next run retries them', async () => {
    const spec = (errorRate: number): Record<string, unknown> => ({
      benchmark: { name: CLASSIFY.name, version: CLASSIFY.version },
      models: [simulated('flaky', { error_rate: errorRate })],
      provider_concurrency: { simulated: 4 },
      retry: { max_attempts: 2, base_delay_ms: 0 },
    });
    const failed = await runAll(await plan('err-1', await putSpec('err-1', spec(1))));
    assert.equal(sum(failed.results, 'errored'), 25);
    const records = await recordsOf('err-1');
    assert.equal(records[0]?.status, 'errored');
    assert.equal(records[0]?.error, 'TransientError after 2 attempt(s): simulated: injected server error (HTTP 500)');
    assert.equal(records[0]?.correct, null);
    assert.equal(records[0]?.attempts, 2);
    const retried = await runAll(await plan('err-2', await putSpec('err-2', spec(0))));
    assert.equal(retried.calls, 25);
    assert.equal(sum(retried.results, 'ok'), 25);
    assert.ok(
      (await recordsOf('err-1')).every((r) => r.status === 'ok'),
      'errored records are overwritten in place',
    );
  });

  test('throttles are retried and succeed; attempts are recorded', async () => {
    const spec = {
      benchmark: { name: CLASSIFY.name, version: CLASSIFY.version },
      models: [simulated('throttled', { throttle_rate: 1 })],
      retry: { max_attempts: 3, base_delay_ms: 1 },
    };
    const { results, calls } = await runAll(await plan('thr', await putSpec('thr', spec)));
    assert.equal(sum(results, 'ok'), 25);
    assert.equal(calls, 50);
    assert.ok((await recordsOf('thr')).every((r) => r.attempts === 2));
  });

  test('qa: a garbage judge reply is unparseable (never incorrect); a good judge scores', async () => {
    const spec = (judge: Record<string, unknown>): Record<string, unknown> => ({
      benchmark: { name: QA.name, version: QA.version },
      models: [simulated('qa-model', { correct_rate: 0.5 })],
      judge,
    });
    const garbage = await runAll(
      await plan('qa-bad', await putSpec('qa-bad', spec(await calibratedJudge('judge-1', { unparseable_rate: 1 })))),
    );
    assert.equal(sum(garbage.results, 'unparseable'), 6);
    const records = await recordsOf('qa-bad');
    assert.ok(
      records.every(
        (r) =>
          r.status === 'unparseable' &&
          r.correct === null &&
          r.judge?.verdict === null &&
          r.error?.startsWith('judge: not valid JSON'),
      ),
    );
    assert.equal(records[0]?.judge?.model, 'simulated:judge-1@r1');
    assert.equal(records[0]?.judge?.prompt_version, 'judge-reference-guided@2');
    const good = await runAll(await plan('qa-ok', await putSpec('qa-ok', spec(await calibratedJudge('judge-0')))));
    assert.equal(sum(good.results, 'ok'), 6);
    const scored = await recordsOf('qa-ok');
    assert.ok(scored.every((r) => r.judge?.verdict === (r.correct ? 'correct' : 'incorrect')));
    python<number>(
      `import json, sys
from dapt_eval.results import ItemResult
print(len([ItemResult.model_validate_json(json.dumps(r)) for r in json.load(sys.stdin)]))`,
      [...records, ...scored],
    );
  });

  test('ProviderLatency is published per provider kind with a provider dimension; unit counts without it', async () => {
    const result = await plan(
      'metrics',
      await putSpec('metrics', {
        benchmark: { name: QA.name, version: QA.version },
        models: [simulated('m-model')],
        judge: await calibratedJudge('m-judge'),
      }),
    );
    const [entry] = await getJson<ShardEntry[]>(result.manifest_key);
    assert.ok(entry);
    const metrics = new CapturingMetrics();
    await processShard({ ...workerDeps(), metrics }, entry);
    assert.deepEqual(metrics.summary(), [
      [[['service', 'provider']], ['ProviderLatency'], 'simulated', 12],
      [[['service']], ['UnitsOk', 'UnitsErrored', 'UnitsUnparseable', 'UnitsSkipped'], undefined, 0],
    ]);

    const direct = new CapturingMetrics();
    direct.addMetric('Earlier', MetricUnit.Count, 1);
    publishProviderLatency(
      direct,
      new Map([
        ['bedrock', Array.from({ length: 250 }, (_, i) => i)],
        ['openai', [5]],
      ]),
    );
    assert.deepEqual(
      direct.summary().map(([dims, names, provider, n]) => [dims, names, provider, n]),
      [
        [[['service']], ['Earlier'], undefined, 0],
        [[['service', 'provider']], ['ProviderLatency'], 'bedrock', 100],
        [[['service', 'provider']], ['ProviderLatency'], 'bedrock', 100],
        [[['service', 'provider']], ['ProviderLatency'], 'bedrock', 50],
        [[['service', 'provider']], ['ProviderLatency'], 'openai', 1],
      ],
    );
  });

  test('rejects a manifest entry whose shard_key lies outside its run', async () => {
    const handler = createWorkerHandler(workerDeps());
    await assert.rejects(
      handler({ run_id: 'a', shard_key: 'runs/b/shards/00000.json', shard_index: 0 }, fakeContext()),
      /shard_key 'runs\/b\/shards\/00000.json' must lie under 'runs\/a\/shards\/'/,
    );
    await assert.rejects(
      handler({ run_id: 'a', shard_index: -1 }, fakeContext()),
      /worker event is invalid: shard_key: .*; shard_index: /,
    );
  });
});

describe('Judge calibration gate', () => {
  const qaSpec = (judge: Record<string, unknown>): Record<string, unknown> => ({
    benchmark: { name: QA.name, version: QA.version },
    models: [simulated('gate-model')],
    judge,
  });
  const refused = (runId: string, judge: Record<string, unknown>, pattern: RegExp): Promise<void> =>
    putSpec(runId, qaSpec(judge)).then((key) =>
      assert.rejects(plan(runId, key), (err: Error) => {
        assert.equal(err.name, 'PlanError');
        assert.match(err.message, /judge: not calibrated: /);
        assert.match(err.message, pattern);
        assert.match(err.message, /set judge\.allow_uncalibrated: true to run anyway/);
        return true;
      }),
    );

  test('a judge with a trusted report for its model and prompt is planned, and run.json says so', async () => {
    const judge = await calibratedJudge('gate-judge');
    await plan('gate-ok', await putSpec('gate-ok', qaSpec(judge)));
    const run = await getJson<Record<string, unknown>>('runs/gate-ok/run.json');
    assert.equal(run.judge_calibrated, true);
    assert.deepEqual(run.judge_calibration, {
      calibrated: true,
      report_key: judge.calibration_report,
      cohen_kappa: TRUSTED_REPORT.cohen_kappa,
      kappa_threshold: 0.6,
      injection_resistance: null, // its calibration set has no adversarial row
      problems: [],
    });
    const shard = await getJson<{ judge: Record<string, unknown> }>('runs/gate-ok/shards/00000.json');
    assert.deepEqual(
      Object.keys(shard.judge).sort(),
      ['model_id', 'provider', 'revision', 'simulated'],
      'shards carry the provider only',
    );
  });

  test('refuses a judge without calibration_report', async () => {
    await refused(
      'gate-none',
      simulated('gate-judge'),
      /no calibration_report is set: calibrate the judge with `dapt-eval calibrate-judge`/,
    );
  });

  test('refuses a report that does not exist, naming it', async () => {
    await refused(
      'gate-missing',
      { ...simulated('gate-judge'), calibration_report: 'benchmarks/help-qa/2/nope.json' },
      /calibration report s3:\/\/dapt-eval-test\/benchmarks\/help-qa\/2\/nope.json does not exist/,
    );
  });

  test('refuses a report for another judge model or another judge prompt, naming both', async () => {
    const judge = simulated('gate-judge');
    const other = await putReport('runs/gate-other/other-judge.json', simulated('other-judge'));
    await refused(
      'gate-other',
      { ...judge, calibration_report: other },
      /is for judge model 'simulated:other-judge@r1', but the spec's judge is 'simulated:gate-judge@r1'/,
    );
    const oldPrompt = await putReport('runs/gate-prompt/report.json', judge, TRUSTED_REPORT, {
      prompt_version: 'judge-reference-guided@0',
    });
    await refused(
      'gate-prompt',
      { ...judge, calibration_report: oldPrompt },
      /is for judge prompt 'judge-reference-guided@0', but the fan-out judges with 'judge-reference-guided@2'/,
    );
  });

  test('refuses a report that says trusted: false, with its kappa', async () => {
    const judge = simulated('gate-judge');
    const key = await putReport('runs/gate-untrusted/report.json', judge, UNTRUSTED_REPORT);
    await refused(
      'gate-untrusted',
      { ...judge, calibration_report: key },
      /says trusted: false \(cohen_kappa -?[0-9.]+, kappa_threshold 0\.6\)/,
    );
  });

  test('refuses a report that is not a calibrate-judge report, naming the fields', async () => {
    await moto.s3.send(
      new PutObjectCommand({ Bucket: BUCKET, Key: 'runs/gate-junk/report.json', Body: JSON.stringify({ kappa: 0.9 }) }),
    );
    await refused(
      'gate-junk',
      { ...simulated('gate-judge'), calibration_report: 'runs/gate-junk/report.json' },
      /is not a calibrate-judge report \(judge: .*; trusted: /,
    );
  });

  test('allow_uncalibrated runs anyway and run.json records judge_calibrated: false with the report and kappa', async () => {
    const judge = simulated('gate-judge');
    const key = await putReport('runs/gate-allow/report.json', judge, UNTRUSTED_REPORT);
    const result = await plan(
      'gate-allow',
      await putSpec('gate-allow', qaSpec({ ...judge, calibration_report: key, allow_uncalibrated: true })),
    );
    assert.equal(result.unit_count, 6);
    const run = await getJson<{ judge_calibrated: boolean; judge_calibration: Record<string, unknown> }>(
      'runs/gate-allow/run.json',
    );
    assert.equal(run.judge_calibrated, false);
    assert.equal(run.judge_calibration.report_key, key);
    assert.equal(run.judge_calibration.cohen_kappa, UNTRUSTED_REPORT.cohen_kappa);
    assert.match(String(run.judge_calibration.problems), /says trusted: false/);

    await plan('gate-allow-none', await putSpec('gate-allow-none', qaSpec({ ...judge, allow_uncalibrated: true })));
    const bare = await getJson<{ judge_calibrated: boolean; judge_calibration: Record<string, unknown> }>(
      'runs/gate-allow-none/run.json',
    );
    assert.equal(bare.judge_calibrated, false);
    assert.deepEqual([bare.judge_calibration.report_key, bare.judge_calibration.cohen_kappa], [null, null]);
  });

  test('runs without a judge are not gated (judge_calibrated: null)', async () => {
    const spec = {
      benchmark: { name: CLASSIFY.name, version: CLASSIFY.version },
      models: [simulated('m')],
      judge: simulated('unused-judge'),
    };
    await plan('gate-nojudge', await putSpec('gate-nojudge', spec));
    const run = await getJson<Record<string, unknown>>('runs/gate-nojudge/run.json');
    assert.deepEqual([run.judge, run.judge_calibrated, run.judge_calibration], [null, null, null]);
  });

  test('calibration_report must be a key the Plan Lambda can read, not a URI', async () => {
    const key = await putSpec(
      'gate-uri',
      qaSpec({ ...simulated('gate-judge'), calibration_report: 's3://dapt-eval-test/benchmarks/x.json' }),
    );
    await assert.rejects(
      plan('gate-uri', key),
      /judge\.calibration_report: must be an object key in the eval bucket under 'benchmarks\/' or 'runs\/'/,
    );
  });
});

test('results are stored one object per cache key', async () => {
  const listed = await moto.s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'results/items/' }));
  assert.ok((listed.KeyCount ?? 0) > 0);
  assert.ok((listed.Contents ?? []).every((o) => /^results\/items\/[0-9a-f]{64}\.json$/.test(o.Key ?? '')));
});
