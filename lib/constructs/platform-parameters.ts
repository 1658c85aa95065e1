/**
 * What platform stacks publish for the stacks that come and go beside them.
 *
 * Values travel through SSM parameters under `/<prefix>/<envId>/...` instead of CloudFormation
 * exports, so an experiment stack can be created and destroyed without locking the platform's
 * outputs (an export in use cannot change or be deleted).
 */
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { Construct } from 'constructs';
import { platformParameterName, type PlatformParameterKey } from '../config/parameter-names';

export { PLATFORM_PARAMETERS, platformParameterName, type PlatformParameterKey } from '../config/parameter-names';

/** Publishes platform values as SSM String parameters under one root. */
export class PlatformParameters extends Construct {
  constructor(
    scope: Construct,
    id: string,
    private readonly ssmRoot: string,
  ) {
    super(scope, id);
  }

  /** Publishes `value` (a string or a token) under `key`. */
  publish(key: PlatformParameterKey, value: string, description: string): ssm.StringParameter {
    return this.publishAt(platformParameterName(this.ssmRoot, key), value, description);
  }

  /** Publishes `value` under a full name inside this root (for names that carry a run or model). */
  publishAt(parameterName: string, value: string, description: string): ssm.StringParameter {
    if (!parameterName.startsWith(`${this.ssmRoot}/`)) {
      throw new Error(`parameter ${parameterName} must lie under ${this.ssmRoot}/`);
    }
    const id = parameterName
      .slice(this.ssmRoot.length + 1)
      .replace(/[^A-Za-z0-9]+(.)?/g, (_, c: string | undefined) => (c ?? '').toUpperCase());
    return new ssm.StringParameter(this, id.charAt(0).toUpperCase() + id.slice(1), {
      parameterName,
      stringValue: value,
      description,
    });
  }
}

/**
 * Reads a platform value in a stack that must not hold an export lock on the platform: the
 * template gets an `AWS::SSM::Parameter::Value<String>` parameter resolved at deploy time.
 */
export function readPlatformParameter(scope: Construct, ssmRoot: string, key: PlatformParameterKey): string {
  return ssm.StringParameter.valueForStringParameter(scope, platformParameterName(ssmRoot, key));
}
