import { Aws, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as cr from 'aws-cdk-lib/custom-resources';
import { Construct } from 'constructs';
import { deployTimeCall } from './deploy-time-call';

export interface NodeLauncherKeyGrantProps {
  /** The key the GPU nodes' root volumes are encrypted with; its policy gains two statements. */
  readonly key: kms.Key;
}

/**
 * Lets the node launchers encrypt root volumes with the key. Service-linked roles carry no IAM
 * permissions for customer keys, so the key policy names them directly (the statements EC2 Auto
 * Scaling documents in "Required AWS KMS key policy for use with encrypted volumes"). KMS rejects a
 * policy naming a role that does not exist, and an account that never used Auto Scaling or EC2
 * Fleet has neither, so each is created first if missing.
 */
export class NodeLauncherKeyGrant extends Construct {
  constructor(scope: Construct, id: string, props: NodeLauncherKeyGrantProps) {
    super(scope, id);
    const principals = NODE_LAUNCHER_ROLES.map(({ service, role }) => {
      const arn = `arn:${Aws.PARTITION}:iam::${Stack.of(this).account}:role/aws-service-role/${service}/${role}`;
      props.key.node.addDependency(ensureServiceLinkedRole(this, service, role, arn));
      return new iam.ArnPrincipal(arn);
    });
    props.key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'AllowNodeLaunchersToUseTheKeyForRootVolumes',
        principals,
        actions: ['kms:Encrypt', 'kms:Decrypt', 'kms:ReEncrypt*', 'kms:GenerateDataKey*', 'kms:DescribeKey'],
        resources: ['*'],
      }),
    );
    props.key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'AllowNodeLaunchersToGrantTheKeyToEc2',
        principals,
        actions: ['kms:CreateGrant'],
        resources: ['*'],
        conditions: { Bool: { 'kms:GrantIsForAWSResource': true } },
      }),
    );
  }
}

/** Creates a service-linked role at deploy time unless the account already has it. */
function ensureServiceLinkedRole(scope: Construct, service: string, role: string, arn: string): Construct {
  return deployTimeCall(scope, `Ensure${role}`, {
    call: {
      service: 'IAM',
      action: 'createServiceLinkedRole',
      parameters: { AWSServiceName: service },
      physicalResourceId: cr.PhysicalResourceId.of(role),
      // "Service role name ... has been taken in this account": it exists, which is all we need.
      ignoreErrorCodesMatching: 'InvalidInput',
    },
    statements: [
      new iam.PolicyStatement({
        actions: ['iam:CreateServiceLinkedRole'],
        resources: [arn],
        conditions: { StringEquals: { 'iam:AWSServiceName': service } },
      }),
    ],
  });
}

/** The service-linked roles that launch Batch's EC2 nodes: Auto Scaling (on-demand) and EC2 Fleet (Spot, reservations). */
const NODE_LAUNCHER_ROLES = [
  { service: 'autoscaling.amazonaws.com', role: 'AWSServiceRoleForAutoScaling' },
  { service: 'ec2fleet.amazonaws.com', role: 'AWSServiceRoleForEC2Fleet' },
] as const;
