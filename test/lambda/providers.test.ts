/**
 * The real-endpoint providers (OpenAI-compatible, Bedrock Converse, SageMaker) with their real
 * clients (fetch, AWS SDK v3) against real local servers: a node HTTP stub standing in for the
 * endpoint, and moto for SageMaker InvokeEndpoint. Checks request shaping, usage mapping, the
 * error taxonomy and retries, and that Python's providers (`dapt_eval.providers`) read the same
 * replies into the same generations and the same error messages.
 */
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { BedrockRuntimeClient } from '@aws-sdk/client-bedrock-runtime';
import { SageMakerRuntimeClient } from '@aws-sdk/client-sagemaker-runtime';
import type { Decoding } from '../../lambda/shared/cache-key';
import { runShard } from '../../lambda/shared/engine';
import type { RunContext } from '../../lambda/shared/evaluate';
import { BedrockConverseProvider, SageMakerEndpointProvider } from '../../lambda/shared/providers/aws';
import { buildProvider, MODEL_REQUEST_TIMEOUT_MS } from '../../lambda/shared/providers/factory';
import { OpenAICompatibleProvider } from '../../lambda/shared/providers/openai';
import type { Provider, Usage } from '../../lambda/shared/providers/types';
import { callWithRetry, ProviderError, ThrottledError } from '../../lambda/shared/retry';
import { MemoryResultStore } from '../../lambda/shared/store';
import { type Moto, python, pythonAsync, startMoto, startStubServer, type StubReply, type StubServer } from './helpers';

const SAMPLED: Decoding = { temperature: 0.7, max_tokens: 64, top_p: 0.9, seed: 7, stop: ['\n\n', 'END'] };
const GREEDY: Decoding = { temperature: 0, max_tokens: 256, top_p: 1, seed: 0, stop: [] };
const DUMMY_CREDENTIALS = { accessKeyId: 'testing', secretAccessKey: 'testing' };
const BEDROCK_MODEL = 'anthropic.claude-3-5-haiku-20241022-v1:0';
const ENDPOINT = 'dapt-exp-7b-ckpt1200';

let stub: StubServer;
/** The Bedrock Runtime client speaks HTTP/2 by default (boto3 HTTP/1.1, hence two stubs). */
let stubH2: StubServer;
let moto: Moto;

before(async () => {
  stub = await startStubServer();
  stubH2 = await startStubServer('http2');
  moto = await startMoto();
});

after(async () => {
  await stub?.close();
  await stubH2?.close();
  await moto?.stop();
});

/** What one `generate` call came to: a generation, or the error type and message. */
interface Outcome {
  readonly text?: string;
  readonly usage?: Usage;
  readonly latency_ms?: number;
  readonly error?: string;
  readonly message?: string;
}

/** One request as the endpoint saw it: method, decoded path, JSON body. */
function seen(server: StubServer): Array<{ method: string; path: string; body: unknown }> {
  return server.requests.map((r) => ({
    method: r.method,
    path: decodeURIComponent(r.path),
    body: JSON.parse(r.body) as unknown,
  }));
}

async function tsOutcomes(provider: Provider, prompts: readonly string[], decoding: Decoding): Promise<Outcome[]> {
  const out: Outcome[] = [];
  for (const prompt of prompts) {
    try {
      const g = await provider.generate(prompt, decoding);
      out.push({
        text: g.text,
        usage: { input_tokens: g.usage.input_tokens, output_tokens: g.usage.output_tokens },
        latency_ms: g.latencyMs,
      });
    } catch (err) {
      if (!(err instanceof ProviderError)) throw err;
      out.push({ error: err.name, message: err.message });
    }
  }
  return out;
}

/** The same prompts through the Python provider of `kind`, against the same server (its own client and retry settings). */
function pyOutcomes(
  kind: 'openai' | 'bedrock' | 'sagemaker',
  url: string,
  prompts: readonly string[],
  decoding: Decoding,
): Promise<Outcome[]> {
  return pythonAsync<Outcome[]>(
    `import json, sys
from dapt_eval.providers.base import DecodingParams, ProviderError
import boto3
from botocore.config import Config
def client(service):
    # dapt_eval's make_client sets retries max_attempts=1, which botocore reads as one *retry*
    # (two attempts a call); total_max_attempts=1 is the single attempt both runners intend.
    return boto3.client(service, region_name="us-east-1", config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))
req = json.load(sys.stdin)
if req["kind"] == "openai":
    from dapt_eval.providers.openai_compat import OpenAICompatibleProvider
    provider = OpenAICompatibleProvider(req["url"], req["model_id"])
elif req["kind"] == "bedrock":
    from dapt_eval.providers.aws import BedrockConverseProvider
    provider = BedrockConverseProvider(req["model_id"], client=client("bedrock-runtime"))
else:
    from dapt_eval.providers.aws import SageMakerEndpointProvider
    provider = SageMakerEndpointProvider(req["endpoint_name"], req["model_id"], client=client("sagemaker-runtime"))
out = []
for prompt in req["prompts"]:
    try:
        g = provider.generate(prompt, DecodingParams(**req["decoding"]))
        out.append({"text": g.text, "usage": {"input_tokens": g.usage.input_tokens, "output_tokens": g.usage.output_tokens}, "latency_ms": g.latency_ms})
    except ProviderError as err:
        out.append({"error": type(err).__name__, "message": str(err)})
print(json.dumps(out))`,
    { kind, url, prompts, decoding, model_id: kind === 'bedrock' ? BEDROCK_MODEL : 'dapt-7b', endpoint_name: ENDPOINT },
    {
      // boto3 reads service-specific endpoints from the environment.
      AWS_ENDPOINT_URL_BEDROCK_RUNTIME: url,
      AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME: url,
      AWS_ACCESS_KEY_ID: DUMMY_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: DUMMY_CREDENTIALS.secretAccessKey,
    },
  );
}

/**
 * Runs `replies` through the TypeScript provider and then through Python's, and checks both sent
 * the same requests and made the same of every reply. Latency is compared only when the reply
 * carries it (Bedrock `metrics.latencyMs`); otherwise each side measures its own.
 */
async function assertParity(
  kind: 'openai' | 'bedrock' | 'sagemaker',
  provider: Provider,
  replies: StubReply[],
  decoding: Decoding,
  options: { readonly latencyFromReply?: boolean; readonly tsServer?: StubServer } = {},
): Promise<Outcome[]> {
  const latencyFromReply = options.latencyFromReply ?? false;
  const tsServer = options.tsServer ?? stub;
  const prompts = replies.map((_, i) => `Question ${i}: where is the "billing" page? — ß`);
  tsServer.reset(...replies);
  const ts = await tsOutcomes(provider, prompts, decoding);
  const tsRequests = seen(tsServer);
  stub.reset(...replies);
  const py = await pyOutcomes(kind, stub.url, prompts, decoding);
  const strip = (o: Outcome): Outcome => {
    if (latencyFromReply || o.latency_ms === undefined) return o;
    assert.ok(o.latency_ms >= 0);
    return { ...o, latency_ms: -1 };
  };
  assert.deepEqual(ts.map(strip), py.map(strip));
  assert.deepEqual(tsRequests, seen(stub));
  assert.equal(tsRequests.length, replies.length, 'one request per call: no client-side retries');
  return ts;
}

describe('OpenAI-compatible provider', () => {
  const chat = (content: string | null, usage?: Record<string, number>): StubReply => ({
    body: {
      id: 'c1',
      object: 'chat.completion',
      choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
      ...(usage ? { usage } : {}),
    },
  });

  test('sends one user message with the decoding, maps choices and usage, and classifies errors like Python', async () => {
    const provider = new OpenAICompatibleProvider(`${stub.url}/`, 'dapt-7b', 'ckpt-1200');
    const outcomes = await assertParity(
      'openai',
      provider,
      [
        chat('Settings > Billing', { prompt_tokens: 17, completion_tokens: 4, total_tokens: 21 }),
        chat(null),
        { status: 429, headers: { 'retry-after': '3' }, body: { error: { message: 'rate limited' } } },
        { status: 500, body: 'engine overloaded — retry' },
        { status: 408, body: '' },
        { status: 400, body: { error: { message: "'max_tokens' too large" } } },
        { status: 200, body: '<html>proxy error</html>' },
      ],
      SAMPLED,
    );
    assert.deepEqual(
      outcomes.map((o) => o.error ?? o.text),
      [
        'Settings > Billing',
        '',
        'ThrottledError',
        'TransientError',
        'TransientError',
        'PermanentError',
        'TransientError',
      ],
    );
    assert.deepEqual(outcomes[0]?.usage, { input_tokens: 17, output_tokens: 4 });
    assert.deepEqual(outcomes[1]?.usage, { input_tokens: 0, output_tokens: 0 });
    assert.equal(outcomes[3]?.message, "openai: /v1/chat/completions returned HTTP 500: 'engine overloaded — retry'");

    // Malformed replies are permanent on both sides (the messages differ: Python prints a dict repr).
    stub.reset({ body: { choices: [{ message: { role: 'assistant' } }] } });
    await assert.rejects(
      provider.generate('Hi', GREEDY),
      (err: Error) =>
        err.name === 'PermanentError' && err.message.startsWith('openai: response lacks choices[0].message.content'),
    );

    stub.reset(chat('ok'));
    await provider.generate('Hi', GREEDY);
    const [request] = stub.requests;
    assert.equal(request?.path, '/v1/chat/completions', 'a trailing slash on base_url is dropped');
    assert.equal(request?.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(request?.body ?? ''), {
      model: 'dapt-7b',
      messages: [{ role: 'user', content: 'Hi' }],
      temperature: 0,
      max_tokens: 256,
      top_p: 1,
      seed: 0,
    });
  });

  test('a 429 is retried no sooner than its Retry-After, then succeeds', async () => {
    const provider = new OpenAICompatibleProvider(stub.url, 'dapt-7b', 'r1');
    stub.reset(
      { status: 429, headers: { 'retry-after': '2' }, body: 'slow down' },
      chat('Paris', { prompt_tokens: 5, completion_tokens: 1 }),
    );
    const slept: number[] = [];
    const result = await callWithRetry(() => provider.generate('Capital of France?', GREEDY), {
      maxAttempts: 3,
      baseDelayMs: 10,
      maxDelayMs: 100,
      random: () => 0.5,
      sleep: async (ms) => {
        slept.push(ms);
      },
    });
    assert.equal(result.value.text, 'Paris');
    assert.equal(result.attempts, 2);
    assert.deepEqual(slept, [2000], 'the backoff (5 ms) is raised to the 2 s the server asked for');
    assert.equal(stub.requests.length, 2);

    stub.reset({ status: 429, headers: { 'retry-after': '1.5' }, body: '' });
    await assert.rejects(
      provider.generate('x', GREEDY),
      (err: unknown) => err instanceof ThrottledError && err.retryAfterMs === 1500,
    );
  });

  test('a server that keeps failing ends as an errored record carrying the message', async () => {
    const ctx: RunContext = {
      run_id: 'openai-500',
      benchmark: 'support-intents',
      benchmark_version: '1',
      task: 'classification',
      prompt: { id: 'classify', version: '1', template: 'Labels: {labels}\nText: {text}\nLabel:' },
      labels: ['billing', 'login'],
      mode: 'label',
      decoding: GREEDY,
    };
    const store = new MemoryResultStore();
    stub.reset({ status: 500, body: { error: 'CUDA out of memory' } });
    const counts = await runShard(ctx, [{ model: 0, item: { id: 'i1', text: 'I cannot log in', label: 'login' } }], {
      store,
      models: [new OpenAICompatibleProvider(stub.url, 'dapt-7b', 'r1')],
      judge: null,
      retry: { maxAttempts: 3, baseDelayMs: 0, maxDelayMs: 0 },
      concurrency: 1,
      providerSlots: { openai: 1 },
    });
    assert.deepEqual(counts, { ok: 0, errored: 1, unparseable: 0, skipped: 0 });
    const [stored] = [...store.objects.values()];
    const record = JSON.parse(stored?.line ?? '') as Record<string, unknown>;
    assert.equal(record.status, 'errored');
    assert.equal(
      record.error,
      'TransientError after 3 attempt(s): openai: /v1/chat/completions returned HTTP 500: \'{"error":"CUDA out of memory"}\'',
    );
    assert.equal(record.attempts, 3);
    assert.equal(record.prediction, null);
    assert.equal(record.correct, null);
    assert.equal(stub.requests.length, 3);
  });

  test('an unreachable server is a transient error naming the path', async () => {
    const provider = new OpenAICompatibleProvider('http://127.0.0.1:9', 'dapt-7b', 'r1');
    await assert.rejects(
      provider.generate('x', GREEDY),
      (err: Error) =>
        err.name === 'TransientError' && err.message.startsWith('openai: transport error calling /v1/chat/completions'),
    );
  });
});

describe('Bedrock Converse provider', () => {
  const converse = (texts: string[], inputTokens: number, outputTokens: number, latencyMs?: number): StubReply => ({
    body: {
      output: { message: { role: 'assistant', content: texts.map((text) => ({ text })) } },
      usage: { inputTokens, outputTokens, totalTokens: inputTokens + outputTokens },
      stopReason: 'end_turn',
      ...(latencyMs === undefined ? {} : { metrics: { latencyMs } }),
    },
  });
  const awsError = (status: number, code: string, message: string): StubReply => ({
    status,
    headers: { 'x-amzn-errortype': `${code}:http://internal.amazon.com/coral/com.amazon.bedrock/` },
    body: { message },
  });
  const client = (): BedrockRuntimeClient =>
    new BedrockRuntimeClient({
      endpoint: stubH2.url,
      region: 'us-east-1',
      credentials: DUMMY_CREDENTIALS,
      maxAttempts: 1,
    });

  test('sends modelId in the path, one user turn and inferenceConfig; maps text, usage and errors like Python', async () => {
    const provider = new BedrockConverseProvider(BEDROCK_MODEL, 'unpinned', client());
    const outcomes = await assertParity(
      'bedrock',
      provider,
      [
        converse(['Open Settings, ', 'then Billing.'], 412, 9, 321),
        converse([], 3, 0, 5),
        awsError(400, 'ThrottlingException', 'Too many requests, please wait before trying again.'),
        awsError(429, 'ThrottlingException', 'Rate exceeded'),
        awsError(429, 'ModelNotReadyException', 'Model is not ready'),
        awsError(500, 'InternalServerException', 'Internal failure'),
        awsError(503, 'ServiceUnavailableException', 'Service unavailable'),
        awsError(400, 'ValidationException', 'The provided model identifier is invalid.'),
        awsError(403, 'AccessDeniedException', 'not authorized to invoke this model'),
      ],
      SAMPLED,
      { latencyFromReply: true, tsServer: stubH2 },
    );
    assert.deepEqual(outcomes.slice(0, 2), [
      { text: 'Open Settings, then Billing.', usage: { input_tokens: 412, output_tokens: 9 }, latency_ms: 321 },
      { text: '', usage: { input_tokens: 3, output_tokens: 0 }, latency_ms: 5 },
    ]);
    assert.deepEqual(
      outcomes.slice(2).map((o) => [o.error, o.message]),
      [
        ['ThrottledError', 'bedrock: ThrottlingException: Too many requests, please wait before trying again.'],
        ['ThrottledError', 'bedrock: ThrottlingException: Rate exceeded'],
        ['TransientError', 'bedrock: ModelNotReadyException: Model is not ready'],
        ['TransientError', 'bedrock: InternalServerException: Internal failure'],
        ['TransientError', 'bedrock: ServiceUnavailableException: Service unavailable'],
        ['PermanentError', 'bedrock: ValidationException: The provided model identifier is invalid.'],
        ['PermanentError', 'bedrock: AccessDeniedException: not authorized to invoke this model'],
      ],
    );
    const [first] = seen(stubH2);
    assert.deepEqual(first, {
      method: 'POST',
      path: `/model/${BEDROCK_MODEL}/converse`,
      body: {
        messages: [{ role: 'user', content: [{ text: 'Question 0: where is the "billing" page? — ß' }] }],
        inferenceConfig: { maxTokens: 64, temperature: 0.7, topP: 0.9, stopSequences: ['\n\n', 'END'] },
      },
    });
  });

  test('greedy decoding sends no stopSequences and no seed; latency is measured when the reply has none', async () => {
    const provider = new BedrockConverseProvider(BEDROCK_MODEL, 'unpinned', client());
    stubH2.reset(converse(['ok'], 1, 1));
    const g = await provider.generate('Hi', GREEDY);
    assert.ok(g.latencyMs > 0);
    assert.deepEqual(JSON.parse(stubH2.requests[0]?.body ?? ''), {
      messages: [{ role: 'user', content: [{ text: 'Hi' }] }],
      inferenceConfig: { maxTokens: 256, temperature: 0, topP: 1 },
    });
  });

  test('a reply without output.message.content is a permanent error', async () => {
    const provider = new BedrockConverseProvider(BEDROCK_MODEL, 'unpinned', client());
    stubH2.reset({ body: { usage: { inputTokens: 1, outputTokens: 0, totalTokens: 1 }, stopReason: 'end_turn' } });
    await assert.rejects(
      provider.generate('Hi', GREEDY),
      (err: Error) =>
        err.name === 'PermanentError' && err.message.startsWith('bedrock: response lacks output.message.content'),
    );
  });

  test('the factory client makes one attempt per call (the retry layer is the only one)', async () => {
    const saved = { ...process.env };
    Object.assign(process.env, {
      AWS_ENDPOINT_URL_BEDROCK_RUNTIME: stubH2.url,
      AWS_ACCESS_KEY_ID: 'testing',
      AWS_SECRET_ACCESS_KEY: 'testing',
    });
    try {
      // A region no other test uses, so the factory builds (and caches) its client now, with this environment.
      const provider = buildProvider({
        provider: 'bedrock',
        model_id: BEDROCK_MODEL,
        revision: 'unpinned',
        region: 'eu-west-3',
      });
      stubH2.reset(awsError(400, 'ThrottlingException', 'slow down'));
      await assert.rejects(provider.generate('Hi', GREEDY), ThrottledError);
      assert.equal(stubH2.requests.length, 1);
      assert.ok(
        stubH2.requests[0]?.headers.authorization?.includes('/eu-west-3/bedrock/aws4_request'),
        'signed for the spec region',
      );
    } finally {
      process.env = saved;
    }
  });
});

describe('SageMaker endpoint provider', () => {
  const tgi = (text: string, prefill: number, generated: number): StubReply => ({
    body: [
      {
        generated_text: text,
        details: {
          finish_reason: 'eos_token',
          generated_tokens: generated,
          prefill: Array.from({ length: prefill }, (_, id) => ({ id, text: 't' })),
        },
      },
    ],
  });
  const awsError = (status: number, code: string, message: string): StubReply => ({
    status,
    headers: { 'x-amzn-errortype': code },
    body: { message },
  });

  test('sends the TGI request for the decoding, reads TGI and LMI replies, and classifies errors like Python', async () => {
    const provider = new SageMakerEndpointProvider(
      ENDPOINT,
      'dapt-7b',
      'ckpt-1200',
      new SageMakerRuntimeClient({
        endpoint: stub.url,
        region: 'us-east-1',
        credentials: DUMMY_CREDENTIALS,
        maxAttempts: 1,
      }),
    );
    for (const decoding of [SAMPLED, GREEDY]) {
      const outcomes = await assertParity(
        'sagemaker',
        provider,
        [
          tgi(' Settings > Billing', 23, 5),
          { body: { generated_text: 'LMI reply' } },
          awsError(400, 'ThrottlingException', 'Rate exceeded'),
          awsError(429, 'ModelNotReadyException', 'Model is still loading'),
          awsError(424, 'ModelError', 'Received server error (500) from primary'),
          awsError(503, 'ServiceUnavailable', 'Service unavailable'),
          awsError(404, 'ValidationError', 'Endpoint dapt-exp-7b-ckpt1200 not found.'),
        ],
        decoding,
      );
      assert.deepEqual(outcomes.slice(0, 2), [
        {
          text: ' Settings > Billing',
          usage: { input_tokens: 23, output_tokens: 5 },
          latency_ms: outcomes[0]?.latency_ms,
        },
        { text: 'LMI reply', usage: { input_tokens: 0, output_tokens: 0 }, latency_ms: outcomes[1]?.latency_ms },
      ]);
      assert.deepEqual(
        outcomes.slice(2).map((o) => o.error),
        ['ThrottledError', 'TransientError', 'PermanentError', 'TransientError', 'PermanentError'],
      );
      assert.equal(outcomes[3]?.message, 'sagemaker: ModelNotReadyException: Model is still loading');
    }
    // The last request of the GREEDY pass: TGI rejects temperature 0, so greedy is do_sample false.
    const request = stub.requests.at(-1);
    assert.equal(decodeURIComponent(request?.path ?? ''), `/endpoints/${ENDPOINT}/invocations`);
    assert.equal(request?.headers['content-type'], 'application/json');
    assert.equal(request?.headers.accept, 'application/json');
    assert.deepEqual(JSON.parse(request?.body ?? '').parameters, {
      max_new_tokens: 256,
      return_full_text: false,
      seed: 0,
      details: true,
      do_sample: false,
    });
  });

  test('an inference component (base model or adapter) is named in the request, as boto3 names it', async () => {
    const client = new SageMakerRuntimeClient({
      endpoint: stub.url,
      region: 'us-east-1',
      credentials: DUMMY_CREDENTIALS,
      maxAttempts: 1,
    });
    const provider = new SageMakerEndpointProvider(ENDPOINT, 'support-adapter', 'r1', client, 'dapt-exp-7b-support');
    stub.reset(tgi('ok', 1, 1));
    await provider.generate('Hi', GREEDY);
    const ours = stub.requests.at(-1)?.headers['x-amzn-sagemaker-inference-component'];
    assert.equal(ours, 'dapt-exp-7b-support');
    stub.reset(tgi('ok', 1, 1));
    await pythonAsync(
      `
import boto3, json
from dapt_eval.providers.aws import SageMakerEndpointProvider
from dapt_eval.providers.base import DecodingParams
client = boto3.client("sagemaker-runtime", region_name="us-east-1")
SageMakerEndpointProvider("${ENDPOINT}", "support-adapter", client=client, inference_component_name="dapt-exp-7b-support").generate("Hi", DecodingParams())
print(json.dumps({}))`,
      {},
      {
        AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME: stub.url,
        AWS_ACCESS_KEY_ID: DUMMY_CREDENTIALS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: DUMMY_CREDENTIALS.secretAccessKey,
      },
    );
    assert.equal(stub.requests.at(-1)?.headers['x-amzn-sagemaker-inference-component'], ours);
  });

  test('sampled decoding sends temperature, top_p and stop to TGI; a reply without generated_text is permanent', async () => {
    const provider = new SageMakerEndpointProvider(
      ENDPOINT,
      'dapt-7b',
      'r1',
      new SageMakerRuntimeClient({
        endpoint: stub.url,
        region: 'us-east-1',
        credentials: DUMMY_CREDENTIALS,
        maxAttempts: 1,
      }),
    );
    // Permanent on both sides; the messages differ (Python prints a dict repr).
    stub.reset({ body: { outputs: ['no generated_text here'] } });
    await assert.rejects(
      provider.generate('Hi', GREEDY),
      (err: Error) =>
        err.name === 'PermanentError' && err.message.startsWith("sagemaker: response lacks 'generated_text'"),
    );
    stub.reset(tgi('x', 1, 1));
    await provider.generate('Hi', SAMPLED);
    assert.deepEqual(JSON.parse(stub.requests[0]?.body ?? ''), {
      inputs: 'Hi',
      parameters: {
        max_new_tokens: 64,
        return_full_text: false,
        seed: 7,
        details: true,
        do_sample: true,
        temperature: 0.7,
        top_p: 0.9,
        stop: ['\n\n', 'END'],
      },
    });
  });

  test('against moto InvokeEndpoint (queued results), replies are read as Python reads them', async () => {
    const bodies = [
      JSON.stringify([
        { generated_text: 'Paris', details: { prefill: [{ id: 1 }, { id: 2 }, { id: 3 }], generated_tokens: 2 } },
      ]),
      JSON.stringify({ generated_text: 'Lyon — ß', details: null }),
      'not json',
    ];
    const queued = await fetch(`${moto.endpoint}/moto-api/static/sagemaker/endpoint-results`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        results: bodies.map((Body) => ({
          Body,
          ContentType: 'application/json',
          InvokedProductionVariant: 'AllTraffic',
          CustomAttributes: '',
        })),
      }),
    });
    assert.equal(queued.status, 201);
    const provider = new SageMakerEndpointProvider(
      ENDPOINT,
      'dapt-7b',
      'r1',
      new SageMakerRuntimeClient({ ...moto.clientConfig, maxAttempts: 1 }),
    );
    // moto hands out the next queued result for each distinct request, so each prompt differs.
    const outcomes = await tsOutcomes(provider, ['a', 'b', 'c'], GREEDY);
    const expected = python<Outcome[]>(
      `import json, sys
from dapt_eval.providers.aws import tgi_response_text
from dapt_eval.providers.base import ProviderError
out = []
for body in json.load(sys.stdin):
    try:
        text, usage = tgi_response_text(body.encode())
        out.append({"text": text, "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}})
    except ProviderError as err:
        out.append({"error": type(err).__name__})
print(json.dumps(out))`,
      bodies,
    );
    assert.deepEqual(
      outcomes.map((o) => (o.error ? { error: o.error } : { text: o.text, usage: o.usage })),
      expected,
    );
    assert.deepEqual(expected.slice(0, 2), [
      { text: 'Paris', usage: { input_tokens: 3, output_tokens: 2 } },
      { text: 'Lyon — ß', usage: { input_tokens: 0, output_tokens: 0 } },
    ]);
    assert.match(outcomes[2]?.message ?? '', /^sagemaker: endpoint returned non-JSON body: 'not json/);
  });
});

describe('model call timeouts (factory clients)', () => {
  test('an endpoint that accepts the connection and never answers fails as transient after the request timeout', async () => {
    // A server that takes the request and stays silent, as a hung model container does.
    const sockets: net.Socket[] = [];
    const silent = net.createServer((socket) => void sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as net.AddressInfo;
    const saved = { ...process.env };
    Object.assign(process.env, {
      AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME: `http://127.0.0.1:${port}`,
      AWS_ACCESS_KEY_ID: 'testing',
      AWS_SECRET_ACCESS_KEY: 'testing',
    });
    try {
      const spec = {
        provider: 'sagemaker',
        endpoint_name: ENDPOINT,
        model_id: 'dapt-7b',
        revision: 'r1',
        region: 'ap-south-2',
      } as const;
      const provider = buildProvider(spec, 300);
      const started = Date.now();
      await assert.rejects(
        provider.generate('Hi', GREEDY),
        (err: Error) =>
          err.name === 'TransientError' && err.message === 'sagemaker: timeout: no answer within the request timeout',
      );
      const waited = Date.now() - started;
      assert.ok(waited >= 250 && waited < 5_000, `gave up after ${waited} ms`);
      assert.ok(sockets.length >= 1, 'the request reached the server');
      assert.equal(MODEL_REQUEST_TIMEOUT_MS, 120_000, 'the default matches the Python providers');
    } finally {
      process.env = saved;
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});
