/**
 * Test helpers for the evaluation Lambdas: a moto server on a free port with real AWS SDK
 * clients pointed at it, a Python bridge to `dapt_eval` (the reference implementation), and
 * benchmark fixtures.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  createServer as createHttpServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import {
  createServer as createHttp2Server,
  type Http2Server,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type Http2Session,
} from 'node:http2';
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
  readonly clientConfig: {
    endpoint: string;
    region: string;
    credentials: { accessKeyId: string; secretAccessKey: string };
  };
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
      throw new Error(
        `moto_server did not answer on ${endpoint} within ${MOTO_START_TIMEOUT_MS} ms (exit code ${child.exitCode})`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const clientConfig = {
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  };
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
  const result = spawnSync(PYTHON, ['-c', script], {
    input: JSON.stringify(input),
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
  });
  if (result.status !== 0) throw new Error(`python failed (${result.status}): ${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}

/**
 * `python` for tests that also serve HTTP from this process: spawnSync would block the event
 * loop, so a Python client of a stub server here could never get its reply.
 */
export function pythonAsync<T>(script: string, input: unknown, env: Readonly<Record<string, string>> = {}): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, ['-c', script], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.once('error', reject);
    child.once('close', (code) => {
      if (code !== 0) reject(new Error(`python failed (${code}): ${stderr}`));
      else resolve(JSON.parse(stdout) as T);
    });
    child.stdin.end(JSON.stringify(input));
  });
}

/** One request a stub server received. */
export interface StubRequest {
  readonly method: string;
  /** Path as sent (still percent-encoded). */
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

/** What a stub server answers: a string body is sent as is, anything else as JSON. */
export interface StubReply {
  readonly status?: number;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body: unknown;
}

/** A local HTTP server standing in for a model endpoint (real clients, real sockets). */
export interface StubServer {
  readonly url: string;
  /** Every request received, in order (tests reset it with `reset`). */
  readonly requests: StubRequest[];
  /** Sets the replies, served in order; the last one repeats once the others are used. */
  reset(...replies: StubReply[]): void;
  close(): Promise<void>;
}

/**
 * Starts a stub endpoint on a free port. `http2` serves cleartext HTTP/2 (h2c), which is what the
 * Bedrock Runtime client speaks by default; boto3 and fetch need `http1`.
 */
export async function startStubServer(protocol: 'http1' | 'http2' = 'http1'): Promise<StubServer> {
  const requests: StubRequest[] = [];
  let replies: StubReply[] = [{ status: 500, body: 'stub server has no reply configured' }];
  const handle = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      requests.push({
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      });
      const reply = (replies.length > 1 ? replies.shift() : replies[0]) as StubReply;
      const body = typeof reply.body === 'string' ? reply.body : JSON.stringify(reply.body);
      res.writeHead(reply.status ?? 200, { 'content-type': 'application/json', ...reply.headers });
      res.end(body);
    });
  };
  const sessions = new Set<Http2Session>();
  let server: Server | Http2Server;
  if (protocol === 'http2') {
    const h2 = createHttp2Server(handle);
    h2.on('session', (session) => {
      sessions.add(session);
      session.once('close', () => sessions.delete(session));
    });
    server = h2;
  } else {
    server = createHttpServer(handle);
  }
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    reset: (...next) => {
      requests.length = 0;
      replies = next;
    },
    close: () =>
      new Promise((resolve, reject) => {
        // Clients keep connections (HTTP/2 sessions) open; close them so the server can stop.
        for (const session of sessions) session.destroy();
        if ('closeAllConnections' in server) server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
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
