import * as path from 'node:path';
import { Aws, Duration, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as scheduler from 'aws-cdk-lib/aws-scheduler';
import type * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import { platformParameterName } from '../config/parameter-names';
import type { ExpectedWildcard } from '../compliance/acknowledge';
import { sweptStackPrefix } from '../config/lifecycle';
import type { LifecycleConfig } from '../config/schema';
import { ManagedRole } from './managed-role';
import { PlatformFunction } from './platform-function';
import { REPO_ROOT } from './repository-image';

export interface ExperimentSweeperProps {
  /** Prefix of the stacks and parameters swept. */
  readonly prefix: string;
  /** `experiment`: every `<prefix>-exp-*` stack; `production`: the `<prefix>-prod-run-*` stacks only. */
  readonly stage: 'experiment' | 'production';
  /** The stage's `lifecycle` section: schedule and warning hours. */
  readonly lifecycle: LifecycleConfig;
  /** Told about warnings, deletions and failed deletions. */
  readonly topic: sns.ITopic;
  /** The topic's key, also the function's logs and dead-letter key. */
  readonly key: kms.IKey;
  /** Retention of the function's log group, in days. */
  readonly logRetentionDays: number;
  /** Delete the function's log group and dead-letter queue with the stack. */
  readonly destroyOnDelete: boolean;
}

/**
 * The sweeper: an EventBridge Scheduler schedule invoking a Lambda (`lambda/sweeper/`) that warns
 * before an experiment expires and deletes its stacks after, in dependency order. It runs outside
 * any VPC: it deletes the experiments' VPCs. CloudFormation deletes with each stack's own
 * deployment role, so the function may only list and delete the swept stacks, write the
 * lifecycle parameters and remove what CloudFormation cannot (inference components added by
 * `dapt serve deploy`, unfinished Batch jobs, running evaluations).
 */
export class ExperimentSweeper extends Construct {
  readonly function: PlatformFunction;

  constructor(scope: Construct, id: string, props: ExperimentSweeperProps) {
    super(scope, id);
    this.function = new PlatformFunction(this, 'Function', {
      description: `Warns before and deletes after the expiry of ${props.stage === 'production' ? 'production run stacks' : 'experiment environments'} (${sweptStackPrefix(props.prefix, props.stage)}*)`,
      code: { kind: 'nodejs', entry: path.join(REPO_ROOT, 'lambda', 'sweeper', 'index.ts') },
      environment: {
        SWEEP_PREFIX: props.prefix,
        SWEEP_STAGE: props.stage,
        WARNING_HOURS: String(props.lifecycle.warningHours),
        SWEEP_SCHEDULE: props.lifecycle.sweepSchedule,
        TOPIC_ARN: props.topic.topicArn,
        POWERTOOLS_SERVICE_NAME: 'experiment-sweeper',
      },
      network: {
        outsideVpcReason:
          'The sweeper deletes experiment environments, VPCs included: inside one it would delete its own network, and it calls only AWS control-plane APIs (CloudFormation, SSM, SNS, SageMaker, Batch, Step Functions), no data.',
      },
      encryptionKey: props.key,
      logRetentionDays: props.logRetentionDays,
      destroyOnDelete: props.destroyOnDelete,
      timeout: DEFAULT_SWEEP_TIMEOUT,
      memoryMb: DEFAULT_SWEEP_MEMORY_MB,
      statements: sweeperStatements(this, props),
      unreservedConcurrencyReason:
        'EventBridge Scheduler invokes it once per sweep period (flexible window off), and a second sweep at once would only find deletions in progress; a reservation would fail to deploy in accounts whose Lambda quota is below 100 plus the reservation.',
      wildcards: SWEEPER_WILDCARDS,
    });
    scheduleSweep(this, props.lifecycle.sweepSchedule, this.function.function.functionArn);
  }
}

/** Least privilege: the swept stacks by name, the lifecycle parameters, and cleanup of what CloudFormation cannot delete. */
function sweeperStatements(scope: Construct, props: ExperimentSweeperProps): iam.PolicyStatement[] {
  const region = Stack.of(scope).region;
  const arn = (service: string, resource: string): string =>
    `arn:${Aws.PARTITION}:${service}:${region}:${Aws.ACCOUNT_ID}:${resource}`;
  const swept = sweptStackPrefix(props.prefix, props.stage);
  const envRoot = props.stage === 'production' ? `${props.prefix}/prod` : `${props.prefix}/exp-*`;
  const lifecycleParameters = [
    ...(props.stage === 'experiment' ? [arn('ssm', `parameter/${envRoot}/lifecycle/*`)] : []),
    arn('ssm', `parameter/${envRoot}/runs/*/expires-at`),
    arn('ssm', `parameter/${envRoot}/runs/*/warned`),
  ];
  const statements = [
    new iam.PolicyStatement({
      sid: 'ListStacks',
      actions: ['cloudformation:ListStacks', 'ssm:DescribeParameters', 'batch:ListJobs'],
      resources: ['*'],
    }),
    new iam.PolicyStatement({
      sid: 'SweptStacks',
      actions: ['cloudformation:DeleteStack', 'cloudformation:DescribeStacks', 'cloudformation:ListStackResources'],
      resources: [arn('cloudformation', `stack/${swept}*/*`)],
    }),
    new iam.PolicyStatement({
      sid: 'LifecycleParameters',
      actions: ['ssm:DeleteParameters', 'ssm:GetParameter', 'ssm:GetParameters', 'ssm:PutParameter'],
      resources: lifecycleParameters,
    }),
    new iam.PolicyStatement({
      sid: 'ReadQueuesAndEndpoint',
      actions: ['ssm:GetParameter'],
      resources: [
        arn('ssm', `parameter${platformParameterName(`/${envRoot}`, 'trainingGpuQueueArn')}`),
        arn('ssm', `parameter${platformParameterName(`/${envRoot}`, 'trainingCpuQueueArn')}`),
        ...(props.stage === 'experiment'
          ? [arn('ssm', `parameter${platformParameterName(`/${envRoot}`, 'servingEndpointName')}`)]
          : []),
      ],
    }),
    new iam.PolicyStatement({
      sid: 'TerminateJobsOfExpiredStacks',
      actions: ['batch:TerminateJob'],
      resources: [arn('batch', 'job/*')],
    }),
    new iam.PolicyStatement({ sid: 'Notify', actions: ['sns:Publish'], resources: [props.topic.topicArn] }),
    // The topic is encrypted: SNS asks for a data key with the publisher's credentials.
    new iam.PolicyStatement({
      sid: 'PublishToEncryptedTopic',
      actions: ['kms:GenerateDataKey', 'kms:Decrypt'],
      resources: [props.key.keyArn],
    }),
  ];
  if (props.stage === 'experiment') {
    statements.push(
      new iam.PolicyStatement({
        sid: 'ListInferenceComponents',
        actions: ['sagemaker:ListInferenceComponents'],
        resources: ['*'],
      }),
      new iam.PolicyStatement({
        sid: 'DeleteUnownedInferenceComponents',
        actions: ['sagemaker:DeleteInferenceComponent'],
        resources: [arn('sagemaker', `inference-component/${swept}*`)],
      }),
      new iam.PolicyStatement({
        sid: 'StopEvaluations',
        actions: ['states:ListExecutions'],
        resources: [arn('states', `stateMachine:${swept}*`)],
      }),
      new iam.PolicyStatement({
        sid: 'StopEvaluationExecutions',
        actions: ['states:StopExecution'],
        resources: [arn('states', `execution:${swept}*:*`)],
      }),
    );
  }
  return statements;
}

/** EventBridge Scheduler invokes the function, with a role that may invoke only it. */
function scheduleSweep(scope: Construct, expression: string, functionArn: string): void {
  const role = new ManagedRole(scope, 'ScheduleRole', {
    assumedBy: new iam.ServicePrincipal('scheduler.amazonaws.com', {
      conditions: { StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID } },
    }),
    description: 'Lets EventBridge Scheduler invoke the experiment sweeper',
    statements: [new iam.PolicyStatement({ actions: ['lambda:InvokeFunction'], resources: [functionArn] })],
  }).role;
  // The L1 resource, as in DriftDetection: the L2 target would add an inline statement to the role.
  new scheduler.CfnSchedule(scope, 'Schedule', {
    description: 'Warns about and deletes expired experiment stacks',
    scheduleExpression: expression,
    flexibleTimeWindow: { mode: 'OFF' },
    target: { arn: functionArn, roleArn: role.roleArn, input: '{}' },
  });
}

/** Every wildcard the sweeper's policy grants, and why. */
const SWEEPER_WILDCARDS: readonly ExpectedWildcard[] = [
  {
    pattern: /^\*$/,
    reason:
      'Only for actions without resource-level permissions: ListStacks, DescribeParameters, Batch ListJobs and SageMaker ListInferenceComponents (names and states, no data), and X-Ray PutTraceSegments/PutTelemetryRecords.',
  },
  {
    pattern: /:cloudformation:.*:stack\/[a-z0-9-]+-(exp|prod-run)-\*\/\*$/,
    reason:
      'The stacks the sweeper deletes are named by prefix (every experiment stack, or production run stacks); the ARN ends in a generated id.',
  },
  {
    pattern:
      /:ssm:.*:parameter\/[a-z0-9-]+\/(exp-\*|prod)\/(lifecycle\/\*|runs\/\*\/(expires-at|warned)|training\/(gpu|cpu)-queue-arn|serving\/endpoint-name)$/,
    reason:
      "The lifecycle's own parameters (expires-at, warned) and the queue and endpoint names, in every experiment environment (or of every production run): environments are named at deploy time.",
  },
  {
    pattern: /:batch:.*:job\/\*$/,
    reason:
      'Batch job ARNs carry a generated id only; the function terminates only unfinished jobs of the queues or job definitions of a stack it is deleting.',
  },
  {
    pattern: /:sagemaker:.*:inference-component\/[a-z0-9-]+-exp-\*$/,
    reason:
      "Inference components that dapt serve deploy added to an expired experiment's endpoint are named <prefix>-exp-<name>-*; CloudFormation cannot delete an endpoint that hosts them.",
  },
  {
    pattern: /:states:.*:(stateMachine|execution):[a-z0-9-]+-exp-\*(:\*)?$/,
    reason:
      "Running evaluations of an expired experiment's state machines (<prefix>-exp-<name>-*), stopped before their stack is deleted.",
  },
];

/** One sweep lists stacks and deletes one wave; minutes at most. */
const DEFAULT_SWEEP_TIMEOUT = Duration.minutes(5);
/** Control-plane calls only. */
const DEFAULT_SWEEP_MEMORY_MB = 256;
