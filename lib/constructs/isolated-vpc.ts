/**
 * The network training and evaluation run in: isolated subnets with no route to the internet, AWS
 * services reached through VPC endpoints whose policies admit this account only, and every flow
 * logged. The VPC is this construct's `Default` child, so its resources keep the logical ids they
 * had when the stack created the VPC itself.
 */
import { Aws, Stack, Tags } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as logs from 'aws-cdk-lib/aws-logs';
import * as cr from 'aws-cdk-lib/custom-resources';
import { Construct } from 'constructs';
import type { NetworkConfig } from '../config/schema';
import { deployTimeCall } from './deploy-time-call';
import { ManagedRole } from './managed-role';

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
  'sagemaker.api': 'the model registrar: registers model packages in the model registry',
};

export interface IsolatedVpcProps {
  /** The `network` section of the stage config: CIDR, zones, subnet sizes. */
  readonly network: NetworkConfig;
  /** Where the VPC's flow logs (all traffic) go. */
  readonly flowLogGroup: logs.ILogGroup;
}

/** A VPC whose only ways out are its gateway and interface endpoints. */
export class IsolatedVpc extends Construct {
  readonly vpc: ec2.Vpc;
  /** Guards the interface endpoints: HTTPS from inside the VPC only. */
  readonly endpointSecurityGroup: ec2.SecurityGroup;
  /** AWS-managed prefix lists of the S3 and DynamoDB gateway endpoints, for security-group egress. */
  readonly gatewayPrefixLists: { readonly s3: string; readonly dynamodb: string };

  constructor(scope: Construct, id: string, props: IsolatedVpcProps) {
    super(scope, id);
    const { network } = props;
    const isolated = (name: string, cidrMask: number): ec2.SubnetConfiguration => ({
      name,
      subnetType: ec2.SubnetType.PRIVATE_ISOLATED,
      cidrMask,
    });
    this.vpc = new ec2.Vpc(this, 'Default', {
      ipAddresses: ec2.IpAddresses.cidr(network.cidr),
      maxAzs: network.maxAzs,
      natGateways: 0,
      subnetConfiguration: [
        isolated(SUBNET_GROUPS.training, network.trainingSubnetMask),
        isolated(SUBNET_GROUPS.eval, network.evalSubnetMask),
        isolated(SUBNET_GROUPS.endpoints, network.endpointSubnetMask),
      ],
      restrictDefaultSecurityGroup: true,
      // Name tags without the `Default` step, as when the stack held the VPC itself, and from the
      // stack down (a pipeline's stage would otherwise prefix them with its own path).
      vpcName: nameTag(this),
    });
    for (const subnet of this.vpc.isolatedSubnets) Tags.of(subnet).add('Name', nameTag(subnet));
    this.addGatewayEndpoints();
    this.endpointSecurityGroup = new ec2.SecurityGroup(this, 'EndpointSecurityGroup', {
      vpc: this.vpc,
      description: 'Interface VPC endpoints: HTTPS from inside the VPC',
      allowAllOutbound: false,
    });
    // The CIDR literal (not the VPC's token) lets the compliance checks see the rule is VPC-internal.
    this.endpointSecurityGroup.addIngressRule(ec2.Peer.ipv4(network.cidr), ec2.Port.tcp(443), 'HTTPS from the VPC');
    this.addInterfaceEndpoints();
    const flowLog = this.vpc.addFlowLog('FlowLog', {
      destination: ec2.FlowLogDestination.toCloudWatchLogs(
        props.flowLogGroup,
        createFlowLogRole(this, props.flowLogGroup),
      ),
      trafficType: ec2.FlowLogTrafficType.ALL,
    });
    Tags.of(flowLog).add('Name', nameTag(flowLog));
    const region = Stack.of(this).region;
    this.gatewayPrefixLists = {
      s3: lookUpPrefixList(this, 'S3PrefixList', `com.amazonaws.${region}.s3`),
      dynamodb: lookUpPrefixList(this, 'DynamoDbPrefixList', `com.amazonaws.${region}.dynamodb`),
    };
  }

  /** S3 and DynamoDB through (free) gateway endpoints, for this account's principals and resources. */
  private addGatewayEndpoints(): void {
    const s3 = this.vpc.addGatewayEndpoint('S3', { service: ec2.GatewayVpcEndpointAwsService.S3 });
    for (const statement of s3EndpointStatements(Stack.of(this).region)) s3.addToPolicy(statement);
    const dynamodb = this.vpc.addGatewayEndpoint('DynamoDB', { service: ec2.GatewayVpcEndpointAwsService.DYNAMODB });
    dynamodb.addToPolicy(thisAccountOnly('ThisAccountsTablesOnly', { resourceAccount: true }));
  }

  /** One interface endpoint per entry of INTERFACE_ENDPOINTS, in the endpoint subnets. */
  private addInterfaceEndpoints(): void {
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
          resourceAccount: ['logs', 'sagemaker.runtime', 'sagemaker.api'].includes(name),
        }),
      );
    }
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

/** `ecr.api` -> `EcrApiEndpoint`. */
function endpointId(name: string): string {
  return (
    name
      .split(/[.-]/)
      .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
      .join('') + 'Endpoint'
  );
}

/** `<stack name>/<path below the stack>` without `Default` steps: `dapt-prod-network/Vpc/trainingSubnet1`. */
function nameTag(construct: Construct): string {
  const stack = Stack.of(construct);
  const below = construct.node.path.slice(stack.node.path.length + 1);
  return `${stack.stackName}/${below}`.replace(/\/Default(\/|$)/g, '/').replace(/\/$/, '');
}
