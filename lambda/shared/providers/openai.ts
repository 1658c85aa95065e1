/**
 * An OpenAI-compatible HTTP server (vLLM, TGI's OpenAI route, LiteLLM) via `fetch`.
 * The worker Lambda runs in the eval subnets without internet access, so `base_url` must be
 * reachable from inside the VPC (e.g. a vLLM service behind an internal load balancer).
 */
import type { Decoding, ModelRef } from '../cache-key';
import { pyRepr, pySlice } from '../pytext';
import { parseRetryAfter, PermanentError, type ProviderError, ThrottledError, TransientError } from '../retry';
import { type Generation, type Provider, tokenCount, transportKind } from './types';

export class OpenAICompatibleProvider implements Provider {
  readonly identity: ModelRef;
  private readonly baseUrl: string;

  constructor(
    baseUrl: string,
    modelId: string,
    revision: string,
    private readonly timeoutMs = DEFAULT_TIMEOUT_MS,
  ) {
    this.identity = { provider: 'openai', model_id: modelId, revision };
    this.baseUrl = baseUrl.replace(/\/+$/, '');
  }

  async generate(prompt: string, d: Decoding): Promise<Generation> {
    const body = {
      model: this.identity.model_id,
      messages: [{ role: 'user', content: prompt }],
      temperature: d.temperature,
      max_tokens: d.max_tokens,
      top_p: d.top_p,
      seed: d.seed,
      ...(d.stop.length > 0 ? { stop: [...d.stop] } : {}),
    };
    const path = '/v1/chat/completions';
    const started = performance.now();
    let response: Response;
    let text: string;
    try {
      response = await fetch(`${this.baseUrl}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      text = await response.text();
    } catch (err) {
      throw transportError(path, err, this.timeoutMs);
    }
    const error = httpError(response.status, response.headers.get('retry-after'), text, path);
    if (error) throw error;
    const data = jsonObject(text, path) as {
      choices?: Array<{ message?: unknown }>;
      usage?: unknown;
    };
    const message = data.choices?.[0]?.message;
    // Like Python, a message without `content` is malformed; `content: null` is an empty reply.
    if (message === null || typeof message !== 'object' || !('content' in message))
      throw new PermanentError(`openai: response lacks choices[0].message.content: ${pyRepr(pySlice(text, 300))}`);
    const usage = (data.usage ?? {}) as { prompt_tokens?: unknown; completion_tokens?: unknown };
    if (typeof usage !== 'object' || Array.isArray(usage))
      throw new PermanentError(`openai: usage is not an object: ${pySlice(JSON.stringify(usage), 200)}`);
    return {
      text: String((message as { content: unknown }).content ?? ''),
      usage: {
        input_tokens: tokenCount(usage.prompt_tokens, 'openai: usage.prompt_tokens'),
        output_tokens: tokenCount(usage.completion_tokens, 'openai: usage.completion_tokens'),
      },
      latencyMs: performance.now() - started,
    };
  }
}

/**
 * Maps an HTTP status to the error taxonomy (null below 400), in Python's wording
 * (`{response.text[:200]!r}`), so both runners record the same error. Throttled: 429, and 503
 * with a Retry-After header (a server shedding load says when to come back); both carry
 * Retry-After when given. Vectors: `containers/eval/conformance/providers.json` ("http").
 */
export function httpError(status: number, retryAfter: string | null, text: string, path: string): ProviderError | null {
  if (status < 400) return null;
  const detail = `openai: ${path} returned HTTP ${status}: ${pyRepr(pySlice(text, 200))}`;
  if (status === 429 || (status === 503 && retryAfter !== null))
    return new ThrottledError(detail, parseRetryAfter(retryAfter));
  if (status >= 500 || status === 408 || status === 409) return new TransientError(detail);
  return new PermanentError(detail);
}

/**
 * A failure to get an answer, named by its kind only: a timeout, or `transportKind` (else
 * "connection failed"), as `dapt_eval.providers.openai_compat.transport_error` names it.
 */
export function transportError(path: string, err: unknown, timeoutMs: number): TransientError {
  if (err instanceof Error && err.name === 'TimeoutError')
    return new TransientError(`openai: timeout calling ${path}: no answer within ${timeoutMs / 1000} s`);
  return new TransientError(`openai: transport error calling ${path}: ${transportKind(err) ?? 'connection failed'}`);
}

/** A 2xx reply's body as a JSON object: not JSON is transient (a proxy's HTML page), JSON that is no object permanent. */
function jsonObject(text: string, path: string): Record<string, unknown> {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw new TransientError(`openai: ${path} returned non-JSON body: ${pyRepr(pySlice(text, 200))}`);
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data))
    throw new PermanentError(`openai: ${path} returned JSON ${jsonKind(data)}, expected an object`);
  return data as Record<string, unknown>;
}

function jsonKind(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

const DEFAULT_TIMEOUT_MS = 120_000;
