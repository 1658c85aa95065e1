import { Aws, Stack, type StackProps, type Stage } from 'aws-cdk-lib';
import * as codebuild from 'aws-cdk-lib/aws-codebuild';
import type * as codepipeline from 'aws-cdk-lib/aws-codepipeline';
import * as notifications from 'aws-cdk-lib/aws-codestarnotifications';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import * as pipelines from 'aws-cdk-lib/pipelines';
import type { Construct } from 'constructs';
import type { ResolvedConfig } from '../config/load';
import type { DeliveryConfig } from '../config/schema';
import { AccessLogsBucket } from '../constructs/access-logs-bucket';
import { PlatformKey } from '../constructs/platform-key';
import { SecureBucket } from '../constructs/secure-bucket';
import { acknowledgePipelineFindings } from '../compliance/pipeline-acknowledgments';

/** The delivery stack's name: `dapt-prod-delivery`. */
export function deliveryStackName(config: ResolvedConfig): string {
  return `${config.prefix}-${config.envId}-delivery`;
}

/** Name of the approval action; the deployment record reads who approved it by this name. */
export const APPROVAL_ACTION = 'ApproveProduction';

/**
 * What the synth step runs, in order, on the exact commit it deploys: the README's test command
 * (which CI runs too, through `.ci/run`), `make synth` (every stage with every compliance gate),
 * then the cloud assembly the pipeline deploys, stamped with the commit.
 */
export const SYNTH_COMMANDS = [
  'make test',
  'make synth',
  'npx cdk synth --output cdk.out.pipeline -c stage=production -c commit="$CODEBUILD_RESOLVED_SOURCE_VERSION"',
] as const;

/** Where the synth step writes the cloud assembly. */
const PIPELINE_ASSEMBLY_DIR = 'cdk.out.pipeline';

export interface DeliveryStackProps extends StackProps {
  /** The resolved stage config; the stack reads `delivery`, `prefix`, `envId` and `ssmRoot`. */
  readonly config: ResolvedConfig & { readonly delivery: DeliveryConfig };
  /** Builds the stage the pipeline deploys (the platform's stacks) in the given scope. */
  readonly buildStage: (scope: Construct, id: string) => Stage;
}

/**
 * The only way the audited environment is deployed: a self-mutating CDK pipeline. Its source is
 * the reviewed branch (or an S3 object, air-gapped); its synth step runs the test suite and every
 * compliance gate on that commit; a person approves before the platform's stacks are deployed
 * (CodePipeline records who); afterwards the deployed commit and the approval are written to SSM
 * parameters whose history is the deployment record. Notifications go to one encrypted topic.
 */
export class DeliveryStack extends Stack {
  readonly pipeline: pipelines.CodePipeline;

  constructor(scope: Construct, id: string, props: DeliveryStackProps) {
    super(scope, id, props);
    const { config } = props;
    const namePrefix = `${config.prefix}-${config.envId}`;
    const key = new PlatformKey(this, 'DeliveryKey', {
      alias: `${namePrefix}-delivery`,
      description: `Encrypts the pipeline artifacts and notifications of ${namePrefix}`,
      destroyOnDelete: config.behaviour.destroyOnDelete,
    }).key;
    const accessLogs = new AccessLogsBucket(this, 'AccessLogsBucket', {
      expirationDays: config.dataLake.accessLogExpirationDays,
      noncurrentVersionExpirationDays: config.dataLake.noncurrentVersionExpirationDays,
      abortIncompleteUploadDays: config.dataLake.abortIncompleteUploadDays,
      destroyOnDelete: config.behaviour.destroyOnDelete,
    }).bucket;
    const artifactBucket = new SecureBucket(this, 'ArtifactBucket', {
      encryptionKey: key,
      accessLogsBucket: accessLogs,
      accessLogsPrefix: 'artifacts/',
      abortIncompleteUploadDays: config.dataLake.abortIncompleteUploadDays,
      noncurrentVersionExpirationDays: config.dataLake.noncurrentVersionExpirationDays,
      destroyOnDelete: config.behaviour.destroyOnDelete,
    }).bucket;
    const source = pipelineSource(this, config);
    const pipelineName = `${namePrefix}-delivery`;
    this.pipeline = new pipelines.CodePipeline(this, 'Pipeline', {
      pipelineName,
      artifactBucket,
      crossAccountKeys: false,
      synth: new pipelines.CodeBuildStep('Synth', {
        input: source,
        commands: [...SYNTH_COMMANDS],
        primaryOutputDirectory: PIPELINE_ASSEMBLY_DIR,
        buildEnvironment: {
          buildImage: codebuild.LinuxBuildImage.STANDARD_7_0,
          computeType: codebuild.ComputeType[computeTypeKey(config.delivery.synthComputeType)],
        },
        partialBuildSpec: codebuild.BuildSpec.fromObject({
          phases: { install: { 'runtime-versions': { nodejs: DEFAULT_NODE_RUNTIME, python: DEFAULT_PYTHON_RUNTIME } } },
        }),
      }),
      codeBuildDefaults: { buildEnvironment: { buildImage: codebuild.LinuxBuildImage.STANDARD_7_0 } },
    });
    const deploymentRecord = `${config.ssmRoot}/delivery/last-approved-deployment`;
    this.pipeline.addStage(props.buildStage(this, 'Production'), {
      pre: [
        new pipelines.ManualApprovalStep(APPROVAL_ACTION, {
          comment: `Deploy the tested commit to ${namePrefix}? The synth step's log shows the test and compliance results.`,
        }),
      ],
      post: [
        recordDeployment(this, {
          source,
          sourceVersion: config.delivery.source.kind === 's3' ? 'VersionId' : 'CommitId',
          pipelineName,
          parameterName: deploymentRecord,
        }),
      ],
    });
    this.pipeline.buildPipeline();
    writeActionRolesAsSub(this.pipeline);
    notifyPipelineEvents(this, config.delivery, key, this.pipeline, namePrefix);
    new ssm.StringParameter(this, 'DeploymentRecordParameter', {
      parameterName: deploymentRecord,
      description:
        'The last approved deployment of this environment (commit, approver, time); its history is every one',
      stringValue: JSON.stringify({ status: 'no deployment approved yet' }),
    });
    acknowledgePipelineFindings(this.pipeline);
  }
}

/** The repository connection (ARN from SSM, stored once by the platform team) or the S3 object. */
function pipelineSource(
  stack: Stack,
  config: ResolvedConfig & { delivery: DeliveryConfig },
): pipelines.CodePipelineSource {
  const source = config.delivery.source;
  if (source.kind === 's3') {
    const bucket = s3.Bucket.fromBucketName(stack, 'SourceBucket', source.bucket);
    return pipelines.CodePipelineSource.s3(bucket, source.objectKey);
  }
  const connectionArn = ssm.StringParameter.valueForStringParameter(stack, `${config.ssmRoot}/delivery/connection-arn`);
  return pipelines.CodePipelineSource.connection(source.repository, source.branch, {
    connectionArn,
    // The commit id, not the default zip of the tree: the record and the synth name the commit.
    codeBuildCloneOutput: true,
  });
}

/**
 * The post-deployment step: reads who approved this execution (CodePipeline records the
 * approver's ARN on the approval action) and writes commit, approver, approval time and execution
 * id to an SSM parameter; every write is a new parameter version, so its history lists every
 * approved deployment, next to the trail's PutApprovalResult events.
 */
function recordDeployment(
  stack: Stack,
  options: {
    source: pipelines.CodePipelineSource;
    /** The source action's variable naming what was built: `CommitId` (repository) or `VersionId` (S3). */
    sourceVersion: 'CommitId' | 'VersionId';
    pipelineName: string;
    parameterName: string;
  },
): pipelines.CodeBuildStep {
  return new pipelines.CodeBuildStep('RecordDeployment', {
    env: {
      PIPELINE: options.pipelineName,
      EXECUTION_ID: '#{codepipeline.PipelineExecutionId}',
      PARAMETER: options.parameterName,
      // A pipeline variable: CodePipeline resolves it in the action's environment, not in commands.
      COMMIT: options.source.sourceAttribute(options.sourceVersion),
    },
    commands: [
      `aws codepipeline list-action-executions --pipeline-name "$PIPELINE" --filter pipelineExecutionId="$EXECUTION_ID" --query "actionExecutionDetails[?actionName=='${APPROVAL_ACTION}'] | [0]" --output json > approval.json`,
      'test "$(jq -r .status approval.json)" = Succeeded || { echo "no approval found for execution $EXECUTION_ID" >&2; exit 1; }',
      'jq -c --arg commit "$COMMIT" --arg execution "$EXECUTION_ID" \'{commit: $commit, approvedBy: .updatedBy, approvedAt: .lastUpdateTime, approvalSummary: .output.executionResult.externalExecutionSummary, pipelineExecutionId: $execution}\' approval.json > record.json',
      'aws ssm put-parameter --name "$PARAMETER" --type String --overwrite --value "file://record.json"',
      'cat record.json',
    ],
    rolePolicyStatements: [
      new iam.PolicyStatement({
        actions: ['codepipeline:ListActionExecutions'],
        resources: [`arn:${Aws.PARTITION}:codepipeline:${stack.region}:${Aws.ACCOUNT_ID}:${options.pipelineName}`],
      }),
      new iam.PolicyStatement({
        actions: ['ssm:PutParameter'],
        resources: [`arn:${Aws.PARTITION}:ssm:${stack.region}:${Aws.ACCOUNT_ID}:parameter${options.parameterName}`],
      }),
    ],
  });
}

/** Waiting for approval, succeeded, failed: to the delivery topic (KMS), whose key lets CodeStar Notifications use it. */
function notifyPipelineEvents(
  stack: Stack,
  delivery: DeliveryConfig,
  key: PlatformKey['key'],
  pipeline: pipelines.CodePipeline,
  namePrefix: string,
): void {
  const topic = new sns.Topic(stack, 'DeliveryTopic', {
    topicName: `${namePrefix}-delivery`,
    masterKey: key,
    enforceSSL: true,
  });
  for (const email of delivery.notificationEmails) topic.addSubscription(new subscriptions.EmailSubscription(email));
  key.addToResourcePolicy(
    new iam.PolicyStatement({
      sid: 'AllowCodeStarNotificationsToPublishToTheEncryptedTopic',
      principals: [new iam.ServicePrincipal('codestar-notifications.amazonaws.com')],
      actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
      resources: ['*'],
      conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
    }),
  );
  new notifications.NotificationRule(stack, 'PipelineNotifications', {
    notificationRuleName: `${namePrefix}-delivery`,
    source: pipeline.pipeline,
    events: [
      'codepipeline-pipeline-manual-approval-needed',
      'codepipeline-pipeline-pipeline-execution-succeeded',
      'codepipeline-pipeline-pipeline-execution-failed',
    ],
    targets: [topic],
    detailType: notifications.DetailType.FULL,
  });
}

/**
 * CDK pipelines writes each deploy action's role ARN as `Fn::Join` with an empty delimiter, which
 * cfn-lint 1.x reports as an error (E3703: it cannot check the ARN's format through a Join). The
 * same string as `Fn::Sub` deploys identically and lints clean.
 */
function writeActionRolesAsSub(pipeline: pipelines.CodePipeline): void {
  const cfn = pipeline.pipeline.node.defaultChild as codepipeline.CfnPipeline;
  // The L1 property resolves with camelCase keys; the override path is in CloudFormation's casing.
  const stages = Stack.of(pipeline).resolve(cfn.stages) as {
    actions?: { configuration?: Record<string, unknown> }[];
  }[];
  for (const [i, stage] of stages.entries()) {
    for (const [j, action] of (stage.actions ?? []).entries()) {
      const sub = joinAsSub(action.configuration?.RoleArn);
      if (sub) cfn.addPropertyOverride(`Stages.${i}.Actions.${j}.Configuration.RoleArn`, sub);
    }
  }
}

/** `{Fn::Join: ['', ['arn:', {Ref: 'AWS::Partition'}, ':iam::...']]}` -> `{Fn::Sub: 'arn:${AWS::Partition}:iam::...'}`. */
function joinAsSub(value: unknown): { 'Fn::Sub': string } | undefined {
  const join = (value as { 'Fn::Join'?: [string, unknown[]] } | undefined)?.['Fn::Join'];
  if (!join || join[0] !== '') return undefined;
  let text = '';
  for (const part of join[1]) {
    if (typeof part === 'string') text += part.replace(/\$\{/g, '${!');
    else if (typeof (part as { Ref?: unknown }).Ref === 'string') text += `\${${(part as { Ref: string }).Ref}}`;
    else return undefined;
  }
  return { 'Fn::Sub': text };
}

/** `BUILD_GENERAL1_LARGE` -> `LARGE`, the key of codebuild.ComputeType. */
function computeTypeKey(value: DeliveryConfig['synthComputeType']): 'MEDIUM' | 'LARGE' | 'X_LARGE' {
  return value === 'BUILD_GENERAL1_MEDIUM' ? 'MEDIUM' : value === 'BUILD_GENERAL1_LARGE' ? 'LARGE' : 'X_LARGE';
}

/** Runtimes of the synth step (CodeBuild standard 7.0 image), the versions README's toolchain names. */
const DEFAULT_NODE_RUNTIME = 20;
const DEFAULT_PYTHON_RUNTIME = '3.11';
