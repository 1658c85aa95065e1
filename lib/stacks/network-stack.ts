import { Fn, Stack, type StackProps } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { acknowledge } from '../compliance/acknowledge';
import type { ResolvedConfig } from '../config/load';
import { EncryptedLogGroup } from '../constructs/encrypted-log-group';
import { ManagedRole } from '../constructs/managed-role';
import { PlatformKey } from '../constructs/platform-key';
import { PlatformParameters } from '../constructs/platform-parameters';

/** Subnet groups of the VPC; all are isolated: no internet gateway, no NAT. */
export const SUBNET_GROUPS = {
  training: 'training',
  eval: 'eval',
  endpoints: 'endpoints',
} as const;

export interface NetworkStackProps extends StackProps {
  readonly config: ResolvedConfig;
}

/**
 * The network training and evaluation run in: isolated subnets with no route to the internet,
 * AWS services reached through VPC endpoints, every flow logged, and a security group whose
 * members may exchange all traffic, as EFA requires between the nodes of a training job.
 */
export class NetworkStack extends Stack {
  readonly vpc: ec2.Vpc;
  /** Attach to every training instance: EFA needs all traffic allowed between members. */
  readonly efaSecurityGroup: ec2.SecurityGroup;
  /** Guards the interface endpoints: HTTPS from inside the VPC only. */
  readonly endpointSecurityGroup: ec2.SecurityGroup;

  constructor(scope: Construct, id: string, props: NetworkStackProps) {
    super(scope, id, props);
    const { config } = props;
    const destroyOnDelete = config.behaviour.destroyOnDelete;

    this.vpc = new ec2.Vpc(this, 'Vpc', {
      ipAddresses: ec2.IpAddresses.cidr(config.network.cidr),
      maxAzs: config.network.maxAzs,
      natGateways: 0,
      subnetConfiguration: [
        { name: SUBNET_GROUPS.training, subnetType: ec2.SubnetType.PRIVATE_ISOLATED, cidrMask: config.network.trainingSubnetMask },
        { name: SUBNET_GROUPS.eval, subnetType: ec2.SubnetType.PRIVATE_ISOLATED, cidrMask: config.network.evalSubnetMask },
        { name: SUBNET_GROUPS.endpoints, subnetType: ec2.SubnetType.PRIVATE_ISOLATED, cidrMask: config.network.endpointSubnetMask },
      ],
      restrictDefaultSecurityGroup: true,
      gatewayEndpoints: {
        S3: { service: ec2.GatewayVpcEndpointAwsService.S3 },
        DynamoDB: { service: ec2.GatewayVpcEndpointAwsService.DYNAMODB },
      },
    });

    const logsKey = new PlatformKey(this, 'LogsKey', {
      alias: `${config.prefix}-${config.envId}-network-logs`,
      description: `Encrypts the VPC flow logs of ${config.prefix}-${config.envId}`,
      destroyOnDelete,
    }).key;
    const flowLogs = new EncryptedLogGroup(this, 'FlowLogs', {
      encryptionKey: logsKey,
      retentionDays: config.logRetentionDays,
      destroyOnDelete,
    });
    this.vpc.addFlowLog('FlowLog', {
      destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogs.logGroup, createFlowLogRole(this, flowLogs.logGroup)),
      trafficType: ec2.FlowLogTrafficType.ALL,
    });

    this.endpointSecurityGroup = new ec2.SecurityGroup(this, 'EndpointSecurityGroup', {
      vpc: this.vpc,
      description: 'Interface VPC endpoints: HTTPS from inside the VPC',
      allowAllOutbound: false,
    });
    // The CIDR literal (not the VPC's token) lets the compliance checks see the rule is VPC-internal.
    this.endpointSecurityGroup.addIngressRule(ec2.Peer.ipv4(config.network.cidr), ec2.Port.tcp(443), 'HTTPS from the VPC');
    for (const name of config.network.interfaceEndpoints) {
      this.vpc.addInterfaceEndpoint(endpointId(name), {
        service: new ec2.InterfaceVpcEndpointAwsService(name),
        subnets: { subnetGroupName: SUBNET_GROUPS.endpoints },
        securityGroups: [this.endpointSecurityGroup],
        privateDnsEnabled: true,
        open: false,
      });
    }

    // Outbound is left open on purpose: the subnets have no route out of the VPC, so egress can
    // only reach VPC endpoints, the gateway endpoints' prefix lists and other members.
    this.efaSecurityGroup = new ec2.SecurityGroup(this, 'EfaSecurityGroup', {
      vpc: this.vpc,
      description: 'Training nodes: all traffic between members (EFA/NCCL)',
      allowAllOutbound: true,
    });
    this.efaSecurityGroup.addIngressRule(this.efaSecurityGroup, ec2.Port.allTraffic(), 'EFA and NCCL between members');
    const selfIngress = this.efaSecurityGroup.node.children.find((c) => c instanceof ec2.CfnSecurityGroupIngress);
    acknowledge(
      selfIngress ?? this.efaSecurityGroup,
      ['NIST.800.53.R5-EC2RestrictedCommonPorts', 'HIPAA.Security-EC2RestrictedCommonPorts'],
      'EFA requires all traffic between the members of its security group; the only source allowed is the group itself, never a CIDR.',
    );

    const parameters = new PlatformParameters(this, 'Parameters', config.ssmRoot);
    parameters.publish('vpcId', this.vpc.vpcId, 'VPC of training and evaluation');
    parameters.publish('vpcCidr', this.vpc.vpcCidrBlock, 'CIDR of the VPC');
    parameters.publish('availabilityZones', Fn.join(',', this.vpc.availabilityZones), 'Availability zones, comma-separated, in subnet order');
    parameters.publish('trainingSubnetIds', subnetIds(this.vpc, SUBNET_GROUPS.training), 'Isolated training subnets, comma-separated');
    parameters.publish('evalSubnetIds', subnetIds(this.vpc, SUBNET_GROUPS.eval), 'Isolated evaluation subnets, comma-separated');
    parameters.publish('efaSecurityGroupId', this.efaSecurityGroup.securityGroupId, 'Security group for EFA training nodes');
    parameters.publish('endpointSecurityGroupId', this.endpointSecurityGroup.securityGroupId, 'Security group of the interface endpoints');
  }
}

/**
 * The flow-log role gets a customer-managed policy scoped to the one log group, rather than the
 * inline policy CDK would attach (inline policies cannot be reviewed or reused on their own).
 */
function createFlowLogRole(scope: Construct, logGroup: logs.ILogGroup): iam.IRole {
  return new ManagedRole(scope, 'FlowLogRole', {
    assumedBy: new iam.ServicePrincipal('vpc-flow-logs.amazonaws.com'),
    description: 'Delivers VPC flow logs to their log group',
    statements: [
      new iam.PolicyStatement({
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents', 'logs:DescribeLogStreams'],
        resources: [logGroup.logGroupArn],
      }),
    ],
  }).role.withoutPolicyUpdates();
}

function subnetIds(vpc: ec2.Vpc, group: string): string {
  return Fn.join(',', vpc.selectSubnets({ subnetGroupName: group }).subnetIds);
}

/** `ecr.api` -> `EcrApiEndpoint`. */
function endpointId(name: string): string {
  return name
    .split(/[.-]/)
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
    .join('') + 'Endpoint';
}
