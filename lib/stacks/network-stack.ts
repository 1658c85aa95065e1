import { Aws, Fn, Stack, type StackProps } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as logs from 'aws-cdk-lib/aws-logs';
import * as cr from 'aws-cdk-lib/custom-resources';
import type { Construct } from 'constructs';
import { acknowledge } from '../compliance/acknowledge';
import type { ResolvedConfig } from '../config/load';
import { EncryptedLogGroup } from '../constructs/encrypted-log-group';
import { ManagedRole } from '../constructs/managed-role';
import { PlatformKey } from '../constructs/platform-key';
import { deployTimeCall } from '../constructs/deploy-time-call';
import { PlatformParameters } from '../constructs/platform-parameters';

/** Subnet groups of the VPC; all are isolated: no internet gateway, no NAT. */
export const SUBNET_GROUPS = {
  training: 'training',
  eval: 'eval',
  endpoints: 'endpoints',
} as const;

/**
 * The interface endpoints, by what inside the VPC calls them. The subnets have no other way out,
 * and each endpoint costs about $7 per AZ per month, so this is exactly what is called:
 * test/deploy/endpoints.test.ts derives the same set from the code and the job definitions and
 * fails when the two differ. S3 and DynamoDB are reached through (free) gateway endpoints.
 */
export const INTERFACE_ENDPOINTS: Readonly<Record<string, string>> = {
  ecs: 'ECS agent on the GPU nodes (Batch on EC2): registers the instance, reports task state',
  'ecs-agent': 'ECS agent on the GPU nodes: polls for tasks',
  'ecs-telemetry': 'ECS agent on the GPU nodes: container metrics and health',
  'ecr.api': 'image pulls of GPU nodes and Fargate jobs: authorization and manifests',
  'ecr.dkr': 'image pulls: the registry API (layers come from S3 through the gateway)',
  logs: 'the awslogs driver of every Batch job',
  comprehend: 'PII detection in the data-preparation job (redaction detector `comprehend`)',
  'bedrock-runtime': 'the evaluation worker: models and judges on Bedrock',
  'sagemaker.runtime': 'the evaluation worker: candidate models on SageMaker endpoints',
};

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
  /** AWS-managed prefix lists of the S3 and DynamoDB gateway endpoints, for security-group egress. */
  readonly gatewayPrefixLists: { readonly s3: string; readonly dynamodb: string };

  constructor(scope: Construct, id: string, props: NetworkStackProps) {
    super(scope, id, props);
    const { config } = props;
    const destroyOnDelete = config.behaviour.destroyOnDelete;

    this.vpc = new ec2.Vpc(this, 'Vpc', {
      ipAddresses: ec2.IpAddresses.cidr(config.network.cidr),
      maxAzs: config.network.maxAzs,
      natGateways: 0,
      subnetConfiguration: [
        {
          name: SUBNET_GROUPS.training,
          subnetType: ec2.SubnetType.PRIVATE_ISOLATED,
          cidrMask: config.network.trainingSubnetMask,
        },
        {
          name: SUBNET_GROUPS.eval,
          subnetType: ec2.SubnetType.PRIVATE_ISOLATED,
          cidrMask: config.network.evalSubnetMask,
        },
        {
          name: SUBNET_GROUPS.endpoints,
          subnetType: ec2.SubnetType.PRIVATE_ISOLATED,
          cidrMask: config.network.endpointSubnetMask,
        },
      ],
      restrictDefaultSecurityGroup: true,
    });
    const s3Gateway = this.vpc.addGatewayEndpoint('S3', { service: ec2.GatewayVpcEndpointAwsService.S3 });
    for (const statement of s3EndpointStatements(this.region)) s3Gateway.addToPolicy(statement);
    const dynamoGateway = this.vpc.addGatewayEndpoint('DynamoDB', {
      service: ec2.GatewayVpcEndpointAwsService.DYNAMODB,
    });
    dynamoGateway.addToPolicy(thisAccountOnly('ThisAccountsTablesOnly', { resourceAccount: true }));

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
      destination: ec2.FlowLogDestination.toCloudWatchLogs(
        flowLogs.logGroup,
        createFlowLogRole(this, flowLogs.logGroup),
      ),
      trafficType: ec2.FlowLogTrafficType.ALL,
    });

    this.endpointSecurityGroup = new ec2.SecurityGroup(this, 'EndpointSecurityGroup', {
      vpc: this.vpc,
      description: 'Interface VPC endpoints: HTTPS from inside the VPC',
      allowAllOutbound: false,
    });
    // The CIDR literal (not the VPC's token) lets the compliance checks see the rule is VPC-internal.
    this.endpointSecurityGroup.addIngressRule(
      ec2.Peer.ipv4(config.network.cidr),
      ec2.Port.tcp(443),
      'HTTPS from the VPC',
    );
    for (const name of Object.keys(INTERFACE_ENDPOINTS)) {
      const endpoint = this.vpc.addInterfaceEndpoint(endpointId(name), {
        service: new ec2.InterfaceVpcEndpointAwsService(name),
        subnets: { subnetGroupName: SUBNET_GROUPS.endpoints },
        securityGroups: [this.endpointSecurityGroup],
        privateDnsEnabled: true,
        open: false,
      });
      // Principals of this account only: credentials from elsewhere cannot use the VPC's paths.
      // Log groups and endpoints are account resources, so there the resource must be ours too.
      endpoint.addToPolicy(
        thisAccountOnly('ThisAccountsPrincipalsOnly', {
          resourceAccount: ['logs', 'sagemaker.runtime'].includes(name),
        }),
      );
    }

    this.gatewayPrefixLists = {
      s3: lookUpPrefixList(this, 'S3PrefixList', `com.amazonaws.${this.region}.s3`),
      dynamodb: lookUpPrefixList(this, 'DynamoDbPrefixList', `com.amazonaws.${this.region}.dynamodb`),
    };

    // Egress stays inside the VPC: the members themselves (EFA/NCCL need all traffic both ways),
    // HTTPS to the interface endpoints and to S3 through its gateway (the prefix list).
    this.efaSecurityGroup = new ec2.SecurityGroup(this, 'EfaSecurityGroup', {
      vpc: this.vpc,
      description: 'Training nodes: all traffic between members (EFA/NCCL)',
      allowAllOutbound: false,
    });
    this.efaSecurityGroup.addIngressRule(this.efaSecurityGroup, ec2.Port.allTraffic(), 'EFA and NCCL between members');
    this.efaSecurityGroup.addEgressRule(this.efaSecurityGroup, ec2.Port.allTraffic(), 'EFA and NCCL between members');
    allowHttpsToServices(this.efaSecurityGroup, config.network.cidr, [this.gatewayPrefixLists.s3]);
    const selfIngress = this.efaSecurityGroup.node.children.find((c) => c instanceof ec2.CfnSecurityGroupIngress);
    acknowledge(
      selfIngress ?? this.efaSecurityGroup,
      ['NIST.800.53.R5-EC2RestrictedCommonPorts', 'HIPAA.Security-EC2RestrictedCommonPorts'],
      'EFA requires all traffic between the members of its security group; the only source allowed is the group itself, never a CIDR.',
    );

    const parameters = new PlatformParameters(this, 'Parameters', config.ssmRoot);
    parameters.publish('vpcId', this.vpc.vpcId, 'VPC of training and evaluation');
    parameters.publish('vpcCidr', this.vpc.vpcCidrBlock, 'CIDR of the VPC');
    parameters.publish(
      'availabilityZones',
      Fn.join(',', this.vpc.availabilityZones),
      'Availability zones, comma-separated, in subnet order',
    );
    parameters.publish(
      'trainingSubnetIds',
      subnetIds(this.vpc, SUBNET_GROUPS.training),
      'Isolated training subnets, comma-separated',
    );
    parameters.publish(
      'evalSubnetIds',
      subnetIds(this.vpc, SUBNET_GROUPS.eval),
      'Isolated evaluation subnets, comma-separated',
    );
    parameters.publish(
      'efaSecurityGroupId',
      this.efaSecurityGroup.securityGroupId,
      'Security group for EFA training nodes',
    );
    parameters.publish(
      'endpointSecurityGroupId',
      this.endpointSecurityGroup.securityGroupId,
      'Security group of the interface endpoints',
    );
  }
}

/**
 * Egress a workload in the isolated subnets needs: HTTPS to the interface endpoints (inside the
 * VPC's CIDR, given as a literal so the compliance checks can see it) and to the gateway
 * endpoints' prefix lists. Nothing else leaves the group.
 */
export function allowHttpsToServices(group: ec2.SecurityGroup, vpcCidr: string, prefixLists: readonly string[]): void {
  group.addEgressRule(ec2.Peer.ipv4(vpcCidr), ec2.Port.tcp(443), 'HTTPS to the interface endpoints');
  for (const prefixList of prefixLists) {
    group.addEgressRule(
      ec2.Peer.prefixList(prefixList),
      ec2.Port.tcp(443),
      'HTTPS to a gateway endpoint (S3 or DynamoDB)',
    );
  }
}

/** An endpoint-policy statement that lets this account's principals (and optionally only its resources) through. */
function thisAccountOnly(sid: string, options: { resourceAccount: boolean }): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid,
    principals: [new iam.AnyPrincipal()],
    actions: ['*'],
    resources: ['*'],
    conditions: {
      StringEquals: {
        'aws:PrincipalAccount': Aws.ACCOUNT_ID,
        ...(options.resourceAccount ? { 'aws:ResourceAccount': Aws.ACCOUNT_ID } : {}),
      },
    },
  });
}

/**
 * The S3 gateway's policy: this account's principals on this account's buckets, so data cannot be
 * copied out to another account's bucket from inside the VPC; plus the two AWS-owned buckets the
 * nodes read: ECR's image layers (documented in "Amazon ECR interface VPC endpoints") and the
 * Amazon Linux 2023 package repositories (the GPU nodes install mdadm from them).
 */
function s3EndpointStatements(region: string): iam.PolicyStatement[] {
  const awsOwned = (sid: string, bucket: string): iam.PolicyStatement =>
    new iam.PolicyStatement({
      sid,
      principals: [new iam.AnyPrincipal()],
      actions: ['s3:GetObject'],
      resources: [`arn:${Aws.PARTITION}:s3:::${bucket}/*`],
      conditions: { StringEquals: { 'aws:PrincipalAccount': Aws.ACCOUNT_ID } },
    });
  return [
    thisAccountOnly('ThisAccountsBucketsOnly', { resourceAccount: true }),
    awsOwned('EcrImageLayers', `prod-${region}-starport-layer-bucket`),
    awsOwned('AmazonLinuxRepositories', `al2023-repos-${region}-de612dc2`),
  ];
}

/**
 * The id of an AWS-managed prefix list (`com.amazonaws.<region>.s3`), looked up at deploy time:
 * CloudFormation has no attribute for it and the ids differ per region.
 */
function lookUpPrefixList(scope: Construct, id: string, name: string): string {
  const lookup = deployTimeCall(scope, id, {
    call: {
      service: 'EC2',
      action: 'describePrefixLists',
      parameters: { Filters: [{ Name: 'prefix-list-name', Values: [name] }] },
      physicalResourceId: cr.PhysicalResourceId.of(name),
      outputPaths: ['PrefixLists.0.PrefixListId'],
    },
    repeatOnUpdate: true,
    statements: [new iam.PolicyStatement({ actions: ['ec2:DescribePrefixLists'], resources: ['*'] })],
    wildcardReason:
      'ec2:DescribePrefixLists has no resource-level permissions; it only reads the ids of AWS-managed prefix lists.',
  });
  return lookup.getResponseField('PrefixLists.0.PrefixListId');
}

/**
 * The flow-log role gets a customer-managed policy scoped to the one log group, rather than the
 * inline policy CDK would attach (inline policies cannot be reviewed or reused on their own).
 */
function createFlowLogRole(scope: Construct, logGroup: logs.ILogGroup): iam.IRole {
  return new ManagedRole(scope, 'FlowLogRole', {
    // Confused-deputy guard: the service may assume the role only for this account's flow logs.
    assumedBy: new iam.ServicePrincipal('vpc-flow-logs.amazonaws.com').withConditions({
      StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID },
      ArnLike: {
        'aws:SourceArn': `arn:${Aws.PARTITION}:ec2:${Stack.of(scope).region}:${Aws.ACCOUNT_ID}:vpc-flow-log/*`,
      },
    }),
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
  return (
    name
      .split(/[.-]/)
      .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
      .join('') + 'Endpoint'
  );
}
