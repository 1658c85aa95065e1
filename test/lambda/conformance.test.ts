/**
 * The conformance corpus (`containers/eval/conformance/*.json`): vectors that this suite and the
 * Python suite (`containers/eval/tests/test_conformance.py`) both run, so the two runtimes cannot
 * drift apart where the parity tests do not look.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { loadRows } from '../../lambda/shared/benchmark';
import { encloseCandidate, JUDGE_PROMPT, render, type Task, templateProblems } from '../../lambda/shared/prompts';
import { SageMakerRuntimeClient } from '@aws-sdk/client-sagemaker-runtime';
import { converseText, SageMakerEndpointProvider, tgiResponseText } from '../../lambda/shared/providers/aws';
import { OpenAICompatibleProvider } from '../../lambda/shared/providers/openai';
import { type Provider, tokenCount } from '../../lambda/shared/providers/types';
import { type ItemResult, recordLine } from '../../lambda/shared/records';
import { AimdLimit } from '../../lambda/shared/limiter';
import {
  callWithRetry,
  PermanentError,
  ProviderError,
  RetriesExhaustedError,
  ThrottledError,
  TransientError,
} from '../../lambda/shared/retry';
import { pyRepr } from '../../lambda/shared/pytext';
import { rougeL, tokenize } from '../../lambda/shared/rouge';
import { casefold } from '../../lambda/shared/unicode-table';
import { parseLabel, parseLetter, parseVerdict, StrictJsonError } from '../../lambda/shared/scoring';
import { ROOT, startStubServer, type StubServer } from './helpers';

const CORPUS = path.join(ROOT, 'containers', 'eval', 'conformance');

function vectors<T>(name: string): T {
  return JSON.parse(readFileSync(path.join(CORPUS, name), 'utf8')) as T;
}

interface LoaderCase {
  readonly name: string;
  readonly text: string;
  readonly rows: readonly string[];
  readonly quarantined_lines: readonly number[];
}
const LOADERS = vectors<{ labels: string[]; cases: LoaderCase[] }>('loaders.json');

for (const c of LOADERS.cases) {
  test(`JSONL loader follows the corpus: ${c.name}`, () => {
    // Through the bytes, as the Plan Lambda reads the items file.
    const text = new TextDecoder('utf-8', { fatal: true }).decode(new TextEncoder().encode(c.text));
    const load = loadRows(text, 'classification', LOADERS.labels, 'items.jsonl');
    assert.deepEqual(
      load.rows.map((r) => r.id),
      c.rows,
    );
    assert.deepEqual(
      load.quarantined.map((q) => q.line),
      c.quarantined_lines,
    );
  });
}

test('loadRows drops a BOM left in the text it is given, like the Python loader', () => {
  const row = JSON.stringify({ id: 'c0', text: 't', label: 'billing' });
  assert.deepEqual(
    loadRows(`\ufeff${row}\n`, 'classification', LOADERS.labels, 'items.jsonl').rows.map((r) => r.id),
    ['c0'],
  );
});

interface TokenCountCase {
  readonly name: string;
  readonly value?: unknown;
  readonly count?: number;
  readonly error?: string;
}
interface UnexpectedCase {
  readonly name: string;
  readonly type: string;
  readonly message: string;
  readonly error: string;
}
const PROVIDERS = vectors<{ token_counts: TokenCountCase[]; unexpected: UnexpectedCase[] }>('providers.json');

for (const c of PROVIDERS.token_counts) {
  test(`token counts follow the corpus: ${c.name}`, () => {
    if (c.error !== undefined) {
      assert.throws(
        () => tokenCount(c.value, 'openai: usage.prompt_tokens'),
        (err: Error) => err instanceof PermanentError && err.message === c.error,
      );
    } else {
      assert.equal(tokenCount(c.value, 'openai: usage.prompt_tokens'), c.count);
    }
  });
}

for (const c of PROVIDERS.unexpected) {
  test(`unexpected exceptions follow the corpus: ${c.name}`, async () => {
    const kinds: Record<string, new (message: string) => Error> = { TypeError };
    const Kind = kinds[c.type] ?? Error;
    await assert.rejects(
      callWithRetry(() => Promise.reject(new Kind(c.message)), {
        maxAttempts: 2,
        baseDelayMs: 0,
        maxDelayMs: 0,
        sleep: async () => {},
      }),
      (err: Error) => err instanceof RetriesExhaustedError && err.message === c.error,
    );
  });
}

interface EncloseCase {
  readonly name: string;
  readonly candidate: string;
  readonly max_chars: number;
  readonly text: string;
  readonly chars: number;
  readonly truncated: boolean;
}
interface VerdictCase {
  readonly name: string;
  readonly reply: string;
  readonly candidate: string;
  readonly verdict?: string;
  readonly error?: string;
  readonly error_prefix?: string;
}
const JUDGE = vectors<{
  enclose: EncloseCase[];
  prompt: { question: string; reference_answer: string; candidate: string; prompt: string };
  verdicts: VerdictCase[];
}>('judge.json');

for (const c of JUDGE.enclose) {
  test(`the judge candidate is enclosed as the corpus says: ${c.name}`, () => {
    const enclosed = encloseCandidate(c.candidate, c.max_chars);
    assert.deepEqual(enclosed, { text: c.text, chars: c.chars, truncated: c.truncated });
  });
}

test('the judge prompt is the corpus prompt', () => {
  const c = JUDGE.prompt;
  const candidate = encloseCandidate(c.candidate).text;
  assert.equal(
    render(JUDGE_PROMPT, { question: c.question, reference_answer: c.reference_answer, candidate_answer: candidate }),
    c.prompt,
  );
});

for (const c of JUDGE.verdicts) {
  test(`verdicts parse as the corpus says: ${c.name}`, () => {
    if (c.verdict !== undefined) {
      assert.equal(parseVerdict(c.reply, c.candidate).verdict, c.verdict);
      return;
    }
    assert.throws(
      () => parseVerdict(c.reply, c.candidate),
      (err: Error) =>
        err instanceof StrictJsonError &&
        (c.error !== undefined ? err.message === c.error : err.message.startsWith(c.error_prefix ?? '')),
    );
  });
}

const LETTERS = vectors<{ cases: Array<{ name: string; reply: string; letter: string | null }> }>('letters.json');

for (const c of LETTERS.cases) {
  test(`letters parse as the corpus says: ${c.name}`, () => {
    assert.equal(parseLetter(c.reply), c.letter);
  });
}

const RECORDS = vectors<{
  cases: Array<{ name: string; record: ItemResult; line: string }>;
  numbers: Array<{ value: number; text: string }>;
}>('records.json');

for (const c of RECORDS.cases) {
  test(`records serialise as the corpus says: ${c.name}`, () => {
    assert.equal(recordLine(c.record), c.line);
  });
}

test('numbers print as the corpus says (the texts are JSON.stringify)', () => {
  assert.deepEqual(
    RECORDS.numbers.map((n) => JSON.stringify(n.value)),
    RECORDS.numbers.map((n) => n.text),
  );
});

const TEMPLATES = vectors<{
  problems: Array<{ name: string; task: Task; template: string; problems: string[] }>;
  renders: Array<{ name: string; template: string; values: Record<string, string>; text: string }>;
}>('templates.json');

for (const c of TEMPLATES.problems) {
  test(`template problems follow the corpus: ${c.name}`, () => {
    assert.deepEqual(
      templateProblems({ id: 'p', version: '1', template: c.template }, c.task, 'benchmark.json'),
      c.problems,
    );
  });
}

for (const c of TEMPLATES.renders) {
  test(`templates render as the corpus says: ${c.name}`, () => {
    assert.equal(render({ id: 'p', version: '1', template: c.template }, c.values), c.text);
  });
}

const UNICODE = vectors<{
  tokens: Array<{ name: string; text: string; tokens: string[] }>;
  casefold: Array<{ name: string; text: string; fold: string }>;
  rouge_l: Array<{ name: string; reference: string; prediction: string; score: number }>;
  labels: Array<{ name: string; reply: string; labels: string[]; label: string | null }>;
  repr: Array<{ name: string; text: string; repr: string }>;
}>('unicode.json');

for (const c of UNICODE.tokens) {
  test(`tokens follow the corpus: ${c.name}`, () => {
    assert.deepEqual(tokenize(c.text), c.tokens);
  });
}

for (const c of UNICODE.casefold) {
  test(`casefold follows the corpus: ${c.name}`, () => {
    assert.equal(casefold(c.text), c.fold);
  });
}

for (const c of UNICODE.rouge_l) {
  test(`ROUGE-L follows the corpus: ${c.name}`, () => {
    assert.equal(rougeL(c.reference, c.prediction), c.score);
  });
}

for (const c of UNICODE.labels) {
  test(`labels parse as the corpus says: ${c.name}`, () => {
    assert.equal(parseLabel(c.reply, c.labels), c.label);
  });
}

for (const c of UNICODE.repr) {
  test(`repr follows the corpus: ${c.name}`, () => {
    assert.equal(pyRepr(c.text), c.repr);
  });
}

interface LimitCase {
  readonly name: string;
  readonly floor: number;
  readonly ceiling: number;
  readonly events: ReadonlyArray<readonly [string, number?]>;
  readonly expect: ReadonlyArray<readonly [number, number, number]>;
}
interface RetryOutcome {
  readonly ok?: string;
  readonly throttle?: string;
  readonly retry_after_s?: number;
  readonly transient?: string;
  readonly permanent?: string;
}
interface RetryCase {
  readonly name: string;
  readonly policy: {
    max_attempts: number;
    max_throttled_attempts: number;
    base_delay_s: number;
    max_delay_s: number;
  };
  readonly random: number;
  readonly outcomes: readonly RetryOutcome[];
  readonly waits_s: readonly number[];
  readonly attempts?: number;
  readonly error?: string;
}
const CONCURRENCY = vectors<{ limits: LimitCase[]; retries: RetryCase[] }>('concurrency.json');

for (const c of CONCURRENCY.limits) {
  test(`the adaptive limit follows the corpus: ${c.name}`, () => {
    const limit = new AimdLimit(c.floor, c.ceiling);
    c.events.forEach(([event, ticket], i) => {
      if (event === 'start') {
        assert.ok(limit.canStart(), `the vector starts a call beyond the limit at event ${i}`);
        limit.start();
      } else if (event === 'ok') limit.succeeded(ticket as number);
      else if (event === 'throttle') limit.throttled(ticket as number);
      else limit.failed(ticket as number);
      const [expectedLimit, allowed, inFlight] = c.expect[i] as readonly [number, number, number];
      assert.deepEqual([limit.allowed, limit.inFlight], [allowed, inFlight], `event ${i}`);
      assert.ok(Math.abs(limit.limit - expectedLimit) < 1e-9, `event ${i}: limit ${limit.limit} != ${expectedLimit}`);
    });
  });
}

for (const c of CONCURRENCY.retries) {
  test(`throttle retries follow the corpus: ${c.name}`, async () => {
    const outcomes = [...c.outcomes];
    const waits: number[] = [];
    const call = (): Promise<string> => {
      const o = outcomes.shift();
      if (!o) throw new Error('the call went on past the vector');
      if (o.ok !== undefined) return Promise.resolve(o.ok);
      if (o.throttle !== undefined)
        throw new ThrottledError(o.throttle, o.retry_after_s === undefined ? null : o.retry_after_s * 1000);
      if (o.transient !== undefined) throw new TransientError(o.transient);
      throw new PermanentError(o.permanent ?? '');
    };
    const policy = {
      maxAttempts: c.policy.max_attempts,
      maxThrottledAttempts: c.policy.max_throttled_attempts,
      baseDelayMs: c.policy.base_delay_s * 1000,
      maxDelayMs: c.policy.max_delay_s * 1000,
      sleep: (ms: number) => {
        waits.push(ms / 1000);
        return Promise.resolve();
      },
      random: () => c.random,
    };
    if (c.error !== undefined) {
      await assert.rejects(callWithRetry(call, policy), (err: unknown) => {
        assert.ok(err instanceof RetriesExhaustedError);
        assert.equal(err.message, c.error);
        return true;
      });
    } else {
      assert.equal((await callWithRetry(call, policy)).attempts, c.attempts);
    }
    assert.equal(waits.length, c.waits_s.length);
    waits.forEach((w, i) => assert.ok(Math.abs(w - (c.waits_s[i] as number)) < 1e-9, `wait ${i}: ${w}`));
    assert.equal(outcomes.length, 0, "the call stopped before the vector's last outcome");
  });
}

interface HttpCase {
  readonly name: string;
  readonly status: number;
  readonly retry_after?: string;
  readonly body: string;
  readonly kind: string;
  readonly message: string;
  readonly retry_after_s: number | null;
}
interface BodyCase {
  readonly name: string;
  readonly body: string;
  readonly kind: string;
  readonly message: string;
}
interface TransportCase {
  readonly name: string;
  readonly failure: 'refused' | 'timeout';
  readonly timeout_s?: number;
  readonly message: string;
}
const PROVIDER_FAILURES = vectors<{ http: HttpCase[]; bodies: BodyCase[]; transport: TransportCase[] }>(
  'providers.json',
);

async function generateError(provider: Provider): Promise<ProviderError> {
  try {
    await provider.generate('Hi', { temperature: 0, max_tokens: 8, top_p: 1, seed: 0, stop: [] });
  } catch (err) {
    assert.ok(err instanceof ProviderError, `not a provider error: ${String(err)}`);
    return err;
  }
  throw new Error('the call succeeded');
}

describe('provider failures are recorded as the corpus says', () => {
  let stub: StubServer;
  before(async () => {
    stub = await startStubServer();
  });
  after(() => stub.close());

  for (const c of PROVIDER_FAILURES.http) {
    test(`HTTP: ${c.name}`, async () => {
      stub.reset({
        status: c.status,
        headers: c.retry_after === undefined ? {} : { 'retry-after': c.retry_after },
        body: c.body,
      });
      const error = await generateError(new OpenAICompatibleProvider(stub.url, 'm', 'r1'));
      assert.deepEqual([error.name, error.message], [c.kind, c.message]);
      if (error instanceof ThrottledError)
        assert.equal(error.retryAfterMs, c.retry_after_s === null ? null : c.retry_after_s * 1000);
    });
  }
  for (const c of PROVIDER_FAILURES.bodies) {
    test(`reply: ${c.name}`, async () => {
      stub.reset({ status: 200, body: c.body });
      const error = await generateError(new OpenAICompatibleProvider(stub.url, 'm', 'r1'));
      assert.deepEqual([error.name, error.message], [c.kind, c.message]);
    });
  }
  for (const c of PROVIDER_FAILURES.transport) {
    test(`transport: ${c.name}`, async () => {
      // Real sockets: what fetch raises is what is mapped.
      const listener = createNetServer();
      const held: Socket[] = [];
      listener.on('connection', (socket) => held.push(socket)); // accepted, never answered
      await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
      const { port } = listener.address() as AddressInfo;
      if (c.failure === 'refused') await new Promise((resolve) => listener.close(resolve));
      try {
        const provider = new OpenAICompatibleProvider(`http://127.0.0.1:${port}`, 'm', 'r1', (c.timeout_s ?? 5) * 1000);
        const error = await generateError(provider);
        assert.deepEqual([error.name, error.message], ['TransientError', c.message]);
      } finally {
        for (const socket of held) socket.destroy();
        if (c.failure !== 'refused') await new Promise((resolve) => listener.close(resolve));
      }
    });
  }
});

const SAGEMAKER_BODIES = vectors<{ sagemaker_bodies: Array<{ name: string; body: string; message: string }> }>(
  'providers.json',
).sagemaker_bodies;

for (const c of SAGEMAKER_BODIES) {
  test(`an unusable SageMaker reply is recorded as the corpus says: ${c.name}`, () => {
    assert.throws(
      () => tgiResponseText(c.body),
      (err: unknown) => err instanceof PermanentError && err.message === c.message,
    );
  });
}

const AWS_TRANSPORT = vectors<{
  aws_transport: Array<{ name: string; failure: 'refused' | 'timeout'; message: string }>;
}>('providers.json').aws_transport;

for (const c of AWS_TRANSPORT) {
  test(`an AWS SDK transport failure is recorded as the corpus says: ${c.name}`, async () => {
    // Real sockets through the AWS SDK, as the Python test goes through botocore.
    const listener = createNetServer();
    const held: Socket[] = [];
    listener.on('connection', (socket) => held.push(socket)); // accepted, never answered
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    const { port } = listener.address() as AddressInfo;
    if (c.failure === 'refused') await new Promise((resolve) => listener.close(resolve));
    const client = new SageMakerRuntimeClient({
      region: 'ap-south-2',
      endpoint: `http://127.0.0.1:${port}`,
      maxAttempts: 1,
      credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
      requestHandler: { connectionTimeout: 300, requestTimeout: 300, throwOnRequestTimeout: true },
    });
    try {
      const error = await generateError(new SageMakerEndpointProvider('ep', 'ep', 'r1', client));
      assert.deepEqual([error.name, error.message], ['TransientError', c.message]);
    } finally {
      client.destroy();
      for (const socket of held) socket.destroy();
      if (c.failure !== 'refused') await new Promise((resolve) => listener.close(resolve));
    }
  });
}

interface BedrockReplyCase {
  readonly name: string;
  readonly response: Parameters<typeof converseText>[0];
  readonly text?: string;
  readonly message?: string;
}
for (const c of vectors<{ bedrock_replies: BedrockReplyCase[] }>('providers.json').bedrock_replies) {
  test(`a Bedrock reply is read as the corpus says: ${c.name}`, () => {
    if (c.message === undefined) assert.equal(converseText(c.response), c.text);
    else
      assert.throws(
        () => converseText(c.response),
        (err: unknown) => err instanceof PermanentError && err.message === c.message,
      );
  });
}
