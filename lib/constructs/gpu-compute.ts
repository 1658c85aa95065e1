/**
 * The GPU side of training: P5 nodes on AWS Batch that exist only while a job runs. One launch
 * template (IMDSv2, encrypted root volume, EFA on every network card, NVMe scratch), a cluster
 * placement group in one zone, the ECS instance role, a managed EC2 compute environment at 0 vCPUs
 * while idle, and a job queue that cancels jobs which can never get capacity.
 */
import { Duration, Fn, Token } from 'aws-cdk-lib';
import * as batch from 'aws-cdk-lib/aws-batch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import { Construct } from 'constructs';
import type { TrainingConfig } from '../config/schema';
import { SUBNET_GROUPS } from './isolated-vpc';
import { ManagedRole } from './managed-role';
import { SCRATCH_USER_DATA } from './scratch-user-data';
import { P5_NODE } from './trainer-jobs';

export interface GpuComputeProps {
  /** The `training` section of the stage config: instance types, node count, capacity, zone, volume. */
  readonly training: TrainingConfig;
  /** Start of the launch template's and queue's names, e.g. `dapt-prod`. */
  readonly namePrefix: string;
  /** The VPC whose isolated training subnets the nodes launch in. */
  readonly vpc: ec2.IVpc;
  /** Lets the nodes of a job exchange all traffic (EFA/NCCL); put on every EFA interface. */
  readonly efaSecurityGroup: ec2.ISecurityGroup;
  /** Encrypts the nodes' root volumes; its policy must let the node launchers use it (see `grantEbsUse`). */
  readonly volumeKey: kms.IKey;
}

/** P5 capacity for training jobs, billed only while a job runs. */
export class GpuCompute extends Construct {
  /** The queue training and preflight jobs are submitted to. */
  readonly queue: batch.JobQueue;
  readonly computeEnvironment: batch.ManagedEc2EcsComputeEnvironment;
  readonly launchTemplate: ec2.CfnLaunchTemplate;

  constructor(scope: Construct, id: string, props: GpuComputeProps) {
    super(scope, id);
    const { training } = props;
    this.launchTemplate = createLaunchTemplate(this, props);
    const spot = training.capacity.mode === 'spot';
    this.computeEnvironment = new batch.ManagedEc2EcsComputeEnvironment(this, 'Environment', {
      vpc: props.vpc,
      vpcSubnets: { subnets: [gpuSubnet(props.vpc, training.availabilityZone)] },
      // Security groups live on the launch template's EFA interfaces; Batch forbids both.
      securityGroups: [],
      instanceTypes: training.instanceTypes.map((t) => new ec2.InstanceType(t)),
      useOptimalInstanceClasses: false,
      minvCpus: 0,
      maxvCpus: training.maxNodes * P5_NODE.vCpus,
      spot,
      allocationStrategy: spot
        ? batch.AllocationStrategy.SPOT_PRICE_CAPACITY_OPTIMIZED
        : batch.AllocationStrategy.BEST_FIT_PROGRESSIVE,
      images: [{ imageType: batch.EcsMachineImageType.ECS_AL2023_NVIDIA }],
      launchTemplate: ec2.LaunchTemplate.fromLaunchTemplateAttributes(this, 'ImportedLaunchTemplate', {
        launchTemplateId: this.launchTemplate.ref,
        versionNumber: this.launchTemplate.attrLatestVersionNumber,
      }),
      placementGroup: new ec2.PlacementGroup(this, 'PlacementGroup', { strategy: ec2.PlacementGroupStrategy.CLUSTER }),
      instanceRole: createInstanceRole(this),
      updateToLatestImageVersion: true,
    });
    // The construct passes only the launch template's id, and Batch then keeps the version it saw
    // at creation: name the latest version so a template change updates the environment.
    (this.computeEnvironment.node.defaultChild as batch.CfnComputeEnvironment).addPropertyOverride(
      'ComputeResources.LaunchTemplate.Version',
      this.launchTemplate.attrLatestVersionNumber,
    );
    this.queue = new batch.JobQueue(this, 'Queue', {
      jobQueueName: `${props.namePrefix}-gpu`,
      computeEnvironments: [{ computeEnvironment: this.computeEnvironment, order: 1 }],
      jobStateTimeLimitActions: timeLimitActions(training.runnableTimeoutMinutes),
    });
  }
}

/**
 * Jobs stuck in RUNNABLE are cancelled with a reason: after `runnableTimeoutMinutes` for lack of
 * capacity, and at the minimum wait when they can never fit (more nodes than maxNodes, a resource
 * no instance type has), which is a configuration error rather than a shortage.
 */
function timeLimitActions(runnableTimeoutMinutes: number): batch.JobStateTimeLimitAction[] {
  const cancel = (minutes: number, reason: batch.JobStateTimeLimitActionsReason): batch.JobStateTimeLimitAction => ({
    maxTime: Duration.minutes(minutes),
    reason,
    action: batch.JobStateTimeLimitActionsAction.CANCEL,
  });
  return [
    cancel(runnableTimeoutMinutes, batch.JobStateTimeLimitActionsReason.INSUFFICIENT_INSTANCE_CAPACITY),
    cancel(DEFAULT_UNFIT_JOB_MINUTES, batch.JobStateTimeLimitActionsReason.COMPUTE_ENVIRONMENT_MAX_RESOURCE),
    cancel(DEFAULT_UNFIT_JOB_MINUTES, batch.JobStateTimeLimitActionsReason.JOB_RESOURCE_REQUIREMENT),
  ];
}

/**
 * The launch template of every GPU node: IMDSv2 only, encrypted root volume, one EFA interface per
 * network card (card 0 also carries the node's IP; the others are EFA-only and use no address),
 * the capacity reservation or Capacity Block when configured, and the NVMe disks as /scratch.
 */
function createLaunchTemplate(scope: Construct, props: GpuComputeProps): ec2.CfnLaunchTemplate {
  const capacity = props.training.capacity;
  const reserved = capacity.mode === 'reservation' || capacity.mode === 'capacity-block';
  return new ec2.CfnLaunchTemplate(scope, 'LaunchTemplate', {
    launchTemplateName: `${props.namePrefix}-gpu`,
    launchTemplateData: {
      metadataOptions: { httpTokens: 'required', httpPutResponseHopLimit: 2, httpEndpoint: 'enabled' },
      blockDeviceMappings: [
        {
          deviceName: '/dev/xvda',
          ebs: {
            encrypted: true,
            kmsKeyId: props.volumeKey.keyArn,
            volumeSize: props.training.rootVolumeGiB,
            volumeType: 'gp3',
            deleteOnTermination: true,
          },
        },
      ],
      networkInterfaces: Array.from({ length: P5_NODE.efaInterfaces }, (_, card) => ({
        networkCardIndex: card,
        deviceIndex: card === 0 ? 0 : 1,
        interfaceType: card === 0 ? 'efa' : 'efa-only',
        groups: [props.efaSecurityGroup.securityGroupId],
        deleteOnTermination: true,
      })),
      ...(reserved
        ? {
            capacityReservationSpecification: {
              capacityReservationTarget: { capacityReservationId: capacity.reservationId },
            },
          }
        : {}),
      ...(capacity.mode === 'capacity-block' ? { instanceMarketOptions: { marketType: 'capacity-block' } } : {}),
      userData: Fn.base64(SCRATCH_USER_DATA),
      tagSpecifications: [{ resourceType: 'instance', tags: [{ key: 'Name', value: `${props.namePrefix}-gpu-node` }] }],
    },
  });
}

/**
 * The one training subnet the GPU nodes launch in: the configured zone (where a capacity
 * reservation or Capacity Block is) or the VPC's first. One zone, because the nodes of a
 * multi-node job share a cluster placement group, which cannot span zones.
 */
export function gpuSubnet(vpc: ec2.IVpc, availabilityZone: string | undefined): ec2.ISubnet {
  const subnets = vpc.selectSubnets({ subnetGroupName: SUBNET_GROUPS.training }).subnets;
  if (availabilityZone === undefined) return subnets[0]!;
  const zones = subnets.map((s) => s.availabilityZone);
  if (zones.some((z) => Token.isUnresolved(z))) {
    throw new Error(
      `training.availabilityZone is ${availabilityZone}, but this synth does not know the account's zones: set 'account' in the stage config or CDK_DEFAULT_ACCOUNT (cdk deploy sets it) so CDK can look them up`,
    );
  }
  const subnet = subnets.find((s) => s.availabilityZone === availabilityZone);
  if (!subnet)
    throw new Error(
      `training.availabilityZone is ${availabilityZone}, which is not one of the VPC's zones (${zones.join(', ')}); raise network.maxAzs or pick one of them`,
    );
  return subnet;
}

/** The ECS container-instance role, as a customer-managed policy instead of the AWS managed one. */
function createInstanceRole(scope: Construct): iam.Role {
  return new ManagedRole(scope, 'InstanceRole', {
    assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
    description: 'ECS agent on GPU training nodes (the AmazonEC2ContainerServiceforEC2Role actions, listed)',
    statements: [new iam.PolicyStatement({ actions: [...ECS_AGENT_ACTIONS], resources: ['*'] })],
    wildcards: [
      {
        pattern: /^\*$/,
        reason:
          'The ECS agent registers with a cluster Batch names at run time and polls for tasks; these actions (and ecr:GetAuthorizationToken, ec2:DescribeTags) have no usable resource-level scope.',
      },
    ],
  }).role;
}

/** What the ECS agent on a node calls: the actions of AmazonEC2ContainerServiceforEC2Role. */
const ECS_AGENT_ACTIONS = [
  'ec2:DescribeTags',
  'ecs:CreateCluster',
  'ecs:DeregisterContainerInstance',
  'ecs:DiscoverPollEndpoint',
  'ecs:Poll',
  'ecs:RegisterContainerInstance',
  'ecs:StartTelemetrySession',
  'ecs:UpdateContainerInstancesState',
  'ecs:SubmitAttachmentStateChanges',
  'ecs:SubmitContainerStateChange',
  'ecs:SubmitTaskStateChange',
  'ecs:TagResource',
  'ecr:GetAuthorizationToken',
] as const;

/** AWS Batch's shortest time-limit action: how long a job that can never fit holds the queue. */
const DEFAULT_UNFIT_JOB_MINUTES = 10;
