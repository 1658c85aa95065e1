/**
 * Reads the platform's SSM parameters (bucket names, state machine ARN) for the CLI.
 */
import {
  GetParameterCommand,
  ParameterNotFound as SsmParameterNotFound,
  SSMClient,
  type SSMClientConfig,
} from '@aws-sdk/client-ssm';

export interface SsmOptions {
  readonly region: string;
  /** @default - the regional SSM endpoint */
  readonly endpoint?: string;
  /** Static credentials or a provider. @default - the default credential chain */
  readonly credentials?: SSMClientConfig['credentials'];
}

/** The parameter does not exist (SSM `ParameterNotFound`). */
export class ParameterNotFound extends Error {
  override readonly name = 'ParameterNotFound';
}

export class SsmParameterReader {
  private readonly client: SSMClient;

  constructor(options: SsmOptions) {
    this.client = new SSMClient({
      region: options.region,
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      ...(options.credentials ? { credentials: options.credentials } : {}),
    });
  }

  /** The parameter's value (decrypted when it is a SecureString). */
  async get(name: string): Promise<string> {
    try {
      const { Parameter } = await this.client.send(new GetParameterCommand({ Name: name, WithDecryption: true }));
      if (Parameter?.Value === undefined) throw new ParameterNotFound(`SSM parameter ${name} has no value`);
      return Parameter.Value;
    } catch (err) {
      if (err instanceof SsmParameterNotFound) throw new ParameterNotFound(`SSM parameter ${name} not found`);
      throw err;
    }
  }
}
