import { Fn, Stack, type StackProps } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import type { Construct } from 'constructs';
import type { ResolvedConfig } from '../config/load';
import { EfaSecurityGroup } from '../constructs/efa-security-group';
import { EncryptedLogGroup } from '../constructs/encrypted-log-group';
import { IsolatedVpc, SUBNET_GROUPS } from '../constructs/isolated-vpc';
import { PlatformKey } from '../constructs/platform-key';
import { PlatformParameters } from '../constructs/platform-parameters';

export { allowHttpsToServices, INTERFACE_ENDPOINTS, SUBNET_GROUPS } from '../constructs/isolated-vpc';

export interface NetworkStackProps extends StackProps {
  /** The resolved stage config; the stack reads `network`, `prefix`, `envId` and the log retention. */
  readonly config: ResolvedConfig;
}

/**
 * The network training and evaluation run in: an `IsolatedVpc` (no route to the internet, AWS
 * services through endpoints, every flow logged to a log group with this stack's key) and the
 * `EfaSecurityGroup` of the training nodes. Published through SSM for the stacks that come and go.
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
    const logsKey = new PlatformKey(this, 'LogsKey', {
      alias: `${config.prefix}-${config.envId}-network-logs`,
      description: `Encrypts the VPC flow logs of ${config.prefix}-${config.envId}`,
      destroyOnDelete,
    }).key;
    const flowLogGroup = new EncryptedLogGroup(this, 'FlowLogs', {
      encryptionKey: logsKey,
      retentionDays: config.logRetentionDays,
      destroyOnDelete,
    }).logGroup;
    const network = new IsolatedVpc(this, 'Vpc', { network: config.network, flowLogGroup });
    this.vpc = network.vpc;
    this.endpointSecurityGroup = network.endpointSecurityGroup;
    this.gatewayPrefixLists = network.gatewayPrefixLists;
    this.efaSecurityGroup = new EfaSecurityGroup(this, 'EfaSecurityGroup', {
      vpc: this.vpc,
      vpcCidr: config.network.cidr,
      s3PrefixListId: this.gatewayPrefixLists.s3,
    }).securityGroup;
    this.publishParameters(config.ssmRoot);
  }

  /** What the later stacks and the CLI read about the network. */
  private publishParameters(ssmRoot: string): void {
    const parameters = new PlatformParameters(this, 'Parameters', ssmRoot);
    const subnetIds = (group: string): string =>
      Fn.join(',', this.vpc.selectSubnets({ subnetGroupName: group }).subnetIds);
    parameters.publish('vpcId', this.vpc.vpcId, 'VPC of training and evaluation');
    parameters.publish('vpcCidr', this.vpc.vpcCidrBlock, 'CIDR of the VPC');
    parameters.publish(
      'availabilityZones',
      Fn.join(',', this.vpc.availabilityZones),
      'Availability zones, comma-separated, in subnet order',
    );
    parameters.publish(
      'trainingSubnetIds',
      subnetIds(SUBNET_GROUPS.training),
      'Isolated training subnets, comma-separated',
    );
    parameters.publish('evalSubnetIds', subnetIds(SUBNET_GROUPS.eval), 'Isolated evaluation subnets, comma-separated');
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
