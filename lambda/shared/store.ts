/**
 * Where result records live: one object per cache key, so no two writers share an object.
 * Writes are conditional (create-if-absent, or replace-if-unchanged for an `errored` record),
 * so two deliveries of one shard can never leave two different records for one key.
 */
import { GetObjectCommand, NoSuchKey, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { type ItemResult, parseRecord, recordLine } from './records';
import { EVAL_PREFIXES } from './layout';

/** A stored record and the version a conditional replace must match. */
export interface Stored {
  readonly record: ItemResult;
  readonly version: string;
}

export interface ResultStore {
  get(key: string): Promise<Stored | null>;
  /**
   * Writes `record` if the object is still as last read: absent (`expected` null) or at
   * version `expected`. Returns false, writing nothing, when another writer got there first.
   */
  putIfUnchanged(record: ItemResult, expected: string | null): Promise<boolean>;
}

/** `results/items/<cache_key>.json` in the eval bucket. */
export function resultKey(cacheKey: string): string {
  return `${RESULTS_PREFIX}${cacheKey}.json`;
}

/** Records in S3 with S3 conditional writes (`If-None-Match: *` / `If-Match: <etag>`). */
export class S3ResultStore implements ResultStore {
  constructor(
    private readonly s3: S3Client,
    private readonly bucket: string,
  ) {}

  async get(key: string): Promise<Stored | null> {
    try {
      const response = await this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: resultKey(key) }));
      const text = (await response.Body?.transformToString('utf-8')) ?? '';
      return { record: parseRecord(text, key), version: response.ETag ?? '' };
    } catch (err) {
      if (err instanceof NoSuchKey || (err as { name?: string }).name === 'NoSuchKey') return null;
      throw err;
    }
  }

  async putIfUnchanged(record: ItemResult, expected: string | null): Promise<boolean> {
    try {
      await this.s3.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: resultKey(record.cache_key),
          Body: recordLine(record),
          ContentType: 'application/json',
          ...(expected === null ? { IfNoneMatch: '*' } : { IfMatch: expected }),
        }),
      );
      return true;
    } catch (err) {
      const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
      // 412: the precondition failed; 409: a concurrent conditional write to the same key is in progress.
      if (e.$metadata?.httpStatusCode === 412 || e.$metadata?.httpStatusCode === 409 || e.name === 'PreconditionFailed')
        return false;
      throw err;
    }
  }
}

/** In-memory store with the same semantics (tests and the in-memory benchmark). */
export class MemoryResultStore implements ResultStore {
  readonly objects = new Map<string, { line: string; version: string }>();
  private counter = 0;

  async get(key: string): Promise<Stored | null> {
    const object = this.objects.get(key);
    return object ? { record: parseRecord(object.line, key), version: object.version } : null;
  }

  async putIfUnchanged(record: ItemResult, expected: string | null): Promise<boolean> {
    const current = this.objects.get(record.cache_key);
    if ((current?.version ?? null) !== expected) return false;
    this.objects.set(record.cache_key, { line: recordLine(record), version: String(++this.counter) });
    return true;
  }
}

export const RESULTS_PREFIX = EVAL_PREFIXES.results;
