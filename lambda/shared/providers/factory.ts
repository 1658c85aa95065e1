/** Builds a provider from a validated spec; SDK clients are shared per region across providers. */
import { BedrockRuntimeClient } from '@aws-sdk/client-bedrock-runtime';
import { SageMakerRuntimeClient } from '@aws-sdk/client-sagemaker-runtime';
import type { ProviderSpec } from '../spec';
import { BedrockConverseProvider, SageMakerEndpointProvider } from './aws';
import { OpenAICompatibleProvider } from './openai';
import { SimulatedProvider } from './simulated';
import type { Provider } from './types';

const bedrockClients = new Map<string, BedrockRuntimeClient>();
const sagemakerClients = new Map<string, SageMakerRuntimeClient>();

/**
 * How long a model call may stay silent before it fails (as a transient error the retry layer
 * sees), the same 120 s as the Python providers' read timeout: long generations fit, a hung
 * connection does not hold a worker until the Lambda timeout.
 */
export const MODEL_REQUEST_TIMEOUT_MS = 120_000;
const CONNECT_TIMEOUT_MS = 5_000;

/** The provider named by `spec.provider`. */
export function buildProvider(spec: ProviderSpec, requestTimeoutMs = MODEL_REQUEST_TIMEOUT_MS): Provider {
  // throwOnRequestTimeout: without it this SDK only logs a warning when requestTimeout passes.
  const http = { connectionTimeout: CONNECT_TIMEOUT_MS, requestTimeout: requestTimeoutMs, throwOnRequestTimeout: true };
  switch (spec.provider) {
    case 'simulated':
      return new SimulatedProvider(spec.model_id, spec.revision, spec.simulated);
    case 'openai':
      return new OpenAICompatibleProvider(spec.base_url as string, spec.model_id, spec.revision);
    case 'bedrock':
      return new BedrockConverseProvider(
        spec.model_id,
        spec.revision,
        cached(
          bedrockClients,
          spec.region,
          requestTimeoutMs,
          (r) => new BedrockRuntimeClient({ ...r, maxAttempts: 1, requestHandler: http }),
        ),
      );
    case 'sagemaker':
      return new SageMakerEndpointProvider(
        spec.endpoint_name as string,
        spec.model_id,
        spec.revision,
        cached(
          sagemakerClients,
          spec.region,
          requestTimeoutMs,
          (r) => new SageMakerRuntimeClient({ ...r, maxAttempts: 1, requestHandler: http }),
        ),
        spec.inference_component_name,
      );
  }
}

function cached<C>(
  cache: Map<string, C>,
  region: string | undefined,
  timeoutMs: number,
  make: (r: { region?: string }) => C,
): C {
  const key = `${region ?? ''}/${timeoutMs}`;
  let client = cache.get(key);
  if (!client) {
    client = make(region ? { region } : {});
    cache.set(key, client);
  }
  return client;
}
