import { Aws, CfnResource, Duration, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as logs from 'aws-cdk-lib/aws-logs';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import type * as sns from 'aws-cdk-lib/aws-sns';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { acknowledge, acknowledgeWildcards } from '../compliance/acknowledge';
import { ManagedRole } from './managed-role';

export interface DriftDetectionProps {
  /** The stacks checked; their resource types decide which read permissions the check gets. */
  readonly stacks: readonly Stack[];
  /**
   * Stacks checked by name only, deployed outside this stage (the delivery pipeline's own stack);
   * their resource types must be covered by DRIFT_READ_ACTIONS too.
   * @default - none
   */
  readonly otherStackNames?: readonly string[];
  /** EventBridge Scheduler expression, e.g. `rate(1 day)`. */
  readonly schedule: string;
  /** Told about every drifted stack and every stack that could not be checked. */
  readonly topic: sns.ITopic;
  /** The topic's key (publishing to an encrypted topic needs it). */
  readonly topicKey: kms.IKey;
  /** Execution history; a name under `/aws/vendedlogs/`. */
  readonly logGroup: logs.ILogGroup;
  /** Name of the state machine, e.g. `dapt-prod-drift-detection`. */
  readonly stateMachineName: string;
}

/**
 * Scheduled drift detection of every stack of an environment: a state machine asks CloudFormation
 * to detect drift on each stack in turn, waits for the result and notifies the topic of each stack
 * that drifted (or could not be checked), naming the command that lists the changed resources.
 * CloudFormation reads each resource's live configuration with the caller's credentials, so the
 * state machine gets read-only access to the resource types the stacks hold (DRIFT_READ_ACTIONS),
 * never to the data in them; a resource type it does not know fails the synth.
 */
export class DriftDetection extends Construct {
  readonly stateMachine: sfn.StateMachine;

  constructor(scope: Construct, id: string, props: DriftDetectionProps) {
    super(scope, id);
    const stackNames = [...props.stacks.map((s) => s.stackName), ...(props.otherStackNames ?? [])];
    const perStack = new sfn.Map(this, 'EachStack', {
      itemsPath: '$.stacks',
      itemSelector: { 'stack.$': '$$.Map.Item.Value' },
      // CloudFormation limits concurrent drift detections per account; one at a time is enough daily.
      maxConcurrency: 1,
      resultPath: sfn.JsonPath.DISCARD,
    });
    perStack.itemProcessor(checkOneStack(this, props, stackNames));
    const listStacks = new sfn.Pass(this, 'Stacks', {
      result: sfn.Result.fromArray(stackNames),
      resultPath: '$.stacks',
    });
    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      stateMachineName: props.stateMachineName,
      definitionBody: sfn.DefinitionBody.fromChainable(listStacks.next(perStack)),
      tracingEnabled: true,
      logs: { destination: props.logGroup, level: sfn.LogLevel.ALL, includeExecutionData: false },
      timeout: DEFAULT_DETECTION_TIMEOUT,
    });
    const readPolicy = new iam.ManagedPolicy(this, 'ReadResourcesPolicy', {
      description: 'Read-only access to the configuration of the resource types drift detection compares',
      roles: [this.stateMachine.role],
      statements: [
        new iam.PolicyStatement({
          actions: [...new Set(Object.values(DRIFT_READ_ACTIONS).flat())].sort(),
          resources: ['*'],
        }),
      ],
    });
    acknowledgeWildcards(readPolicy, [
      {
        pattern: /.*/,
        reason:
          "CloudFormation drift detection reads each resource's live configuration with the caller's credentials, for every resource of every stack: read-only configuration actions (Describe*/Get*/List* of control planes, no object, item, message or secret reads) on all resources.",
      },
    ]);
    // Publishing to an encrypted topic: SNS asks for a data key with the publisher's credentials.
    props.topicKey.grant(this.stateMachine.role, 'kms:GenerateDataKey', 'kms:Decrypt');
    acknowledgeStateMachinePolicy(this.stateMachine);
    scheduleDetection(this, props.schedule, this.stateMachine);
    this.node.addValidation({ validate: () => uncoveredResourceTypes(props.stacks) });
  }
}

/** detect -> wait -> status until done -> notify if drifted or failed; a stack that errors is reported and skipped. */
function checkOneStack(scope: Construct, props: DriftDetectionProps, stackNames: readonly string[]): sfn.IChainable {
  const stackArn = `arn:${Aws.PARTITION}:cloudformation:${Stack.of(scope).region}:${Aws.ACCOUNT_ID}:stack`;
  const detect = new tasks.CallAwsService(scope, 'DetectStackDrift', {
    service: 'cloudformation',
    action: 'detectStackDrift',
    parameters: { StackName: sfn.JsonPath.stringAt('$.stack') },
    iamResources: stackNames.map((name) => `${stackArn}/${name}/*`),
    additionalIamStatements: [
      // DetectStackDrift is authorized as DetectStackResourceDrift on each resource too.
      new iam.PolicyStatement({
        actions: ['cloudformation:DetectStackResourceDrift', 'cloudformation:DescribeStackResourceDrifts'],
        resources: stackNames.map((name) => `${stackArn}/${name}/*`),
      }),
    ],
    resultSelector: { 'id.$': '$.StackDriftDetectionId' },
    resultPath: '$.detection',
  });
  const status = new tasks.CallAwsService(scope, 'DescribeDetectionStatus', {
    service: 'cloudformation',
    action: 'describeStackDriftDetectionStatus',
    parameters: { StackDriftDetectionId: sfn.JsonPath.stringAt('$.detection.id') },
    // DescribeStackDriftDetectionStatus has no resource-level permissions.
    iamResources: ['*'],
    resultPath: '$.status',
  });
  for (const call of [detect, status]) {
    call.addRetry({ errors: [sfn.Errors.ALL], interval: Duration.seconds(10), maxAttempts: 3, backoffRate: 2 });
  }
  const notify = (id: string, subject: string, message: string): tasks.SnsPublish =>
    new tasks.SnsPublish(scope, id, {
      topic: props.topic,
      subject,
      message: sfn.TaskInput.fromText(message),
      resultPath: sfn.JsonPath.DISCARD,
    });
  const drifted = notify(
    'NotifyDrift',
    'Stack drifted from its template',
    sfn.JsonPath.format(
      'Stack {} has drifted: {} resource(s) changed outside CloudFormation. List them with: aws cloudformation describe-stack-resource-drifts --stack-name {} --stack-resource-drift-status-filters MODIFIED DELETED',
      sfn.JsonPath.stringAt('$.stack'),
      sfn.JsonPath.stringAt('$.status.DriftedStackResourceCount'),
      sfn.JsonPath.stringAt('$.stack'),
    ),
  );
  const failed = notify(
    'NotifyDetectionFailed',
    'Drift detection could not check a stack',
    sfn.JsonPath.format(
      'Drift detection of stack {} failed: {}',
      sfn.JsonPath.stringAt('$.stack'),
      sfn.JsonPath.stringAt('$.status.DetectionStatusReason'),
    ),
  );
  const errored = notify(
    'NotifyDetectionError',
    'Drift detection could not check a stack',
    sfn.JsonPath.format(
      'Drift detection of stack {} raised {}',
      sfn.JsonPath.stringAt('$.stack'),
      sfn.JsonPath.stringAt('$.error.Error'),
    ),
  );
  detect.addCatch(errored, { resultPath: '$.error' });
  status.addCatch(errored, { resultPath: '$.error' });
  const wait = new sfn.Wait(scope, 'WaitForDetection', { time: sfn.WaitTime.duration(DEFAULT_POLL_INTERVAL) });
  const inSync = new sfn.Succeed(scope, 'NotDrifted');
  const decide = new sfn.Choice(scope, 'Drifted?')
    .when(sfn.Condition.stringEquals('$.status.DetectionStatus', 'DETECTION_IN_PROGRESS'), wait)
    .when(sfn.Condition.stringEquals('$.status.DetectionStatus', 'DETECTION_FAILED'), failed)
    .when(sfn.Condition.stringEquals('$.status.StackDriftStatus', 'DRIFTED'), drifted)
    .otherwise(inSync);
  return detect.next(wait).next(status).next(decide);
}

/** EventBridge Scheduler starts one detection per period, with a role that may start only this state machine. */
function scheduleDetection(scope: Construct, expression: string, stateMachine: sfn.StateMachine): void {
  const role = new ManagedRole(scope, 'ScheduleRole', {
    assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', {
      conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
    }),
    description: 'Lets EventBridge Scheduler start the drift-detection state machine',
    statements: [
      new iam.PolicyStatement({ actions: ['states:StartExecution'], resources: [stateMachine.stateMachineArn] }),
    ],
  }).role;
  // The L1 resource: the L2 target would add its own inline statement to the role.
  new scheduler.CfnSchedule(scope, 'Schedule', {
    description: 'Checks every stack of this environment for drift from its template',
    scheduleExpression: expression,
    flexibleTimeWindow: { mode: 'OFF' },
    target: { arn: stateMachine.stateMachineArn, roleArn: role.roleArn, input: '{}' },
  });
}

/** The role policy the StateMachine construct writes from the tasks' permissions. */
function acknowledgeStateMachinePolicy(stateMachine: sfn.StateMachine): void {
  const policy = stateMachine.role.node.tryFindChild('DefaultPolicy') as iam.Policy | undefined;
  if (!policy) return;
  acknowledge(
    policy,
    ['NIST.800.53.R5-IAMNoInlinePolicy', 'HIPAA.Security-IAMNoInlinePolicy'],
    'The StateMachine construct writes this role policy itself from its tasks (drift detection calls on the listed stacks, publish to the compliance topic, X-Ray and log delivery) and offers no managed-policy option.',
  );
  acknowledgeWildcards(policy, [
    {
      pattern: /:cloudformation:.*:stack\/[a-z0-9-]+\/\*$/,
      reason: 'A stack ARN ends in its generated id; the statement names each checked stack by name.',
    },
    {
      pattern: /^\*$/,
      reason:
        'DescribeStackDriftDetectionStatus, X-Ray (PutTraceSegments, PutTelemetryRecords, GetSampling*) and CloudWatch Logs delivery have no resource-level permissions.',
    },
  ]);
}

/**
 * Read actions drift detection needs per CloudFormation service namespace (AWS::<Service>::...):
 * configuration reads only. A resource type whose namespace is missing fails the synth.
 */
export const DRIFT_READ_ACTIONS: Readonly<Record<string, readonly string[]>> = {
  ApplicationAutoScaling: ['application-autoscaling:Describe*'],
  Athena: ['athena:GetWorkGroup', 'athena:ListTagsForResource'],
  Batch: ['batch:Describe*', 'batch:ListTagsForResource'],
  CloudTrail: [
    'cloudtrail:DescribeTrails',
    'cloudtrail:GetEventSelectors',
    'cloudtrail:GetInsightSelectors',
    'cloudtrail:GetTrail',
    'cloudtrail:GetTrailStatus',
    'cloudtrail:ListTags',
  ],
  CloudWatch: ['cloudwatch:DescribeAlarms', 'cloudwatch:ListTagsForResource'],
  CodeBuild: ['codebuild:BatchGetProjects'],
  CodePipeline: ['codepipeline:GetPipeline', 'codepipeline:ListTagsForResource', 'codepipeline:ListWebhooks'],
  CodeStarNotifications: [
    'codestar-notifications:DescribeNotificationRule',
    'codestar-notifications:ListTagsForResource',
  ],
  Config: ['config:Describe*'],
  DynamoDB: [
    'dynamodb:DescribeContinuousBackups',
    'dynamodb:DescribeContributorInsights',
    'dynamodb:DescribeKinesisStreamingDestination',
    'dynamodb:DescribeTable',
    'dynamodb:DescribeTimeToLive',
    'dynamodb:ListTagsOfResource',
  ],
  EC2: ['ec2:Describe*'],
  EMRServerless: ['emr-serverless:GetApplication', 'emr-serverless:ListTagsForResource'],
  ECR: ['ecr:DescribeRepositories', 'ecr:GetLifecyclePolicy', 'ecr:GetRepositoryPolicy', 'ecr:ListTagsForResource'],
  Events: ['events:DescribeRule', 'events:ListTagsForResource', 'events:ListTargetsByRule'],
  Glue: ['glue:GetDatabase', 'glue:GetTable', 'glue:GetTags'],
  IAM: [
    'iam:GetInstanceProfile',
    'iam:GetPolicy',
    'iam:GetPolicyVersion',
    'iam:GetRole',
    'iam:GetRolePolicy',
    'iam:ListAttachedRolePolicies',
    'iam:ListInstanceProfilesForRole',
    'iam:ListPolicyVersions',
    'iam:ListRolePolicies',
    'iam:ListRoleTags',
  ],
  KMS: ['kms:DescribeKey', 'kms:GetKeyPolicy', 'kms:GetKeyRotationStatus', 'kms:ListAliases', 'kms:ListResourceTags'],
  Lambda: [
    'lambda:GetFunctionCodeSigningConfig',
    'lambda:GetFunctionConcurrency',
    'lambda:GetFunctionConfiguration',
    'lambda:GetPolicy',
    'lambda:GetRuntimeManagementConfig',
    'lambda:ListTags',
  ],
  Logs: ['logs:DescribeLogGroups', 'logs:DescribeResourcePolicies', 'logs:ListTagsForResource'],
  S3: [
    's3:GetBucket*',
    's3:GetEncryptionConfiguration',
    's3:GetLifecycleConfiguration',
    's3:GetReplicationConfiguration',
    's3:ListAllMyBuckets',
  ],
  SageMaker: ['sagemaker:Describe*', 'sagemaker:ListTags'],
  Scheduler: ['scheduler:GetSchedule', 'scheduler:ListTagsForResource'],
  SNS: ['sns:GetSubscriptionAttributes', 'sns:GetTopicAttributes', 'sns:ListTagsForResource'],
  SQS: ['sqs:GetQueueAttributes', 'sqs:ListQueueTags'],
  SSM: ['ssm:DescribeParameters', 'ssm:GetParameters', 'ssm:ListTagsForResource'],
  StepFunctions: ['states:DescribeStateMachine', 'states:ListTagsForResource'],
};

/** The resource types of `stacks` whose namespace DRIFT_READ_ACTIONS lacks (custom resources are not checked by CloudFormation). */
function uncoveredResourceTypes(stacks: readonly Stack[]): string[] {
  const missing = new Set<string>();
  for (const stack of stacks) {
    for (const child of stack.node.findAll()) {
      if (!(child instanceof CfnResource)) continue;
      const [owner, namespace] = child.cfnResourceType.split('::');
      if (owner !== 'AWS' || namespace === undefined || namespace === 'CloudFormation') continue;
      if (!(namespace in DRIFT_READ_ACTIONS)) missing.add(child.cfnResourceType);
    }
  }
  return [...missing]
    .sort()
    .map(
      (type) =>
        `drift detection has no read permissions for ${type}: add its namespace to DRIFT_READ_ACTIONS (lib/constructs/drift-detection.ts)`,
    );
}

/** How long one detection of every stack may take before the execution fails. */
const DEFAULT_DETECTION_TIMEOUT = Duration.hours(2);
/** How often the status of a running detection is asked. */
const DEFAULT_POLL_INTERVAL = Duration.seconds(30);
