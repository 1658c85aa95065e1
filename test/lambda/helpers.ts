/**
 * Test helpers for the evaluation Lambdas: a moto server on a free port with real AWS SDK
 * clients pointed at it, a Python bridge to `dapt_eval` (the reference implementation), and
 * benchmark fixtures.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import * as path from 'node:path';
import { CreateTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { sha256Hex } from '../../lambda/shared/canonical-json';

export const ROOT = path.join(__dirname, '..', '..');
export const PYTHON = path.join(ROOT, '.venv', 'bin', 'python');
const MOTO = path.join(ROOT, '.venv', 'bin', 'moto_server');

/** SDK settings that reach moto: endpoint override, path-style S3, dummy credentials. */
export interface Moto {
  readonly endpoint: string;
  readonly s3: S3Client;
  readonly dynamodb: DynamoDBClient;
  readonly clientConfig: { endpoint: string; region: string; credentials: { accessKeyId: string; secretAccessKey: string } };
  stop(): Promise<void>;
}

/** Starts `moto_server` on a free port and waits until it answers. */
export async function startMoto(): Promise<Moto> {
  const port = await freePort();
  const endpoint = `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawn(MOTO, ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
  const deadline = Date.now() + MOTO_START_TIMEOUT_MS;
  for (;;) {
    try {
      if ((await fetch(`${endpoint}/moto-api/`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline || child.exitCode !== null) {
      child.kill();
      throw new Error(`moto_server did not answer on ${endpoint} within ${MOTO_START_TIMEOUT_MS} ms (exit code ${child.exitCode})`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const clientConfig = { endpoint, region: 'us-east-1', credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } };
  return {
    endpoint,
    clientConfig,
    s3: new S3Client({ ...clientConfig, forcePathStyle: true }),
    dynamodb: new DynamoDBClient(clientConfig),
    stop: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Creates the eval bucket and a Powertools idempotency table (partition key `id`). */
export async function createEvalResources(moto: Moto, bucket: string, table: string): Promise<void> {
  await moto.s3.send(new CreateBucketCommand({ Bucket: bucket }));
  await moto.dynamodb.send(
    new CreateTableCommand({
      TableName: table,
      AttributeDefinitions: [{ AttributeName: 'id', AttributeType: 'S' }],
      KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }],
      BillingMode: 'PAY_PER_REQUEST',
    }),
  );
}

/** Uploads `benchmarks/<name>/<version>/{benchmark.json,items.jsonl}` with a correct hash unless `sha256` is given. */
export async function putBenchmark(
  s3: S3Client,
  bucket: string,
  manifest: Record<string, unknown> & { name: string; version: string },
  itemsText: string,
  sha256?: string,
): Promise<void> {
  const prefix = `benchmarks/${manifest.name}/${manifest.version}/`;
  const full = { ...manifest, items_sha256: sha256 ?? sha256Hex(itemsText) };
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}benchmark.json`, Body: JSON.stringify(full) }));
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}items.jsonl`, Body: itemsText }));
}

/** Runs `script` in the project venv with `input` as JSON on stdin; returns its stdout parsed as JSON. */
export function python<T>(script: string, input: unknown): T {
  const result = spawnSync(PYTHON, ['-c', script], { input: JSON.stringify(input), encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  if (result.status !== 0) throw new Error(`python failed (${result.status}): ${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}

/** A Lambda context with a generous time budget. */
export function fakeContext(remainingMs = 600_000): import('aws-lambda').Context {
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: 'eval-worker',
    functionVersion: '$LATEST',
    invokedFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:eval-worker',
    memoryLimitInMB: '1024',
    awsRequestId: `req-${Math.random().toString(16).slice(2)}`,
    logGroupName: '/aws/lambda/eval-worker',
    logStreamName: 'stream',
    getRemainingTimeInMillis: () => remainingMs,
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

const MOTO_START_TIMEOUT_MS = 20_000;
