import { Stack } from 'aws-cdk-lib';
import type * as iam from 'aws-cdk-lib/aws-iam';
import * as cr from 'aws-cdk-lib/custom-resources';
import type { Construct } from 'constructs';
import { acknowledge } from '../compliance/acknowledge';

export interface DeployTimeCallProps {
  /** The SDK call made when the resource is created (and, with `repeatOnUpdate`, updated). */
  readonly call: cr.AwsSdkCall;
  /** What the call may do; nothing else. */
  readonly statements: readonly iam.PolicyStatement[];
  /** Repeat the call on every stack update (for lookups whose answer can change). @default false */
  readonly repeatOnUpdate?: boolean;
  /**
   * Why a wildcard resource in `statements` is needed, when there is one.
   * @default - none: a wildcard resource in `statements` stays an unacknowledged cdk-nag finding
   */
  readonly wildcardReason?: string;
}

/**
 * One AWS API call CloudFormation cannot make itself, made at deploy time by CDK's
 * AwsCustomResource (e.g. looking up an AWS-managed prefix list id, creating a service-linked role
 * that may already exist). Its compliance findings are acknowledged here, once, with reasons.
 */
export function deployTimeCall(scope: Construct, id: string, props: DeployTimeCallProps): cr.AwsCustomResource {
  const resource = new cr.AwsCustomResource(scope, id, {
    onCreate: props.call,
    onUpdate: props.repeatOnUpdate ? props.call : undefined,
    policy: cr.AwsCustomResourcePolicy.fromStatements([...props.statements]),
    installLatestAwsSdk: false,
  });
  const policy = resource.node.tryFindChild('CustomResourcePolicy');
  if (policy) {
    acknowledge(
      policy,
      ['NIST.800.53.R5-IAMNoInlinePolicy', 'HIPAA.Security-IAMNoInlinePolicy'],
      'AwsCustomResource writes the policy of its one SDK call itself and offers no managed-policy option; it grants only that call.',
    );
    if (props.wildcardReason) acknowledge(policy, ['AwsSolutions-IAM5[Resource::*]'], props.wildcardReason);
  }
  acknowledgeProvider(Stack.of(scope));
  return resource;
}

const acknowledgedProviders = new WeakSet<object>();

/** The singleton function CDK runs every AwsCustomResource of a stack with. */
function acknowledgeProvider(stack: Stack): void {
  const provider = stack.node.tryFindChild('AWS679f53fac002430cb0da5b7982bd2287');
  if (!provider || acknowledgedProviders.has(provider)) return;
  acknowledgedProviders.add(provider);
  const fn = provider.node.tryFindChild('Resource') ?? provider;
  acknowledge(
    fn,
    ['NIST.800.53.R5-LambdaInsideVPC', 'HIPAA.Security-LambdaInsideVPC'],
    'CDK runs deploy-time SDK calls (prefix-list lookups, service-linked role creation) from this function; it calls public AWS APIs during deployment only and touches no data, so it runs outside the isolated VPC, which has no route to those APIs.',
  );
  acknowledge(
    fn,
    [
      'NIST.800.53.R5-LambdaConcurrency',
      'HIPAA.Security-LambdaConcurrency',
      'NIST.800.53.R5-LambdaDLQ',
      'HIPAA.Security-LambdaDLQ',
    ],
    'CloudFormation invokes this deploy-time function synchronously, a few times per deployment, and reports a failure as the failed resource; a reservation or dead-letter queue would add nothing.',
  );
  const role = provider.node.tryFindChild('ServiceRole');
  if (role) {
    acknowledge(
      role,
      ['AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]'],
      "CDK's AwsCustomResource provider attaches AWSLambdaBasicExecutionRole (its own log writes) and offers no way to replace it.",
    );
  }
}
