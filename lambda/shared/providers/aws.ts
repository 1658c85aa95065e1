/**
 * Amazon Bedrock (Converse) and SageMaker real-time endpoints (TGI/LMI JSON), as in
 * `dapt_eval.providers.aws`. SDK retries are off (`maxAttempts: 1`): `callWithRetry` is the only
 * retry layer, so throttles are handled and counted the same way for every provider.
 */
import { BedrockRuntimeClient, ConverseCommand, type ConverseCommandOutput } from '@aws-sdk/client-bedrock-runtime';
import { InvokeEndpointCommand, SageMakerRuntimeClient } from '@aws-sdk/client-sagemaker-runtime';
import type { Decoding, ModelRef } from '../cache-key';
import { pyRepr, pySlice } from '../pytext';
import { PermanentError, type ProviderError, ThrottledError, TransientError } from '../retry';
import { type Generation, type Provider, tokenCount, transportKind } from './types';

/**
 * Maps an AWS SDK error to throttled / transient / permanent, keeping code and message. The error
 * code decides first, as in Python (`ModelNotReadyException` comes with HTTP 429 but is transient);
 * codes Python does not know fall back on the status: 429 throttled, 5xx or none (no response) transient.
 */
export function classifyAwsError(service: string, err: unknown): ProviderError {
  const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
  const code = e.name ?? 'Unknown';
  const message = `${service}: ${code}: ${e.message ?? ''}`;
  const status = e.$metadata?.httpStatusCode;
  // No service answer: timeouts and connection failures are named by kind only, as Python's
  // `sdk_error` names botocore's (vectors: conformance/providers.json "aws_transport").
  if (status === undefined && code === 'TimeoutError')
    return new TransientError(`${service}: timeout: no answer within the request timeout`);
  const kind = status === undefined ? transportKind(err) : null;
  if (kind !== null) return new TransientError(`${service}: transport error: ${kind}`);
  if (THROTTLE_CODES.has(code)) return new ThrottledError(message);
  if (TRANSIENT_CODES.has(code)) return new TransientError(message);
  if (status === 429) return new ThrottledError(message);
  if (status === undefined || status >= 500) return new TransientError(message);
  return new PermanentError(message);
}

export class BedrockConverseProvider implements Provider {
  readonly identity: ModelRef;

  constructor(
    modelId: string,
    revision: string,
    private readonly client: BedrockRuntimeClient,
  ) {
    this.identity = { provider: 'bedrock', model_id: modelId, revision };
  }

  /** Bedrock has no seed parameter, so `decoding.seed` is not sent. */
  async generate(prompt: string, decoding: Decoding): Promise<Generation> {
    const started = performance.now();
    let response: ConverseCommandOutput;
    try {
      response = await this.client.send(
        new ConverseCommand({
          modelId: this.identity.model_id,
          messages: [{ role: 'user', content: [{ text: prompt }] }],
          inferenceConfig: {
            maxTokens: decoding.max_tokens,
            temperature: decoding.temperature,
            topP: decoding.top_p,
            ...(decoding.stop.length > 0 ? { stopSequences: [...decoding.stop] } : {}),
          },
        }),
      );
    } catch (err) {
      throw classifyAwsError('bedrock', err);
    }
    return {
      text: converseText(response),
      usage: {
        input_tokens: tokenCount(response.usage?.inputTokens, 'bedrock: usage.inputTokens'),
        output_tokens: tokenCount(response.usage?.outputTokens, 'bedrock: usage.outputTokens'),
      },
      latencyMs: response.metrics?.latencyMs ?? performance.now() - started,
    };
  }
}

/**
 * The text blocks of the assistant message, concatenated (tool-use blocks carry no text). Without
 * them the error names the stop reason, not the response: the SDK's object and boto3's dict differ,
 * the record's error must not (`containers/eval/conformance/providers.json`, "bedrock_replies").
 */
export function converseText(response: Pick<ConverseCommandOutput, 'output' | 'stopReason'>): string {
  const blocks = response.output?.message?.content;
  if (blocks === undefined || blocks === null)
    throw new PermanentError(
      `bedrock: response lacks output.message.content (stopReason: ${JSON.stringify(response.stopReason ?? null)})`,
    );
  return blocks.map((b) => ('text' in b && typeof b.text === 'string' ? String(b.text) : '')).join('');
}

export class SageMakerEndpointProvider implements Provider {
  readonly identity: ModelRef;

  constructor(
    private readonly endpointName: string,
    modelId: string,
    revision: string,
    private readonly client: SageMakerRuntimeClient,
    /** An inference component of the endpoint (a base model or an adapter on it). @default - the endpoint's model */
    private readonly inferenceComponentName?: string,
  ) {
    this.identity = { provider: 'sagemaker', model_id: modelId, revision };
  }

  async generate(prompt: string, decoding: Decoding): Promise<Generation> {
    const started = performance.now();
    let body: Uint8Array;
    try {
      const response = await this.client.send(
        new InvokeEndpointCommand({
          EndpointName: this.endpointName,
          ...(this.inferenceComponentName ? { InferenceComponentName: this.inferenceComponentName } : {}),
          ContentType: 'application/json',
          Accept: 'application/json',
          Body: new TextEncoder().encode(JSON.stringify(tgiRequest(prompt, decoding))),
        }),
      );
      body = response.Body ?? new Uint8Array();
    } catch (err) {
      throw classifyAwsError('sagemaker', err);
    }
    return { ...tgiResponseText(new TextDecoder().decode(body)), latencyMs: performance.now() - started };
  }
}

/** TGI/LMI request body. TGI rejects temperature 0, so greedy decoding is `do_sample: false`. */
export function tgiRequest(prompt: string, d: Decoding): { inputs: string; parameters: Record<string, unknown> } {
  const parameters: Record<string, unknown> = {
    max_new_tokens: d.max_tokens,
    return_full_text: false,
    seed: d.seed,
    details: true,
  };
  if (d.temperature > 0) {
    Object.assign(parameters, { do_sample: true, temperature: d.temperature });
    if (d.top_p < 1) parameters.top_p = d.top_p;
  } else {
    parameters.do_sample = false;
  }
  if (d.stop.length > 0) parameters.stop = [...d.stop];
  return { inputs: prompt, parameters };
}

/**
 * Accepts TGI's `[{"generated_text": ...}]` and LMI's `{"generated_text": ...}`; failures quote the
 * body's text as Python does (`containers/eval/conformance/providers.json`, "sagemaker_bodies").
 */
export function tgiResponseText(body: string): Omit<Generation, 'latencyMs'> {
  let data: unknown;
  try {
    data = JSON.parse(body);
  } catch {
    throw new PermanentError(`sagemaker: endpoint returned non-JSON body: ${pyRepr(pySlice(body, 200))}`);
  }
  const first = (Array.isArray(data) && data.length > 0 ? data[0] : data) as Record<string, unknown> | null;
  if (first === null || typeof first !== 'object' || !('generated_text' in first)) {
    throw new PermanentError(`sagemaker: response lacks 'generated_text': ${pyRepr(pySlice(body, 300))}`);
  }
  const details = (first.details ?? {}) as { prefill?: unknown[]; generated_tokens?: unknown };
  return {
    text: String(first.generated_text),
    usage: {
      input_tokens: details.prefill?.length ?? 0,
      output_tokens: tokenCount(details.generated_tokens, 'sagemaker: details.generated_tokens'),
    },
  };
}

const THROTTLE_CODES = new Set(['ThrottlingException', 'TooManyRequestsException', 'ServiceQuotaExceededException']);
const TRANSIENT_CODES = new Set([
  'ServiceUnavailableException',
  'ServiceUnavailable',
  'InternalServerException',
  'InternalFailure',
  'ModelNotReadyException',
  'ModelTimeoutException',
  'TimeoutError',
]);
