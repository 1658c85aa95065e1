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

/** The provider named by `spec.provider`. */
export function buildProvider(spec: ProviderSpec): Provider {
  switch (spec.provider) {
    case 'simulated':
      return new SimulatedProvider(spec.model_id, spec.revision, spec.simulated);
    case 'openai':
      return new OpenAICompatibleProvider(spec.base_url as string, spec.model_id, spec.revision);
    case 'bedrock':
      return new BedrockConverseProvider(spec.model_id, spec.revision, cached(bedrockClients, spec.region, (r) => new BedrockRuntimeClient({ ...r, maxAttempts: 1 })));
    case 'sagemaker':
      return new SageMakerEndpointProvider(
        spec.endpoint_name as string,
        spec.model_id,
        spec.revision,
        cached(sagemakerClients, spec.region, (r) => new SageMakerRuntimeClient({ ...r, maxAttempts: 1 })),
      );
  }
}

function cached<C>(cache: Map<string, C>, region: string | undefined, make: (r: { region?: string }) => C): C {
  const key = region ?? '';
  let client = cache.get(key);
  if (!client) {
    client = make(region ? { region } : {});
    cache.set(key, client);
  }
  return client;
}
