/**
 * An OpenAI-compatible HTTP server (vLLM, TGI's OpenAI route, LiteLLM) via `fetch`.
 * The worker Lambda runs in the eval subnets without internet access, so `base_url` must be
 * reachable from inside the VPC (e.g. a vLLM service behind an internal load balancer).
 */
import type { Decoding, ModelRef } from '../cache-key';
import { pyRepr, pySlice } from '../pytext';
import { parseRetryAfter, PermanentError, ThrottledError, TransientError } from '../retry';
import { type Generation, type Provider, tokenCount } from './types';

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
    try {
      response = await fetch(`${this.baseUrl}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw new TransientError(`openai: transport error calling ${path}: ${(err as Error).message}`);
    }
    const text = await response.text();
    if (response.status >= 400) {
      // Python's wording (`{response.text[:200]!r}`), so both runners record the same error.
      const detail = `openai: ${path} returned HTTP ${response.status}: ${pyRepr(pySlice(text, 200))}`;
      if (response.status === 429)
        throw new ThrottledError(detail, parseRetryAfter(response.headers.get('retry-after')));
      if (response.status >= 500 || response.status === 408 || response.status === 409)
        throw new TransientError(detail);
      throw new PermanentError(detail);
    }
    let data: {
      choices?: Array<{ message?: { content?: string | null } }>;
      usage?: { prompt_tokens?: unknown; completion_tokens?: unknown } | null;
    };
    try {
      data = JSON.parse(text) as typeof data;
    } catch {
      throw new TransientError(`openai: ${path} returned non-JSON body: ${pyRepr(pySlice(text, 200))}`);
    }
    const message = data.choices?.[0]?.message;
    // Like Python, a message without `content` is malformed; `content: null` is an empty reply.
    if (!message || !('content' in message))
      throw new PermanentError(`openai: response lacks choices[0].message.content: ${text.slice(0, 300)}`);
    const usage = data.usage ?? {};
    if (typeof usage !== 'object' || Array.isArray(usage))
      throw new PermanentError(`openai: usage is not an object: ${JSON.stringify(usage).slice(0, 200)}`);
    return {
      text: String(message.content ?? ''),
      usage: {
        input_tokens: tokenCount(usage.prompt_tokens, 'openai: usage.prompt_tokens'),
        output_tokens: tokenCount(usage.completion_tokens, 'openai: usage.completion_tokens'),
      },
      latencyMs: performance.now() - started,
    };
  }
}

const DEFAULT_TIMEOUT_MS = 120_000;
