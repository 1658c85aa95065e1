import * as path from 'node:path';
import { Aws, Duration, Fn, IgnoreMode, Size, Stack, type StackProps } from 'aws-cdk-lib';
import * as batch from 'aws-cdk-lib/aws-batch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';

import { DockerImageAsset, Platform as AssetPlatform } from 'aws-cdk-lib/aws-ecr-assets';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
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
import { PlatformKey } from '../constructs/platform-key';
import { PlatformParameters, readPlatformParameter } from '../constructs/platform-parameters';
import { SUBNET_GROUPS } from './network-stack';

const REPO_ROOT = path.join(__dirname, '..', '..');

export interface TrainingStackProps extends StackProps {
  readonly config: ResolvedConfig;
  readonly vpc: ec2.IVpc;
  /** Lets the nodes of a job exchange all traffic (EFA/NCCL). */
  readonly efaSecurityGroup: ec2.ISecurityGroup;
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
  readonly dataPrepJob: batch.EcsJobDefinition;
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
    grantEbsUse(key);
    const logs = new EncryptedLogGroup(this, 'JobLogs', { encryptionKey: key, retentionDays: config.logRetentionDays, destroyOnDelete });

    // Inputs and outputs through SSM, so the lake holds no export lock for this stack.
    const bucket = (zone: 'datasets' | 'models' | 'artifacts' | 'curated' | 'raw'): s3.IBucket =>
      s3.Bucket.fromBucketName(this, `${zone.charAt(0).toUpperCase()}${zone.slice(1)}Bucket`, readPlatformParameter(this, config.ssmRoot, `${zone}Bucket`));
    const lakeKeyArn = readPlatformParameter(this, config.ssmRoot, 'lakeKeyArn');
    const buckets: TrainingBuckets = { datasets: bucket('datasets'), models: bucket('models'), artifacts: bucket('artifacts'), curated: bucket('curated'), raw: bucket('raw') };

    const image = trainerImage(this);

    const instanceRole = createInstanceRole(this);
    const launchTemplate = createLaunchTemplate(this, config, key, props.efaSecurityGroup);
    const placementGroup = new ec2.PlacementGroup(this, 'PlacementGroup', { strategy: ec2.PlacementGroupStrategy.CLUSTER });

    // One subnet: the nodes of a multi-node job must share an AZ and a cluster placement group.
    const trainingSubnets = props.vpc.selectSubnets({ subnetGroupName: SUBNET_GROUPS.training });
    const gpuEnvironment = new batch.ManagedEc2EcsComputeEnvironment(this, 'GpuEnvironment', {
      vpc: props.vpc,
      vpcSubnets: { subnets: [trainingSubnets.subnets[0]!] },
      // Security groups live on the launch template's EFA interfaces; Batch forbids both.
      securityGroups: [],
      instanceTypes: training.instanceTypes.map((t) => new ec2.InstanceType(t)),
      useOptimalInstanceClasses: false,
      minvCpus: 0,
      maxvCpus: training.maxNodes * P5_NODE.vCpus,
      spot: training.capacity.mode === 'spot',
      allocationStrategy: training.capacity.mode === 'spot' ? batch.AllocationStrategy.SPOT_PRICE_CAPACITY_OPTIMIZED : batch.AllocationStrategy.BEST_FIT_PROGRESSIVE,
      images: [{ imageType: batch.EcsMachineImageType.ECS_AL2023_NVIDIA }],
      launchTemplate: ec2.LaunchTemplate.fromLaunchTemplateAttributes(this, 'ImportedLaunchTemplate', {
        launchTemplateId: launchTemplate.ref,
        versionNumber: launchTemplate.attrLatestVersionNumber,
      }),
      placementGroup,
      instanceRole,
      updateToLatestImageVersion: true,
    });

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
        { maxTime: Duration.minutes(10), reason: batch.JobStateTimeLimitActionsReason.COMPUTE_ENVIRONMENT_MAX_RESOURCE, action: batch.JobStateTimeLimitActionsAction.CANCEL },
        { maxTime: Duration.minutes(10), reason: batch.JobStateTimeLimitActionsReason.JOB_RESOURCE_REQUIREMENT, action: batch.JobStateTimeLimitActionsAction.CANCEL },
      ],
    });

    const cpuSecurityGroup = new ec2.SecurityGroup(this, 'CpuJobSecurityGroup', {
      vpc: props.vpc,
      description: 'Data-preparation jobs: outbound to VPC endpoints only (the subnets have no internet route)',
      allowAllOutbound: true,
    });
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
        buckets,
        lakeKeyArn,
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
        environment: { ...trainerEnvironment(config, buckets), NCCL_DEBUG: 'INFO' },
        jobRole: preflightRole,
        executionRole,
        logGroup: logs.logGroup,
      }),
      retryAttempts: 1,
      timeout: Duration.minutes(30),
      propagateTags: true,
    });

    this.dataPrepJob = createDataPrepJob(this, config, buckets, lakeKeyArn, executionRole, logs.logGroup);

    const parameters = new PlatformParameters(this, 'Parameters', config.ssmRoot);
    parameters.publish('trainingGpuQueueArn', this.gpuQueue.jobQueueArn, 'Job queue of GPU training jobs');
    parameters.publish('trainingCpuQueueArn', this.cpuQueue.jobQueueArn, 'Job queue of data-preparation jobs');
    parameters.publish('trainingSingleNodeJobDefinitionArn', this.singleNodeJob?.jobDefinitionArn ?? 'none', "Single-node training job definition ('none' in production: runs bring their own)");
    parameters.publish('trainingMultiNodeJobDefinitionArn', this.multiNodeJob?.jobDefinitionArn ?? 'none', "Multi-node training job definition ('none' when maxNodes is 1 or in production)");
    parameters.publish('trainingPreflightJobDefinitionArn', this.preflightJob.jobDefinitionArn, 'NCCL/EFA preflight job definition');
    parameters.publish('trainingDataPrepJobDefinitionArn', this.dataPrepJob.jobDefinitionArn, 'Training-data pipeline job definition (CPU queue)');
    parameters.publish('trainingTokenizeJobDefinitionArn', this.tokenizeJob?.jobDefinitionArn ?? 'none', "Token-cache job definition (CPU queue; 'none' in production: runs bring their own)");
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
function createLaunchTemplate(scope: Construct, config: ResolvedConfig, key: kms.IKey, efaSecurityGroup: ec2.ISecurityGroup): ec2.CfnLaunchTemplate {
  const capacity = config.training.capacity;
  return new ec2.CfnLaunchTemplate(scope, 'GpuLaunchTemplate', {
    launchTemplateName: `${config.prefix}-${config.envId}-gpu`,
    launchTemplateData: {
      metadataOptions: { httpTokens: 'required', httpPutResponseHopLimit: 2, httpEndpoint: 'enabled' },
      blockDeviceMappings: [
        {
          deviceName: '/dev/xvda',
          ebs: { encrypted: true, kmsKeyId: key.keyArn, volumeSize: config.training.rootVolumeGiB, volumeType: 'gp3', deleteOnTermination: true },
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
        ? { capacityReservationSpecification: { capacityReservationTarget: { capacityReservationId: capacity.reservationId } } }
        : {}),
      ...(capacity.mode === 'capacity-block' ? { instanceMarketOptions: { marketType: 'capacity-block' } } : {}),
      userData: Fn.base64(SCRATCH_USER_DATA),
      tagSpecifications: [{ resourceType: 'instance', tags: [{ key: 'Name', value: `${config.prefix}-${config.envId}-gpu-node` }] }],
    },
  });
}

/** Assembles the instance-store NVMe disks into one RAID-0 volume mounted at /scratch (MIME, as Batch requires). */
const SCRATCH_USER_DATA = [
  'MIME-Version: 1.0',
  'Content-Type: multipart/mixed; boundary="==DAPT=="',
  '',
  '--==DAPT==',
  'Content-Type: text/x-shellscript; charset="us-ascii"',
  '',
  '#!/bin/bash',
  'set -euxo pipefail',
  'mkdir -p /scratch',
  "disks=$(lsblk -d -n -o NAME,MODEL | awk '/Instance Storage/ {print \"/dev/\"$1}')",
  'count=$(echo "$disks" | grep -c . || true)',
  'if [ "$count" -gt 1 ] && command -v mdadm >/dev/null; then',
  '  mdadm --create /dev/md0 --level=0 --raid-devices="$count" $disks --run',
  '  mkfs.xfs -f /dev/md0 && mount /dev/md0 /scratch',
  'elif [ "$count" -ge 1 ]; then',
  '  first=$(echo "$disks" | head -n1); mkfs.xfs -f "$first" && mount "$first" /scratch',
  'fi',
  'chmod 1777 /scratch',
  '--==DAPT==--',
].join('\n');

/**
 * Batch launches nodes through EC2 Auto Scaling or EC2 Fleet, whose service-linked roles must be
 * allowed to use the key for encrypted root volumes; the condition names them without requiring
 * them to exist when the key is created.
 */
function grantEbsUse(key: kms.Key): void {
  const serviceLinkedRoles = ['autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling', 'ec2fleet.amazonaws.com/AWSServiceRoleForEC2Fleet', 'spotfleet.amazonaws.com/AWSServiceRoleForEC2SpotFleet'];
  key.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: 'AllowBatchNodeLaunchersToEncryptRootVolumes',
      principals: [new iam.AccountRootPrincipal()],
      actions: ['kms:Encrypt', 'kms:Decrypt', 'kms:ReEncrypt*', 'kms:GenerateDataKey*', 'kms:CreateGrant', 'kms:DescribeKey'],
      resources: ['*'],
      conditions: {
        ArnLike: { 'aws:PrincipalArn': serviceLinkedRoles.map((r) => `arn:${Aws.PARTITION}:iam::${Aws.ACCOUNT_ID}:role/aws-service-role/${r}`) },
        StringEquals: { 'kms:ViaService': `ec2.${Stack.of(key).region}.amazonaws.com` },
      },
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
      { pattern: /^\*$/, reason: 'The ECS agent registers with a cluster Batch names at run time and polls for tasks; these actions (and ecr:GetAuthorizationToken, ec2:DescribeTags) have no usable resource-level scope.' },
    ],
  }).role;
}

/**
 * The training-data pipeline (containers/data) on the Fargate queue: reads the raw zone, writes
 * the curated zone and dataset manifests. Its image is built from the repository root because
 * dapt-data depends on dapt-eval; everything else in the repository is excluded from the context.
 */
function createDataPrepJob(
  scope: Construct,
  config: ResolvedConfig,
  buckets: Record<'datasets' | 'models' | 'artifacts' | 'curated' | 'raw', s3.IBucket>,
  lakeKeyArn: string,
  executionRole: iam.IRole,
  logGroup: logs.ILogGroup,
): batch.EcsJobDefinition {
  const image = new DockerImageAsset(scope, 'DataPrepImage', {
    directory: REPO_ROOT,
    file: 'containers/data/Dockerfile',
    platform: AssetPlatform.LINUX_AMD64,
    ignoreMode: IgnoreMode.DOCKER,
    exclude: ['*', '!constraints.txt', '!containers', 'containers/*', '!containers/eval', '!containers/data', '**/__pycache__', '**/*.egg-info', '**/.mypy_cache', '**/.pytest_cache', '**/.ruff_cache'],
  });
  const role = new ManagedRole(scope, 'DataPrepRole', {
    assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
    description: `Training-data pipeline jobs of ${config.prefix}-${config.envId}: read raw inputs, write curated records and dataset manifests`,
    statements: [
      new iam.PolicyStatement({ sid: 'ReadInputs', actions: ['s3:GetObject'], resources: [buckets.raw, buckets.curated, buckets.datasets].map((b) => b.arnForObjects('*')) }),
      new iam.PolicyStatement({ sid: 'ListZones', actions: ['s3:ListBucket'], resources: [buckets.raw, buckets.curated, buckets.datasets].map((b) => b.bucketArn) }),
      new iam.PolicyStatement({ sid: 'WriteCuratedAndManifests', actions: ['s3:PutObject', 's3:AbortMultipartUpload'], resources: [buckets.curated, buckets.datasets].map((b) => b.arnForObjects('*')) }),
      new iam.PolicyStatement({ sid: 'UseLakeKey', actions: ['kms:Decrypt', 'kms:GenerateDataKey'], resources: [lakeKeyArn] }),
      new iam.PolicyStatement({ sid: 'DetectPii', actions: ['comprehend:DetectPiiEntities'], resources: ['*'] }),
    ],
    wildcards: [
      { pattern: /^\*$/, reason: 'comprehend:DetectPiiEntities (redaction with `detector: comprehend`) has no resource-level permissions.' },
      { pattern: /^arn:(aws[a-z-]*|<AWS::Partition>):s3:::<[A-Za-z0-9]+>\/\*$/, reason: 'The pipeline reads whole input zones and writes new versioned outputs (records per step, manifests that refuse overwrites) under names its config chooses; it never touches models or artifacts.' },
    ],
  }).role;
  return new batch.EcsJobDefinition(scope, 'DataPrepJob', {
    jobDefinitionName: `${config.prefix}-${config.envId}-data-prep`,
    container: new batch.EcsFargateContainerDefinition(scope, 'DataPrepContainer', {
      image: ecs.ContainerImage.fromDockerImageAsset(image),
      cpu: DEFAULT_DATA_PREP_VCPUS,
      memory: DEFAULT_DATA_PREP_MEMORY,
      ephemeralStorageSize: Size.gibibytes(100),
      jobRole: role,
      executionRole,
      logging: ecs.LogDriver.awsLogs({ logGroup, streamPrefix: 'data-prep' }),
      environment: { DAPT_STAGE: config.stage, DAPT_ENV_ID: config.envId },
      fargateCpuArchitecture: ecs.CpuArchitecture.X86_64,
    }),
    retryAttempts: 2,
    // The pipeline resumes finished steps on a retry.
    retryStrategies: FARGATE_RETRY_STRATEGIES,
    timeout: Duration.hours(12),
    propagateTags: true,
  });
}

/** The data pipeline holds each step's records in memory; 4 vCPUs / 30 GiB covers a few GB of text. */
const DEFAULT_DATA_PREP_VCPUS = 4;
const DEFAULT_DATA_PREP_MEMORY = Size.gibibytes(30);

