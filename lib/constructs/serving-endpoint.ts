/**
 * A SageMaker real-time endpoint built to host inference components: no model of its own, managed
 * instance scaling (down to zero instances in an experiment), least-outstanding-requests routing,
 * the endpoint's network in the VPC's isolated subnets with egress to the VPC endpoints only, and
 * requests and responses captured to the eval zone with the lake key.
 */
import { Aws, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as sagemaker from 'aws-cdk-lib/aws-sagemaker';
import { Construct } from 'constructs';
import { acknowledge } from '../compliance/acknowledge';
import type { ServingConfig } from '../config/schema';
import { allowHttpsToServices, SUBNET_GROUPS } from './isolated-vpc';
import { ManagedRole } from './managed-role';

export interface ServingEndpointProps {
  /** The `serving` section of the stage config: instance type and count, capture, image. */
  readonly serving: ServingConfig;
  /** The endpoint's name, `<prefix>-<envId>-serving`: the eval worker may invoke `<prefix>-<envId>-*`. */
  readonly endpointName: string;
  /** Let the instances scale in to zero when no copy runs (experiments); production keeps one. */
  readonly scaleToZero: boolean;
  /** The VPC whose isolated subnets the endpoint's interfaces are placed in. */
  readonly vpc: ec2.IVpc;
  /** The VPC's CIDR as a literal, so the compliance checks can see the egress stays inside it. */
  readonly vpcCidr: string;
  /** Prefix list of the S3 gateway endpoint: model artifacts and image layers come from S3. */
  readonly s3PrefixListId: string;
  /** The models zone: base models under `base/`, trained weights and adapters under `runs/`. */
  readonly modelsBucket: s3.IBucket;
  /** The eval zone, where captured requests and responses land under `capture/`. */
  readonly evalBucket: s3.IBucket;
  /** The lake's key: decrypts model artifacts, encrypts captured data. */
  readonly lakeKey: kms.IKey;
  /** Encrypts the instances' ML storage volumes (where the instance type has EBS volumes). */
  readonly volumeKey: kms.IKey;
}

/** The endpoint, its configuration, the role its containers run as and their security group. */
export class ServingEndpoint extends Construct {
  readonly endpointName: string;
  /** The production variant every inference component is placed on. */
  readonly variantName = DEFAULT_VARIANT_NAME;
  readonly executionRole: iam.Role;
  /** The role's permissions; whatever SageMaker does as the role must wait for it. */
  readonly executionPolicy: iam.ManagedPolicy;
  readonly securityGroup: ec2.SecurityGroup;
  readonly endpoint: sagemaker.CfnEndpoint;

  constructor(scope: Construct, id: string, props: ServingEndpointProps) {
    super(scope, id);
    const { serving } = props;
    this.endpointName = props.endpointName;
    this.securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc: props.vpc,
      description: 'Serving containers: outbound to VPC endpoints and S3 only (the subnets have no internet route)',
      allowAllOutbound: false,
    });
    allowHttpsToServices(this.securityGroup, props.vpcCidr, [props.s3PrefixListId]);
    const execution = createExecutionRole(this, props);
    this.executionRole = execution.role;
    this.executionPolicy = execution.policy;
    const subnets = props.vpc.selectSubnets({ subnetGroupName: SUBNET_GROUPS.endpoints }).subnetIds;
    const config = new sagemaker.CfnEndpointConfig(this, 'Config', {
      executionRoleArn: this.executionRole.roleArn,
      vpcConfig: { subnets, securityGroupIds: [this.securityGroup.securityGroupId] },
      enableNetworkIsolation: true,
      // Instance types with local NVMe storage encrypt it in hardware and refuse a KMS key.
      kmsKeyId: hasInstanceStorage(serving.instanceType) ? undefined : props.volumeKey.keyArn,
      productionVariants: [
        {
          variantName: DEFAULT_VARIANT_NAME,
          instanceType: serving.instanceType,
          inferenceAmiVersion: serving.inferenceAmiVersion,
          initialInstanceCount: 1,
          managedInstanceScaling: {
            status: 'ENABLED',
            minInstanceCount: props.scaleToZero ? 0 : 1,
            maxInstanceCount: serving.maxInstances,
          },
          routingConfig: { routingStrategy: 'LEAST_OUTSTANDING_REQUESTS' },
        },
      ],
      dataCaptureConfig: dataCapture(serving, props),
    });
    if (hasInstanceStorage(serving.instanceType)) acknowledgeInstanceStorage(config, serving.instanceType);
    // SageMaker checks the role's permissions when it creates the configuration and the endpoint.
    config.node.addDependency(this.executionPolicy);
    this.endpoint = new sagemaker.CfnEndpoint(this, 'Endpoint', {
      endpointName: props.endpointName,
      endpointConfigName: config.attrEndpointConfigName,
    });
  }
}

/**
 * Instance families whose ML storage is a local NVMe instance store: SageMaker encrypts it in
 * hardware and rejects an endpoint configuration that names a KMS key for it.
 */
export const INSTANCE_STORAGE_FAMILIES = [
  'g4dn',
  'g5',
  'g6',
  'g6e',
  'p3dn',
  'p4d',
  'p4de',
  'p5',
  'p5e',
  'p5en',
  'inf2',
  'trn1',
];

/** Whether the instance type's storage is a local instance store (no KMS key allowed). */
export function hasInstanceStorage(instanceType: string): boolean {
  return INSTANCE_STORAGE_FAMILIES.includes(instanceType.split('.')[1] ?? '');
}

function acknowledgeInstanceStorage(config: sagemaker.CfnEndpointConfig, instanceType: string): void {
  acknowledge(
    config,
    [
      'NIST.800.53.R5-SageMakerEndpointConfigurationKMSKeyConfigured',
      'HIPAA.Security-SageMakerEndpointConfigurationKMSKeyConfigured',
    ],
    `${instanceType} stores on local NVMe instance storage, which is encrypted in hardware (AES-256-XTS) and for which SageMaker refuses a KMS key; captured data is encrypted with the lake key.`,
  );
}

/** Requests and responses to `capture/` of the eval zone, encrypted with the lake key; none when the percentage is 0. */
function dataCapture(
  serving: ServingConfig,
  props: ServingEndpointProps,
): sagemaker.CfnEndpointConfig.DataCaptureConfigProperty | undefined {
  if (serving.dataCapturePercent === 0) return undefined;
  return {
    enableCapture: true,
    initialSamplingPercentage: serving.dataCapturePercent,
    destinationS3Uri: props.evalBucket.s3UrlForObject(CAPTURE_PREFIX.replace(/\/$/, '')),
    kmsKeyId: props.lakeKey.keyArn,
    captureOptions: [{ captureMode: 'Input' }, { captureMode: 'Output' }],
    captureContentTypeHeader: { jsonContentTypes: ['application/json'] },
  };
}

/** Where captured requests and responses land in the eval zone. */
export const CAPTURE_PREFIX = 'capture/';

/**
 * What the serving containers' role may do: pull the pinned image, read the served artifacts
 * (base models and run outputs of the models zone), write captured data, log and report metrics,
 * and manage the endpoint's network interfaces in the VPC.
 */
function createExecutionRole(scope: Construct, props: ServingEndpointProps): ManagedRole {
  const region = Stack.of(scope).region;
  const image = props.serving.image;
  return new ManagedRole(scope, 'ExecutionRole', {
    // Confused-deputy guard: SageMaker may assume the role only on behalf of this account.
    assumedBy: new iam.ServicePrincipal('sagemaker.amazonaws.com').withConditions({
      StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID },
    }),
    description: `SageMaker endpoint ${props.endpointName}: pull the serving image, read served models, write captured data`,
    statements: [
      new iam.PolicyStatement({ sid: 'EcrToken', actions: ['ecr:GetAuthorizationToken'], resources: ['*'] }),
      new iam.PolicyStatement({
        sid: 'PullTheServingImage',
        actions: ['ecr:BatchCheckLayerAvailability', 'ecr:GetDownloadUrlForLayer', 'ecr:BatchGetImage'],
        resources: [`arn:${Aws.PARTITION}:ecr:${region}:${image.account}:repository/${image.repository}`],
      }),
      new iam.PolicyStatement({
        sid: 'ReadServedModels',
        actions: ['s3:GetObject'],
        resources: ['base/', 'runs/'].map((p) => props.modelsBucket.arnForObjects(`${p}*`)),
      }),
      new iam.PolicyStatement({
        sid: 'ListModels',
        actions: ['s3:ListBucket'],
        resources: [props.modelsBucket.bucketArn],
      }),
      new iam.PolicyStatement({
        sid: 'WriteCapturedData',
        actions: ['s3:PutObject'],
        resources: [props.evalBucket.arnForObjects(`${CAPTURE_PREFIX}*`)],
      }),
      new iam.PolicyStatement({
        sid: 'UseLakeKey',
        actions: ['kms:Decrypt', 'kms:GenerateDataKey'],
        resources: [props.lakeKey.keyArn],
      }),
      new iam.PolicyStatement({
        sid: 'ContainerLogs',
        actions: ['logs:CreateLogGroup', 'logs:CreateLogStream', 'logs:PutLogEvents', 'logs:DescribeLogStreams'],
        resources: [`arn:${Aws.PARTITION}:logs:${region}:${Aws.ACCOUNT_ID}:log-group:/aws/sagemaker/*`],
      }),
      new iam.PolicyStatement({
        sid: 'ContainerMetrics',
        actions: ['cloudwatch:PutMetricData'],
        resources: ['*'],
        conditions: { StringLike: { 'cloudwatch:namespace': ['/aws/sagemaker/*', 'AWS/SageMaker'] } },
      }),
      new iam.PolicyStatement({ sid: 'VpcNetworkInterfaces', actions: [...VPC_ACTIONS], resources: ['*'] }),
    ],
    wildcards: [
      {
        pattern: /^\*$/,
        reason:
          'Only for actions without resource-level permissions: ecr:GetAuthorizationToken, cloudwatch:PutMetricData (limited by a namespace condition), and the EC2 network-interface and describe calls SageMaker makes to place the endpoint in the VPC.',
      },
      {
        pattern: /^arn:(aws[a-z-]*|<AWS::Partition>):s3:::<[A-Za-z0-9]+>\/(base|runs|capture)\/\*$/,
        reason:
          'Served artifacts are base models (base/) and run outputs (runs/<run>/...) chosen per deployment; captured data is written per request under capture/.',
      },
      {
        pattern: /:log-group:\/aws\/sagemaker\/\*$/,
        reason: "SageMaker names the endpoint's and components' log groups itself under /aws/sagemaker/.",
      },
    ],
  });
}

/** What SageMaker calls to place an endpoint in a VPC (the AmazonSageMakerFullAccess VPC subset). */
const VPC_ACTIONS = [
  'ec2:CreateNetworkInterface',
  'ec2:CreateNetworkInterfacePermission',
  'ec2:DeleteNetworkInterface',
  'ec2:DeleteNetworkInterfacePermission',
  'ec2:DescribeNetworkInterfaces',
  'ec2:DescribeVpcs',
  'ec2:DescribeDhcpOptions',
  'ec2:DescribeSubnets',
  'ec2:DescribeSecurityGroups',
] as const;

const DEFAULT_VARIANT_NAME = 'AllTraffic';
