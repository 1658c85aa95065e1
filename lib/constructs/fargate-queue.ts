import * as batch from 'aws-cdk-lib/aws-batch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Construct } from 'constructs';
import { allowHttpsToServices, SUBNET_GROUPS } from './isolated-vpc';

export interface FargateQueueProps {
  /** Start of the queue's name, e.g. `dapt-prod` (the queue is `<namePrefix>-cpu`). */
  readonly namePrefix: string;
  /** The VPC whose isolated training subnets the tasks run in. */
  readonly vpc: ec2.IVpc;
  /** The VPC's CIDR as a literal, so the compliance checks can see the egress stays inside it. */
  readonly vpcCidr: string;
  /** Prefix list of the S3 gateway endpoint: the tasks' only way to S3. */
  readonly s3PrefixListId: string;
  /** Most vCPUs the queue runs at once (`training.cpuQueueMaxvCpus`). */
  readonly maxvCpus: number;
}

/**
 * A Fargate queue for CPU jobs (data preparation, token caches): no instances to manage, nothing
 * billed while idle, and tasks that can reach only the VPC's endpoints.
 */
export class FargateQueue extends Construct {
  readonly queue: batch.JobQueue;
  /** Egress to the VPC endpoints and S3 only; the subnets have no internet route either. */
  readonly securityGroup: ec2.SecurityGroup;

  constructor(scope: Construct, id: string, props: FargateQueueProps) {
    super(scope, id);
    this.securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc: props.vpc,
      description: 'Data-preparation jobs: outbound to VPC endpoints only (the subnets have no internet route)',
      allowAllOutbound: false,
    });
    allowHttpsToServices(this.securityGroup, props.vpcCidr, [props.s3PrefixListId]);
    const environment = new batch.FargateComputeEnvironment(this, 'Environment', {
      vpc: props.vpc,
      vpcSubnets: { subnetGroupName: SUBNET_GROUPS.training },
      securityGroups: [this.securityGroup],
      maxvCpus: props.maxvCpus,
    });
    this.queue = new batch.JobQueue(this, 'Queue', {
      jobQueueName: `${props.namePrefix}-cpu`,
      computeEnvironments: [{ computeEnvironment: environment, order: 1 }],
    });
  }
}
