import { Aws, Duration, Fn, Size, Stack, type StackProps, Token } from 'aws-cdk-lib';
import * as batch from 'aws-cdk-lib/aws-batch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';

import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as cr from 'aws-cdk-lib/custom-resources';
import type { Construct } from 'constructs';

import type { ResolvedConfig } from '../config/load';
import { EncryptedLogGroup } from '../constructs/encrypted-log-group';
import { ManagedRole } from '../constructs/managed-role';
import {
  createExecutionRole,
  createGpuContainer,
  FARGATE_RETRY_STRATEGIES,
  P5_NODE,
  RUNS_PREFIX,
  TrainerJobs,
  trainerEnvironment,
  trainerImage,
  type TrainingBuckets,
} from '../constructs/trainer-jobs';

export { CONFIG_ERROR_EXIT_CODE, P5_NODE, RUNS_PREFIX } from '../constructs/trainer-jobs';
import { deployTimeCall } from '../constructs/deploy-time-call';
import { PlatformKey } from '../constructs/platform-key';
import { repositoryImage } from '../constructs/repository-image';
import { PlatformParameters, readPlatformParameter } from '../constructs/platform-parameters';
import { allowHttpsToServices, SUBNET_GROUPS } from './network-stack';

export interface TrainingStackProps extends StackProps {
  readonly config: ResolvedConfig;
  readonly vpc: ec2.IVpc;
  /** Lets the nodes of a job exchange all traffic (EFA/NCCL). */
  readonly efaSecurityGroup: ec2.ISecurityGroup;
  /** Prefix list of the S3 gateway endpoint, for the Fargate jobs' egress. */
  readonly s3PrefixListId: string;
}

/**
 * GPU training on AWS Batch: a managed EC2 compute environment limited to P5 (0 vCPUs while
 * idle) with EFA on every network card, the NVMe instance store as scratch, IMDSv2 and encrypted
 * root volumes; a GPU queue that cancels jobs stuck in RUNNABLE for lack of capacity; a Fargate
 * queue for data preparation; single-node, multi-node and preflight job definitions running the
 * trainer image built from containers/trainer.
 */
export class TrainingStack extends Stack {
  readonly gpuQueue: batch.JobQueue;
  readonly cpuQueue: batch.JobQueue;
  /** Environment-wide trainer jobs; only in an experiment stage (production runs use run stacks). */
  readonly singleNodeJob?: batch.EcsJobDefinition;
  readonly multiNodeJob?: batch.MultiNodeJobDefinition;
  readonly tokenizeJob?: batch.EcsJobDefinition;
  readonly preflightJob: batch.EcsJobDefinition;
  /** Environment-wide data pipeline; only in an experiment stage (production runs bring their own, scoped to the run). */
  readonly dataPrepJob?: batch.EcsJobDefinition;
  readonly jobRole?: iam.Role;

  constructor(scope: Construct, id: string, props: TrainingStackProps) {
    super(scope, id, props);
    const { config } = props;
    const training = config.training;
    const destroyOnDelete = config.behaviour.destroyOnDelete;

    const key = new PlatformKey(this, 'TrainingKey', {
      alias: `${config.prefix}-${config.envId}-training`,
      description: `Encrypts training root volumes and job logs of ${config.prefix}-${config.envId}`,
      destroyOnDelete,
    }).key;
    grantEbsUse(this, key);
    const logs = new EncryptedLogGroup(this, 'JobLogs', {
      encryptionKey: key,
      retentionDays: config.logRetentionDays,
      destroyOnDelete,
    });

    // Inputs and outputs through SSM, so the lake holds no export lock for this stack.
    const bucket = (zone: 'datasets' | 'models' | 'artifacts' | 'curated' | 'raw'): s3.IBucket =>
      s3.Bucket.fromBucketName(
        this,
        `${zone.charAt(0).toUpperCase()}${zone.slice(1)}Bucket`,
        readPlatformParameter(this, config.ssmRoot, `${zone}Bucket`),
      );
    // Read only where used: production has no environment-wide trainer or data jobs, and an unused
    // template parameter is a cfn-lint finding (W2001).
    const lakeKeyArn = (): string => readPlatformParameter(this, config.ssmRoot, 'lakeKeyArn');
    const jobBuckets = { datasets: bucket('datasets'), models: bucket('models'), artifacts: bucket('artifacts') };
    let curated: s3.IBucket | undefined;
    const buckets = (): TrainingBuckets => ({ ...jobBuckets, curated: (curated ??= bucket('curated')) });

    const image = trainerImage(this);

    const instanceRole = createInstanceRole(this);
    const launchTemplate = createLaunchTemplate(this, config, key, props.efaSecurityGroup);
    const placementGroup = new ec2.PlacementGroup(this, 'PlacementGroup', {
      strategy: ec2.PlacementGroupStrategy.CLUSTER,
    });

    const gpuEnvironment = new batch.ManagedEc2EcsComputeEnvironment(this, 'GpuEnvironment', {
      vpc: props.vpc,
      vpcSubnets: { subnets: [gpuSubnet(props.vpc, training.availabilityZone)] },
      // Security groups live on the launch template's EFA interfaces; Batch forbids both.
      securityGroups: [],
      instanceTypes: training.instanceTypes.map((t) => new ec2.InstanceType(t)),
      useOptimalInstanceClasses: false,
      minvCpus: 0,
      maxvCpus: training.maxNodes * P5_NODE.vCpus,
      spot: training.capacity.mode === 'spot',
      allocationStrategy:
        training.capacity.mode === 'spot'
          ? batch.AllocationStrategy.SPOT_PRICE_CAPACITY_OPTIMIZED
          : batch.AllocationStrategy.BEST_FIT_PROGRESSIVE,
      images: [{ imageType: batch.EcsMachineImageType.ECS_AL2023_NVIDIA }],
      launchTemplate: ec2.LaunchTemplate.fromLaunchTemplateAttributes(this, 'ImportedLaunchTemplate', {
        launchTemplateId: launchTemplate.ref,
        versionNumber: launchTemplate.attrLatestVersionNumber,
      }),
      placementGroup,
      instanceRole,
      updateToLatestImageVersion: true,
    });
    // The construct passes only the launch template's id, and Batch then keeps the version it saw
    // at creation: name the latest version so a template change updates the environment.
    (gpuEnvironment.node.defaultChild as batch.CfnComputeEnvironment).addPropertyOverride(
      'ComputeResources.LaunchTemplate.Version',
      launchTemplate.attrLatestVersionNumber,
    );

    this.gpuQueue = new batch.JobQueue(this, 'GpuQueue', {
      jobQueueName: `${config.prefix}-${config.envId}-gpu`,
      computeEnvironments: [{ computeEnvironment: gpuEnvironment, order: 1 }],
      jobStateTimeLimitActions: [
        {
          maxTime: Duration.minutes(training.runnableTimeoutMinutes),
          reason: batch.JobStateTimeLimitActionsReason.INSUFFICIENT_INSTANCE_CAPACITY,
          action: batch.JobStateTimeLimitActionsAction.CANCEL,
        },
        // A job that can never fit (more nodes than maxNodes, wrong instance type) is a
        // configuration error: cancel it at the minimum wait instead of holding the queue.
        {
          maxTime: Duration.minutes(10),
          reason: batch.JobStateTimeLimitActionsReason.COMPUTE_ENVIRONMENT_MAX_RESOURCE,
          action: batch.JobStateTimeLimitActionsAction.CANCEL,
        },
        {
          maxTime: Duration.minutes(10),
          reason: batch.JobStateTimeLimitActionsReason.JOB_RESOURCE_REQUIREMENT,
          action: batch.JobStateTimeLimitActionsAction.CANCEL,
        },
      ],
    });

    const cpuSecurityGroup = new ec2.SecurityGroup(this, 'CpuJobSecurityGroup', {
      vpc: props.vpc,
      description: 'Data-preparation jobs: outbound to VPC endpoints only (the subnets have no internet route)',
      allowAllOutbound: false,
    });
    allowHttpsToServices(cpuSecurityGroup, config.network.cidr, [props.s3PrefixListId]);
    const cpuEnvironment = new batch.FargateComputeEnvironment(this, 'CpuEnvironment', {
      vpc: props.vpc,
      vpcSubnets: { subnetGroupName: SUBNET_GROUPS.training },
      securityGroups: [cpuSecurityGroup],
      maxvCpus: training.cpuQueueMaxvCpus,
    });
    this.cpuQueue = new batch.JobQueue(this, 'CpuQueue', {
      jobQueueName: `${config.prefix}-${config.envId}-cpu`,
      computeEnvironments: [{ computeEnvironment: cpuEnvironment, order: 1 }],
    });

    // Immutable: the managed ExecutionPolicy already covers the image pull CDK would add inline.
    const executionRole = createExecutionRole(this, logs.logGroup.logGroupArn, key).withoutPolicyUpdates();
    // An experiment stage belongs to one experiment, so its trainer jobs may write the whole
    // `runs/` prefix of its own lake. A shared (production) environment gets no trainer job
    // definitions: each experiment deploys a run stack whose role writes only `runs/<name>/`.
    if (config.stage !== 'production') {
      const trainerJobs = new TrainerJobs(this, 'TrainerJobs', {
        config,
        namePrefix: `${config.prefix}-${config.envId}`,
        writePrefix: RUNS_PREFIX,
        buckets: buckets(),
        lakeKeyArn: lakeKeyArn(),
        image,
        executionRole,
        logGroup: logs.logGroup,
      });
      this.jobRole = trainerJobs.jobRole;
      this.singleNodeJob = trainerJobs.singleNode;
      this.multiNodeJob = trainerJobs.multiNode;
      this.tokenizeJob = trainerJobs.tokenize;
    }
    // The preflight touches no data: its role has no permissions at all.
    const preflightRole = new iam.Role(this, 'PreflightRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
      description: 'NCCL/EFA preflight jobs: no permissions needed',
    });

    this.preflightJob = new batch.EcsJobDefinition(this, 'PreflightJob', {
      jobDefinitionName: `${config.prefix}-${config.envId}-preflight`,
      container: createGpuContainer(this, 'Preflight', {
        image: ecs.ContainerImage.fromDockerImageAsset(image),
        command: ['torchrun', '--standalone', `--nproc_per_node=${P5_NODE.gpus}`, '-m', 'dapt_trainer.preflight'],
        environment: { ...trainerEnvironment(config, jobBuckets), NCCL_DEBUG: 'INFO' },
        jobRole: preflightRole,
        executionRole,
        logGroup: logs.logGroup,
      }),
      retryAttempts: 1,
      timeout: DEFAULT_PREFLIGHT_TIMEOUT,
      propagateTags: true,
    });

    if (config.stage !== 'production') {
      this.dataPrepJob = createDataPrepJob(this, {
        config,
        namePrefix: `${config.prefix}-${config.envId}`,
        writePrefix: '',
        buckets: { raw: bucket('raw'), curated: buckets().curated, datasets: jobBuckets.datasets },
        lakeKeyArn: lakeKeyArn(),
        executionRole,
        logGroup: logs.logGroup,
      });
    }

    const parameters = new PlatformParameters(this, 'Parameters', config.ssmRoot);
    parameters.publish('trainingGpuQueueArn', this.gpuQueue.jobQueueArn, 'Job queue of GPU training jobs');
    parameters.publish('trainingCpuQueueArn', this.cpuQueue.jobQueueArn, 'Job queue of data-preparation jobs');
    parameters.publish(
      'trainingSingleNodeJobDefinitionArn',
      this.singleNodeJob?.jobDefinitionArn ?? 'none',
      "Single-node training job definition ('none' in production: runs bring their own)",
    );
    parameters.publish(
      'trainingMultiNodeJobDefinitionArn',
      this.multiNodeJob?.jobDefinitionArn ?? 'none',
      "Multi-node training job definition ('none' when maxNodes is 1 or in production)",
    );
    parameters.publish(
      'trainingPreflightJobDefinitionArn',
      this.preflightJob.jobDefinitionArn,
      'NCCL/EFA preflight job definition',
    );
    parameters.publish(
      'trainingDataPrepJobDefinitionArn',
      this.dataPrepJob?.jobDefinitionArn ?? 'none',
      "Training-data pipeline job definition (CPU queue; 'none' in production: runs bring their own)",
    );
    parameters.publish(
      'trainingTokenizeJobDefinitionArn',
      this.tokenizeJob?.jobDefinitionArn ?? 'none',
      "Token-cache job definition (CPU queue; 'none' in production: runs bring their own)",
    );
    parameters.publish('trainingKeyArn', key.keyArn, 'KMS key of training volumes and job logs');
    parameters.publish('trainingJobLogGroup', logs.logGroup.logGroupName, 'Log group of training jobs');
    parameters.publish('trainingMaxNodes', String(training.maxNodes), 'Most nodes one training job may use');
    parameters.publish('trainingCapacityMode', training.capacity.mode, 'How training capacity is bought');
  }
}

/**
 * The launch template of every GPU node: IMDSv2 only, encrypted root volume, one EFA interface per
 * network card (card 0 also carries the node's IP; the others are EFA-only and use no address),
 * the capacity reservation or Capacity Block when configured, and the NVMe disks as /scratch.
 */
function createLaunchTemplate(
  scope: Construct,
  config: ResolvedConfig,
  key: kms.IKey,
  efaSecurityGroup: ec2.ISecurityGroup,
): ec2.CfnLaunchTemplate {
  const capacity = config.training.capacity;
  return new ec2.CfnLaunchTemplate(scope, 'GpuLaunchTemplate', {
    launchTemplateName: `${config.prefix}-${config.envId}-gpu`,
    launchTemplateData: {
      metadataOptions: { httpTokens: 'required', httpPutResponseHopLimit: 2, httpEndpoint: 'enabled' },
      blockDeviceMappings: [
        {
          deviceName: '/dev/xvda',
          ebs: {
            encrypted: true,
            kmsKeyId: key.keyArn,
            volumeSize: config.training.rootVolumeGiB,
            volumeType: 'gp3',
            deleteOnTermination: true,
          },
        },
      ],
      networkInterfaces: Array.from({ length: P5_NODE.efaInterfaces }, (_, card) => ({
        networkCardIndex: card,
        deviceIndex: card === 0 ? 0 : 1,
        interfaceType: card === 0 ? 'efa' : 'efa-only',
        groups: [efaSecurityGroup.securityGroupId],
        deleteOnTermination: true,
      })),
      ...(capacity.mode === 'reservation' || capacity.mode === 'capacity-block'
        ? {
            capacityReservationSpecification: {
              capacityReservationTarget: { capacityReservationId: capacity.reservationId },
            },
          }
        : {}),
      ...(capacity.mode === 'capacity-block' ? { instanceMarketOptions: { marketType: 'capacity-block' } } : {}),
      userData: Fn.base64(SCRATCH_USER_DATA),
      tagSpecifications: [
        { resourceType: 'instance', tags: [{ key: 'Name', value: `${config.prefix}-${config.envId}-gpu-node` }] },
      ],
    },
  });
}

/**
 * The one training subnet the GPU nodes launch in: the configured zone (where a capacity
 * reservation or Capacity Block is) or the VPC's first. One zone, because the nodes of a
 * multi-node job share a cluster placement group, which cannot span zones.
 */
function gpuSubnet(vpc: ec2.IVpc, availabilityZone: string | undefined): ec2.ISubnet {
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

/**
 * Assembles the instance-store NVMe disks into one RAID-0 volume mounted at /scratch (MIME, as
 * Batch requires). The ECS-optimized AL2023 image has no mdadm, so it is installed from the
 * Amazon Linux repositories (S3, reached through the gateway endpoint). Whatever fails, /scratch
 * ends writable for the trainer's user, and /scratch/.dapt-scratch says what it is (RAID-0 over
 * N disks, one disk, or the root volume) for the trainer to log; a degraded layout is also
 * written to the console log (`aws ec2 get-console-output`).
 */
const SCRATCH_USER_DATA = [
  'MIME-Version: 1.0',
  'Content-Type: multipart/mixed; boundary="==DAPT=="',
  '',
  '--==DAPT==',
  'Content-Type: text/x-shellscript; charset="us-ascii"',
  '',
  '#!/bin/bash',
  'set -ux',
  'mkdir -p /scratch',
  'layout="root volume"',
  'trap \'chmod 1777 /scratch; echo "$layout" > /scratch/.dapt-scratch; chmod 0644 /scratch/.dapt-scratch\' EXIT',
  'disks=$(lsblk -d -n -o NAME,MODEL | awk \'/Instance Storage/ {print "/dev/"$1}\')',
  'count=$(echo "$disks" | grep -c . || true)',
  'say() { echo "dapt-scratch: $*"; echo "dapt-scratch: $*" >/dev/console 2>/dev/null || true; }',
  'if [ "$count" -gt 1 ]; then',
  '  command -v mdadm >/dev/null || dnf install -y -q mdadm || say "mdadm could not be installed"',
  '  if command -v mdadm >/dev/null && mdadm --create /dev/md0 --level=0 --raid-devices="$count" $disks --run && mkfs.xfs -f /dev/md0 && mount /dev/md0 /scratch; then',
  '    layout="raid0 over $count NVMe disks"',
  '  else',
  '    say "RAID-0 over $count disks failed; falling back to one disk"',
  '    mdadm --stop /dev/md0 2>/dev/null || true',
  '    first=$(echo "$disks" | head -n1)',
  '    if mkfs.xfs -f "$first" && mount "$first" /scratch; then layout="DEGRADED: one of $count NVMe disks ($first)"; else say "no NVMe disk mounted; /scratch is on the root volume"; layout="DEGRADED: root volume"; fi',
  '  fi',
  'elif [ "$count" -eq 1 ]; then',
  '  if mkfs.xfs -f "$disks" && mount "$disks" /scratch; then layout="one NVMe disk"; else say "NVMe disk $disks not mounted; /scratch is on the root volume"; layout="DEGRADED: root volume"; fi',
  'fi',
  'say "/scratch: $layout"',
  '--==DAPT==--',
].join('\n');

/** The service-linked roles that launch Batch's EC2 nodes: Auto Scaling (on-demand) and EC2 Fleet (Spot, reservations). */
const NODE_LAUNCHER_ROLES = [
  { service: 'autoscaling.amazonaws.com', role: 'AWSServiceRoleForAutoScaling' },
  { service: 'ec2fleet.amazonaws.com', role: 'AWSServiceRoleForEC2Fleet' },
] as const;

/**
 * Lets the node launchers encrypt root volumes with the key. Service-linked roles carry no IAM
 * permissions for customer keys, so the key policy names them directly (the statements EC2 Auto
 * Scaling documents in "Required AWS KMS key policy for use with encrypted volumes"). KMS rejects a
 * policy naming a role that does not exist, and an account that never used Auto Scaling or EC2
 * Fleet has neither, so each is created first if missing.
 */
function grantEbsUse(scope: Construct, key: kms.Key): void {
  const account = Stack.of(scope).account;
  const principals = NODE_LAUNCHER_ROLES.map(({ service, role }) => {
    const ensure = deployTimeCall(scope, `Ensure${role}`, {
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
          resources: [`arn:${Aws.PARTITION}:iam::${account}:role/aws-service-role/${service}/${role}`],
          conditions: { StringEquals: { 'iam:AWSServiceName': service } },
        }),
      ],
    });
    key.node.addDependency(ensure);
    return new iam.ArnPrincipal(`arn:${Aws.PARTITION}:iam::${account}:role/aws-service-role/${service}/${role}`);
  });
  key.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: 'AllowNodeLaunchersToUseTheKeyForRootVolumes',
      principals,
      actions: ['kms:Encrypt', 'kms:Decrypt', 'kms:ReEncrypt*', 'kms:GenerateDataKey*', 'kms:DescribeKey'],
      resources: ['*'],
    }),
  );
  key.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: 'AllowNodeLaunchersToGrantTheKeyToEc2',
      principals,
      actions: ['kms:CreateGrant'],
      resources: ['*'],
      conditions: { Bool: { 'kms:GrantIsForAWSResource': true } },
    }),
  );
}

/** The ECS container-instance role, as a customer-managed policy instead of the AWS managed one. */
function createInstanceRole(scope: Construct): iam.Role {
  return new ManagedRole(scope, 'InstanceRole', {
    assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
    description: 'ECS agent on GPU training nodes (the AmazonEC2ContainerServiceforEC2Role actions, listed)',
    statements: [
      new iam.PolicyStatement({
        actions: [
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
        ],
        resources: ['*'],
      }),
    ],
    wildcards: [
      {
        pattern: /^\*$/,
        reason:
          'The ECS agent registers with a cluster Batch names at run time and polls for tasks; these actions (and ecr:GetAuthorizationToken, ec2:DescribeTags) have no usable resource-level scope.',
      },
    ],
  }).role;
}

export interface DataPrepJobProps {
  readonly config: ResolvedConfig;
  /** Start of the job definition's name, e.g. `dapt-exp-demo` or `dapt-prod-run-lora7b`. */
  readonly namePrefix: string;
  /** Prefix of the curated and datasets zones the job may write: '' (the whole zones, in an experiment stage) or `runs/<run>/`. */
  readonly writePrefix: string;
  readonly buckets: Record<'raw' | 'curated' | 'datasets', s3.IBucket>;
  readonly lakeKeyArn: string;
  readonly executionRole: iam.IRole;
  readonly logGroup: logs.ILogGroup;
}

/**
 * The training-data pipeline (containers/data) on the Fargate queue: reads the raw, curated and
 * datasets zones, writes curated records and dataset manifests under `writePrefix`. Its image is
 * built from the repository root because dapt-data depends on dapt-eval; everything else in the
 * repository is excluded from the context (the same settings everywhere: one asset, one build).
 */
export function createDataPrepJob(scope: Construct, props: DataPrepJobProps): batch.EcsJobDefinition {
  const { config, buckets, writePrefix } = props;
  const image = repositoryImage(scope, 'DataPrepImage', {
    dockerfile: 'containers/data/Dockerfile',
    packages: ['eval', 'data'],
  });
  const written = writePrefix === '' ? 'whole zones' : `under '${writePrefix}' only`;
  const role = new ManagedRole(scope, 'DataPrepRole', {
    assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
    description: `Training-data pipeline jobs of ${props.namePrefix}: read raw inputs, write curated records and dataset manifests (${written})`,
    statements: [
      new iam.PolicyStatement({
        sid: 'ReadInputs',
        actions: ['s3:GetObject'],
        resources: [buckets.raw, buckets.curated, buckets.datasets].map((b) => b.arnForObjects('*')),
      }),
      new iam.PolicyStatement({
        sid: 'ListZones',
        actions: ['s3:ListBucket'],
        resources: [buckets.raw, buckets.curated, buckets.datasets].map((b) => b.bucketArn),
      }),
      new iam.PolicyStatement({
        sid: 'WriteCuratedAndManifests',
        actions: ['s3:PutObject', 's3:AbortMultipartUpload'],
        resources: [buckets.curated, buckets.datasets].map((b) => b.arnForObjects(`${writePrefix}*`)),
      }),
      new iam.PolicyStatement({
        sid: 'UseLakeKey',
        actions: ['kms:Decrypt', 'kms:GenerateDataKey'],
        resources: [props.lakeKeyArn],
      }),
      new iam.PolicyStatement({ sid: 'DetectPii', actions: ['comprehend:DetectPiiEntities'], resources: ['*'] }),
    ],
    wildcards: [
      {
        pattern: /^\*$/,
        reason:
          'comprehend:DetectPiiEntities (redaction with `detector: comprehend`) has no resource-level permissions.',
      },
      {
        pattern: /^arn:(aws[a-z-]*|<AWS::Partition>):s3:::<[A-Za-z0-9]+>\/\*$/,
        reason:
          'The pipeline reads whole input zones (names chosen by its config); in an experiment stage, which belongs to one experiment, it also writes new versioned outputs there (manifests refuse overwrites). It never touches models or artifacts.',
      },
      ...(writePrefix === ''
        ? []
        : [
            {
              pattern: new RegExp(
                `^arn:(aws[a-z-]*|<AWS::Partition>):s3:::<[A-Za-z0-9]+>/${writePrefix.replace(/[/-]/g, '\\$&')}\\*$`,
              ),
              reason: `Curated records and manifests of this run, under '${writePrefix}' only; keys are chosen by the pipeline's config.`,
            },
          ]),
    ],
  }).role;
  return new batch.EcsJobDefinition(scope, 'DataPrepJob', {
    jobDefinitionName: `${props.namePrefix}-data-prep`,
    container: new batch.EcsFargateContainerDefinition(scope, 'DataPrepContainer', {
      image: ecs.ContainerImage.fromDockerImageAsset(image),
      cpu: DEFAULT_DATA_PREP_VCPUS,
      memory: DEFAULT_DATA_PREP_MEMORY,
      ephemeralStorageSize: DEFAULT_DATA_PREP_DISK,
      jobRole: role,
      executionRole: props.executionRole,
      logging: ecs.LogDriver.awsLogs({ logGroup: props.logGroup, streamPrefix: 'data-prep' }),
      environment: { DAPT_STAGE: config.stage, DAPT_ENV_ID: config.envId, DAPT_WRITE_PREFIX: writePrefix },
      fargateCpuArchitecture: ecs.CpuArchitecture.X86_64,
    }),
    retryAttempts: DEFAULT_FARGATE_ATTEMPTS,
    // The pipeline resumes finished steps on a retry.
    retryStrategies: FARGATE_RETRY_STRATEGIES,
    timeout: DEFAULT_DATA_PREP_TIMEOUT,
    propagateTags: true,
  });
}

/** The data pipeline holds each step's records in memory; 4 vCPUs / 30 GiB covers a few GB of text. */
const DEFAULT_DATA_PREP_VCPUS = 4;
const DEFAULT_DATA_PREP_MEMORY = Size.gibibytes(30);
/** Local disk of a data-prep task (Fargate's ephemeral storage): inputs and step outputs before upload. */
const DEFAULT_DATA_PREP_DISK = Size.gibibytes(100);
/** A data pipeline that has not finished in half a day is stuck on something, not slow. */
const DEFAULT_DATA_PREP_TIMEOUT = Duration.hours(12);
/** Attempts of a Fargate job whose task could not start (the retry strategies say which). */
const DEFAULT_FARGATE_ATTEMPTS = 2;
/** An NCCL all-reduce over one node takes minutes; longer means EFA or the node is broken. */
const DEFAULT_PREFLIGHT_TIMEOUT = Duration.minutes(30);
