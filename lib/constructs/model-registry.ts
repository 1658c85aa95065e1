import { Aws, Duration, Stack } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as sagemaker from 'aws-cdk-lib/aws-sagemaker';
import { Construct } from 'constructs';
import { evalPackageImage } from './eval-functions';
import { allowHttpsToServices, SUBNET_GROUPS } from './isolated-vpc';
import { PlatformFunction } from './platform-function';

export interface ModelRegistryProps {
  /** The model package group's name, `<prefix>-<envId>-<domain>`. */
  readonly groupName: string;
  /** The artifacts zone: gate inputs, reports and lineage under `runs/`, where the decision is written. */
  readonly artifactsBucket: s3.IBucket;
  /** The models zone, where a trained model's `final/lineage.json` is written beside it. */
  readonly modelsBucket: s3.IBucket;
  /** The lake's key, which encrypts the artifacts zone. */
  readonly lakeKeyArn: string;
  /** The VPC whose isolated eval subnets the registrar runs in. */
  readonly vpc: ec2.IVpc;
  /** The VPC's CIDR as a literal, so the compliance checks can see the egress stays inside it. */
  readonly vpcCidr: string;
  /** Prefix list of the S3 gateway endpoint. */
  readonly s3PrefixListId: string;
  /** Encrypts the registrar's logs, dead letters and environment. */
  readonly encryptionKey: kms.IKey;
  /** Retention of the registrar's log group, in days. */
  readonly logRetentionDays: number;
  /** Delete the registrar's logs and dead letters with the stack (experiments). */
  readonly destroyOnDelete: boolean;
}

/**
 * The domain's model registry: a SageMaker model package group, and the registrar that adds
 * trained models to it (`dapt_eval.registry.register_handler`, the Python package's image). The
 * registrar decides with the gate the local pipeline uses and sets the approval from that
 * decision alone. The group's policy denies every other principal creating or updating a
 * package as Approved, so nothing approves a model the gate did not pass.
 */
export class ModelRegistry extends Construct {
  readonly group: sagemaker.CfnModelPackageGroup;
  readonly registrar: PlatformFunction;

  constructor(scope: Construct, id: string, props: ModelRegistryProps) {
    super(scope, id);
    const region = Stack.of(this).region;
    const groupArn = `arn:${Aws.PARTITION}:sagemaker:${region}:${Aws.ACCOUNT_ID}:model-package-group/${props.groupName}`;
    const packagesArn = `arn:${Aws.PARTITION}:sagemaker:${region}:${Aws.ACCOUNT_ID}:model-package/${props.groupName.toLowerCase()}/*`;
    const securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc: props.vpc,
      description: 'Model registrar: outbound to VPC endpoints and S3 only',
      allowAllOutbound: false,
    });
    allowHttpsToServices(securityGroup, props.vpcCidr, [props.s3PrefixListId]);
    this.registrar = new PlatformFunction(this, 'Registrar', {
      description: `Decides with the promotion gate and registers a trained model in ${props.groupName}`,
      code: { kind: 'image', code: evalPackageImage('dapt_eval.registry.register_handler') },
      environment: { POWERTOOLS_SERVICE_NAME: 'model-registrar' },
      network: { vpc: props.vpc, subnets: { subnetGroupName: SUBNET_GROUPS.eval }, securityGroup },
      encryptionKey: props.encryptionKey,
      logRetentionDays: props.logRetentionDays,
      destroyOnDelete: props.destroyOnDelete,
      timeout: DEFAULT_REGISTRAR_TIMEOUT,
      memoryMb: DEFAULT_REGISTRAR_MEMORY_MB,
      statements: registrarStatements(props, groupArn, packagesArn),
      wildcards: [
        {
          pattern:
            /^arn:(aws[a-z-]*|<AWS::Partition>):s3:::<[A-Za-z0-9]+>\/runs\/\*(\/gate\/decision\.json|\/final\/lineage\.json)?$/,
          reason:
            "Gate inputs and reports are written per run under 'runs/<run>/' of the artifacts zone, each trained model's lineage under 'runs/<run>/<stage>/final/' of the models zone; the registrar writes only each run's gate/decision.json.",
        },
        {
          pattern: /^\*$/,
          reason:
            'sagemaker:ListModelPackages lists package summaries (names, versions, status) by group name and has no usable resource scope; the registrar reads only its own group.',
        },
        {
          pattern: /:model-package\/[a-z0-9-]+\/\*$/,
          reason: 'Package versions of this one group are numbered by SageMaker as they are registered.',
        },
      ],
    });
    this.group = new sagemaker.CfnModelPackageGroup(this, 'Group', {
      modelPackageGroupName: props.groupName,
      modelPackageGroupDescription: `Adapted models of ${props.groupName}, each with its lineage, evaluation report and gate decision`,
      modelPackageGroupPolicy: onlyTheGateApproves(groupArn, packagesArn, this.registrar.role.roleArn),
    });
  }
}

/** Reads the evidence, writes the decision, registers and finds packages of this group only. */
function registrarStatements(props: ModelRegistryProps, groupArn: string, packagesArn: string): iam.PolicyStatement[] {
  return [
    new iam.PolicyStatement({
      sid: 'ReadGateInputsReportsAndLineage',
      actions: ['s3:GetObject'],
      resources: [props.artifactsBucket.arnForObjects('runs/*')],
    }),
    new iam.PolicyStatement({
      sid: 'ReadTrainedModelsLineage',
      actions: ['s3:GetObject'],
      resources: [props.modelsBucket.arnForObjects('runs/*/final/lineage.json')],
    }),
    new iam.PolicyStatement({
      sid: 'WriteTheDecision',
      actions: ['s3:PutObject'],
      resources: [props.artifactsBucket.arnForObjects('runs/*/gate/decision.json')],
    }),
    new iam.PolicyStatement({
      sid: 'UseLakeKey',
      actions: ['kms:Decrypt', 'kms:GenerateDataKey'],
      resources: [props.lakeKeyArn],
    }),
    new iam.PolicyStatement({
      sid: 'RegisterInThisGroup',
      actions: ['sagemaker:CreateModelPackage'],
      resources: [groupArn, packagesArn],
    }),
    new iam.PolicyStatement({
      sid: 'FindEarlierRegistrations',
      actions: ['sagemaker:DescribeModelPackage'],
      resources: [packagesArn],
    }),
    // A list call names no package yet; the registrar filters by this group's name.
    new iam.PolicyStatement({ sid: 'ListPackages', actions: ['sagemaker:ListModelPackages'], resources: ['*'] }),
  ];
}

/**
 * The group's resource policy: creating or updating a package as Approved is denied to every
 * principal but the registrar (`sagemaker:ModelApprovalStatus` is the condition key both actions
 * support), so a person or a script with broad SageMaker rights still cannot approve by hand.
 */
function onlyTheGateApproves(groupArn: string, packagesArn: string, registrarRoleArn: string): object {
  return {
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'OnlyTheGateApproves',
        Effect: 'Deny',
        Principal: { AWS: '*' },
        Action: ['sagemaker:CreateModelPackage', 'sagemaker:UpdateModelPackage'],
        Resource: [groupArn, packagesArn],
        Condition: {
          StringEquals: { 'sagemaker:ModelApprovalStatus': 'Approved' },
          ArnNotEquals: { 'aws:PrincipalArn': registrarRoleArn },
        },
      },
    ],
  };
}

/** Reading a few JSON files and one registration: well under a minute. */
const DEFAULT_REGISTRAR_TIMEOUT = Duration.minutes(2);
const DEFAULT_REGISTRAR_MEMORY_MB = 1024;
