import { Duration } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { acknowledge, acknowledgeWildcards } from '../compliance/acknowledge';

export interface EvalStateMachineProps {
  /** Name of the state machine, e.g. `dapt-prod-eval`. */
  readonly stateMachineName: string;
  /** The eval bucket, where the Distributed Map reads the shard manifest. */
  readonly evalBucket: s3.IBucket;
  /** The lake's key, which encrypts the shard manifest like everything in the eval bucket. */
  readonly lakeKeyArn: string;
  /** Execution history (ALL levels, without execution data); a name under `/aws/vendedlogs/`. */
  readonly logGroup: logs.ILogGroup;
  /** Plans a run into shards and writes the shard manifest. */
  readonly plan: lambda.IFunction;
  /** Runs one shard; raises ShardIncompleteError when its time runs low. */
  readonly worker: lambda.IFunction;
  /** Writes the run's report and Athena rows once every shard has run. */
  readonly aggregate: lambda.IFunction;
}

/**
 * One evaluation run as a state machine: plan the run into shards, run one worker per shard in a
 * Distributed Map (continuing shards that ran out of Lambda time, tolerating shards that fail for
 * good, since their units are recorded as errored), then aggregate the report. The state machine
 * is this construct's `Default` child: it keeps the logical id it had at the stack's top level.
 */
export class EvalStateMachine extends Construct {
  readonly stateMachine: sfn.StateMachine;

  constructor(scope: Construct, id: string, props: EvalStateMachineProps) {
    super(scope, id);
    const planRun = new tasks.LambdaInvoke(this, 'PlanRun', {
      lambdaFunction: props.plan,
      payload: sfn.TaskInput.fromObject({
        run_id: sfn.JsonPath.stringAt('$.run_id'),
        spec_key: sfn.JsonPath.stringAt('$.spec_key'),
      }),
      resultSelector: { 'plan.$': '$.Payload' },
      resultPath: '$.planned',
      retryOnServiceExceptions: true,
    });
    const aggregateRun = new tasks.LambdaInvoke(this, 'AggregateRun', {
      lambdaFunction: props.aggregate,
      payload: sfn.TaskInput.fromObject({ run_id: sfn.JsonPath.stringAt('$.run_id') }),
      payloadResponseOnly: true,
      retryOnServiceExceptions: true,
    });
    this.stateMachine = new sfn.StateMachine(this, 'Default', {
      stateMachineName: props.stateMachineName,
      definitionBody: sfn.DefinitionBody.fromChainable(planRun.next(runShards(this, props)).next(aggregateRun)),
      tracingEnabled: true,
      logs: { destination: props.logGroup, level: sfn.LogLevel.ALL, includeExecutionData: false },
      timeout: DEFAULT_RUN_TIMEOUT,
    });
    // The Distributed Map's item reader reads the shard manifest itself, with the state machine's
    // role; the manifest is encrypted with the lake key like everything in the eval bucket.
    this.stateMachine.addToRolePolicy(
      new iam.PolicyStatement({ sid: 'ReadShardManifests', actions: ['kms:Decrypt'], resources: [props.lakeKeyArn] }),
    );
    acknowledgeStateMachinePolicies(this.stateMachine, props.stateMachineName);
  }
}

/** The Distributed Map over the shard manifest, one worker invocation (and its retries) per shard. */
function runShards(scope: Construct, props: EvalStateMachineProps): sfn.DistributedMap {
  const runShard = new tasks.LambdaInvoke(scope, 'RunShard', {
    lambdaFunction: props.worker,
    payloadResponseOnly: true,
    retryOnServiceExceptions: true,
  });
  // The worker stops with ShardIncompleteError when its Lambda time runs low; the retry skips
  // the units it finished, so a large shard completes over several invocations.
  runShard.addRetry({
    errors: ['ShardIncompleteError'],
    maxAttempts: DEFAULT_SHARD_CONTINUATIONS,
    interval: Duration.seconds(1),
    backoffRate: 1,
  });
  // A worker crash (timeout, out of memory) is retried the same way.
  runShard.addRetry({
    errors: ['States.TaskFailed', 'States.Timeout'],
    maxAttempts: DEFAULT_CRASH_RETRIES,
    backoffRate: 2,
    interval: Duration.seconds(10),
  });
  const shards = new sfn.DistributedMap(scope, 'RunShards', {
    itemReader: new sfn.S3JsonItemReader({
      bucket: props.evalBucket,
      key: sfn.JsonPath.stringAt('$.planned.plan.manifest_key'),
    }),
    maxConcurrencyPath: sfn.JsonPath.stringAt('$.planned.plan.max_concurrency'),
    itemSelector: {
      run_id: sfn.JsonPath.stringAt('$$.Map.Item.Value.run_id'),
      shard_key: sfn.JsonPath.stringAt('$$.Map.Item.Value.shard_key'),
      shard_index: sfn.JsonPath.numberAt('$$.Map.Item.Value.shard_index'),
    },
    resultPath: sfn.JsonPath.DISCARD,
    // Units that fail are written as `errored` by the worker; a shard that still fails after
    // its retries must not hide the rest of the run, so the report states the completion rate.
    toleratedFailurePercentage: 100,
  });
  shards.itemProcessor(runShard);
  return shards;
}

/** The role policies the StateMachine and DistributedMap constructs write themselves, each wildcard explained. */
function acknowledgeStateMachinePolicies(stateMachine: sfn.StateMachine, name: string): void {
  const defaultPolicy = stateMachine.role.node.tryFindChild('DefaultPolicy') as iam.Policy | undefined;
  const distributedMapPolicy = stateMachine.node.tryFindChild('DistributedMapPolicy') as iam.Policy | undefined;
  for (const policy of [defaultPolicy, distributedMapPolicy]) {
    if (!policy) continue;
    acknowledge(
      policy,
      ['NIST.800.53.R5-IAMNoInlinePolicy', 'HIPAA.Security-IAMNoInlinePolicy'],
      `The StateMachine and DistributedMap constructs write these role policies themselves (invoke the eval functions, read the shard manifest, run ${name}'s own child executions) and offer no managed-policy option.`,
    );
    acknowledgeWildcards(policy, [
      {
        pattern: /^<[A-Za-z0-9]+Function[A-Za-z0-9]+\.Arn>:\*$/,
        reason:
          'Invoking any version or alias of the three eval functions (Step Functions calls them by qualified ARN); no other function.',
      },
      {
        pattern: /^arn:(aws[a-z-]*|<AWS::Partition>):s3:::<[A-Za-z0-9]+>\/\*$/,
        reason:
          "The Distributed Map's S3 item reader reads the shard manifest, whose key is only known when a run starts; it is limited to the eval bucket.",
      },
      {
        pattern: /:execution:.*StateMachine[A-Za-z0-9]+.*\*$/,
        reason:
          'The Distributed Map starts, describes and stops child executions of this state machine only; their names are generated at run time.',
      },
      {
        pattern: /^\*$/,
        reason:
          'Only for X-Ray (PutTraceSegments, PutTelemetryRecords, GetSampling*) and CloudWatch Logs delivery (Create/Get/Update/Delete/ListLogDelivery, PutResourcePolicy, DescribeResourcePolicies, DescribeLogGroups), which have no resource-level permissions.',
      },
    ]);
  }
}

/** How many times a shard may continue after running out of Lambda time. */
const DEFAULT_SHARD_CONTINUATIONS = 20;
/** Retries of a shard whose worker crashed (timeout, out of memory). */
const DEFAULT_CRASH_RETRIES = 3;
/** A run that has not finished in a day is stuck, not slow. */
const DEFAULT_RUN_TIMEOUT = Duration.hours(24);
