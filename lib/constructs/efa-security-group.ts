import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Construct } from 'constructs';
import { acknowledge } from '../compliance/acknowledge';
import { allowHttpsToServices } from './isolated-vpc';

export interface EfaSecurityGroupProps {
  /** The VPC of the training nodes. */
  readonly vpc: ec2.IVpc;
  /** The VPC's CIDR as a literal, so the compliance checks can see the egress stays inside it. */
  readonly vpcCidr: string;
  /** Prefix list of the S3 gateway endpoint (checkpoints, datasets, image layers). */
  readonly s3PrefixListId: string;
}

/**
 * The security group of the training nodes. EFA requires all traffic between the members of the
 * group, both ways; everything else that leaves is HTTPS to the VPC endpoints and to S3. The group
 * is this construct's `Default` child, so it keeps the logical id it had at the stack's top level.
 */
export class EfaSecurityGroup extends Construct {
  readonly securityGroup: ec2.SecurityGroup;

  constructor(scope: Construct, id: string, props: EfaSecurityGroupProps) {
    super(scope, id);
    const group = new ec2.SecurityGroup(this, 'Default', {
      vpc: props.vpc,
      description: 'Training nodes: all traffic between members (EFA/NCCL)',
      allowAllOutbound: false,
    });
    group.addIngressRule(group, ec2.Port.allTraffic(), 'EFA and NCCL between members');
    group.addEgressRule(group, ec2.Port.allTraffic(), 'EFA and NCCL between members');
    allowHttpsToServices(group, props.vpcCidr, [props.s3PrefixListId]);
    const selfIngress = group.node.children.find((c) => c instanceof ec2.CfnSecurityGroupIngress);
    acknowledge(
      selfIngress ?? group,
      ['NIST.800.53.R5-EC2RestrictedCommonPorts', 'HIPAA.Security-EC2RestrictedCommonPorts'],
      'EFA requires all traffic between the members of its security group; the only source allowed is the group itself, never a CIDR.',
    );
    this.securityGroup = group;
  }
}
