/**
 * The Worker step: evaluate one shard. Idempotent per (run_id, shard_key) with Powertools
 * Idempotency, and per unit through the result store's conditional writes.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { S3Client } from '@aws-sdk/client-s3';
import { IdempotencyConfig, makeIdempotent } from '@aws-lambda-powertools/idempotency';
import { DynamoDBPersistenceLayer } from '@aws-lambda-powertools/idempotency/dynamodb';
import type { Logger } from '@aws-lambda-powertools/logger';
import { type Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { Context } from 'aws-lambda';
import { z } from 'zod';
import { runShard, type ShardCounts } from '../shared/engine';
import type { ShardFile } from '../shared/plan';
import { buildProvider } from '../shared/providers/factory';
import type { Provider } from '../shared/providers/types';
import { getText } from '../shared/s3io';
import type { ProviderSpec } from '../shared/spec';
import { S3ResultStore } from '../shared/store';

/** The Map item: one entry of `runs/<run_id>/shards/manifest.json`. */
export const workerEventSchema = z.strictObject({
  run_id: z.string().regex(/^[A-Za-z0-9_-]{1,80}$/),
  shard_key: z.string().min(1),
  shard_index: z.int().min(0),
});
export type WorkerEvent = z.infer<typeof workerEventSchema>;

export interface WorkerResult extends ShardCounts {
  readonly shard_index: number;
}

export interface WorkerDeps {
  readonly s3: S3Client;
  readonly dynamodb: DynamoDBClient;
  readonly bucket: string;
  readonly idempotencyTable: string;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Builds providers from the shard's specs. @default - `buildProvider` */
  readonly buildProvider?: (spec: ProviderSpec) => Provider;
}

/** The Lambda handler: `processShard` wrapped so that a shard delivered twice is processed once. */
export function createWorkerHandler(deps: WorkerDeps): (event: unknown, context: Context) => Promise<WorkerResult> {
  const config = new IdempotencyConfig({
    eventKeyJmesPath: '[run_id, shard_key]',
    expiresAfterSeconds: IDEMPOTENCY_TTL_S,
    throwOnNoIdempotencyKey: true,
  });
  const persistenceStore = new DynamoDBPersistenceLayer({
    tableName: deps.idempotencyTable,
    awsSdkV3Client: deps.dynamodb,
  });
  const idempotent = makeIdempotent((event: WorkerEvent, context: Context) => processShard(deps, event, context), {
    persistenceStore,
    config,
  });
  return async (event, context) => {
    const parsed = workerEventSchema.safeParse(event);
    if (!parsed.success) {
      throw new Error(
        `worker event is invalid: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'event'}: ${i.message}`).join('; ')}`,
      );
    }
    config.registerLambdaContext(context);
    return idempotent(parsed.data, context);
  };
}

/** Reads the shard, evaluates it, publishes metrics, and returns the counts. */
export async function processShard(deps: WorkerDeps, event: WorkerEvent, context?: Context): Promise<WorkerResult> {
  const expectedPrefix = `runs/${event.run_id}/shards/`;
  if (!event.shard_key.startsWith(expectedPrefix)) {
    throw new Error(`shard_key '${event.shard_key}' must lie under '${expectedPrefix}' (run_id '${event.run_id}')`);
  }
  const shard = JSON.parse(await getText(deps.s3, deps.bucket, event.shard_key)) as ShardFile;
  if (shard.schema_version !== 1 || shard.run_id !== event.run_id || shard.shard_index !== event.shard_index) {
    throw new Error(
      `shard ${event.shard_key} does not match its manifest entry: file has schema_version=${shard.schema_version}, run_id='${shard.run_id}', shard_index=${shard.shard_index}; entry has run_id='${event.run_id}', shard_index=${event.shard_index}`,
    );
  }
  deps.logger.appendKeys({ run_id: event.run_id, shard_index: event.shard_index });
  const build = deps.buildProvider ?? buildProvider;
  const started = Date.now();
  const latencies = new Map<string, number[]>();
  let counts: ShardCounts;
  try {
    counts = await runShard(shard.context, shard.units, {
      store: new S3ResultStore(deps.s3, deps.bucket),
      models: shard.models.map(build),
      judge: shard.judge ? build(shard.judge) : null,
      retry: {
        maxAttempts: shard.worker.retry.max_attempts,
        baseDelayMs: shard.worker.retry.base_delay_ms,
        maxDelayMs: shard.worker.retry.max_delay_ms,
        ...(shard.worker.retry.max_throttled_attempts === undefined
          ? {}
          : { maxThrottledAttempts: shard.worker.retry.max_throttled_attempts }),
      },
      concurrency: shard.worker.concurrency,
      providerSlots: shard.worker.provider_slots,
      ...(shard.worker.min_provider_slots === undefined ? {} : { minProviderSlots: shard.worker.min_provider_slots }),
      ...(context ? { remainingMs: () => context.getRemainingTimeInMillis() } : {}),
      onCall: (provider, latencyMs) => {
        const values = latencies.get(provider.provider) ?? [];
        values.push(latencyMs);
        latencies.set(provider.provider, values);
      },
    });
  } finally {
    // Also when the shard fails part-way (ShardIncompleteError): the calls made were real.
    publishProviderLatency(deps.metrics, latencies);
  }
  deps.metrics.addMetric('UnitsOk', MetricUnit.Count, counts.ok);
  deps.metrics.addMetric('UnitsErrored', MetricUnit.Count, counts.errored);
  deps.metrics.addMetric('UnitsUnparseable', MetricUnit.Count, counts.unparseable);
  deps.metrics.addMetric('UnitsSkipped', MetricUnit.Count, counts.skipped);
  deps.metrics.publishStoredMetrics();
  deps.logger.info('shard evaluated', { ...counts, units: shard.units.length, duration_ms: Date.now() - started });
  return { shard_index: event.shard_index, ...counts };
}

/**
 * Publishes `ProviderLatency` (ms) per provider kind with a `provider` dimension. An EMF blob's
 * dimensions apply to every metric in it, so each kind goes out in blobs of its own, holding at
 * most the 100 values Powertools keeps per metric (at 100 it flushes by itself and drops the
 * dimension); anything stored before is flushed first so it does not gain the dimension.
 */
export function publishProviderLatency(metrics: Metrics, latencies: ReadonlyMap<string, readonly number[]>): void {
  if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
  for (const [provider, values] of latencies) {
    for (let start = 0; start < values.length; start += LATENCY_VALUES_PER_BLOB) {
      metrics.addDimension('provider', provider);
      for (const value of values.slice(start, start + LATENCY_VALUES_PER_BLOB))
        metrics.addMetric('ProviderLatency', MetricUnit.Milliseconds, value);
      if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
    }
  }
}

/** Values per EMF blob: Powertools' per-metric limit (`MAX_METRIC_VALUES_SIZE`), and CloudWatch's. */
const LATENCY_VALUES_PER_BLOB = 100;
/** How long a finished shard's result is remembered (a redelivery after that re-reads records and skips them all). */
const IDEMPOTENCY_TTL_S = 7 * 24 * 3600;
