/**
 * What platform stacks publish for the stacks that come and go beside them.
 *
 * Values travel through SSM parameters under `/<prefix>/<envId>/...` instead of CloudFormation
 * exports, so an experiment stack can be created and destroyed without locking the platform's
 * outputs (an export in use cannot change or be deleted).
 */
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { Construct } from 'constructs';

/** Every parameter a platform publishes, by key. The path is `<ssmRoot>/<value>`. */
export const PLATFORM_PARAMETERS = {
  vpcId: 'network/vpc-id',
  vpcCidr: 'network/vpc-cidr',
  availabilityZones: 'network/availability-zones',
  trainingSubnetIds: 'network/subnets/training',
  evalSubnetIds: 'network/subnets/eval',
  efaSecurityGroupId: 'network/security-groups/efa',
  endpointSecurityGroupId: 'network/security-groups/endpoints',
  lakeKeyArn: 'datalake/kms-key-arn',
  rawBucket: 'datalake/buckets/raw',
  curatedBucket: 'datalake/buckets/curated',
  datasetsBucket: 'datalake/buckets/datasets',
  modelsBucket: 'datalake/buckets/models',
  evalBucket: 'datalake/buckets/eval',
  artifactsBucket: 'datalake/buckets/artifacts',
  accessLogsBucket: 'datalake/buckets/access-logs',
  glueDatabase: 'datalake/glue-database',
  athenaWorkGroup: 'datalake/athena-workgroup',
  evalStateMachineArn: 'eval/state-machine-arn',
  evalResultsTable: 'eval/results-table',
  trainingGpuQueueArn: 'training/gpu-queue-arn',
  trainingCpuQueueArn: 'training/cpu-queue-arn',
  trainingSingleNodeJobDefinitionArn: 'training/job-definitions/single-node',
  trainingMultiNodeJobDefinitionArn: 'training/job-definitions/multi-node',
  trainingPreflightJobDefinitionArn: 'training/job-definitions/preflight',
  trainingDataPrepJobDefinitionArn: 'training/job-definitions/data-prep',
  trainingKeyArn: 'training/kms-key-arn',
  trainingJobLogGroup: 'training/job-log-group',
  trainingMaxNodes: 'training/max-nodes',
  trainingCapacityMode: 'training/capacity-mode',
} as const;
export type PlatformParameterKey = keyof typeof PLATFORM_PARAMETERS;

/** Full SSM path of a parameter, e.g. `/dapt/prod/network/vpc-id`. Lists are comma-joined. */
export function platformParameterName(ssmRoot: string, key: PlatformParameterKey): string {
  return `${ssmRoot}/${PLATFORM_PARAMETERS[key]}`;
}

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
    const id = parameterName.slice(this.ssmRoot.length + 1).replace(/[^A-Za-z0-9]+(.)?/g, (_, c: string | undefined) => (c ?? '').toUpperCase());
    return new ssm.StringParameter(this, id.charAt(0).toUpperCase() + id.slice(1), { parameterName, stringValue: value, description });
  }
}

/**
 * Reads a platform value in a stack that must not hold an export lock on the platform: the
 * template gets an `AWS::SSM::Parameter::Value<String>` parameter resolved at deploy time.
 */
export function readPlatformParameter(scope: Construct, ssmRoot: string, key: PlatformParameterKey): string {
  return ssm.StringParameter.valueForStringParameter(scope, platformParameterName(ssmRoot, key));
}
