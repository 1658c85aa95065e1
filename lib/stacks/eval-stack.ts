import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Aws, Duration, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Platform as AssetPlatform } from 'aws-cdk-lib/aws-ecr-assets';
import * as glue from 'aws-cdk-lib/aws-glue';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import type { Construct } from 'constructs';
import { acknowledge, acknowledgeWildcards, type ExpectedWildcard } from '../compliance/acknowledge';
import type { ResolvedConfig } from '../config/load';
import { EncryptedLogGroup } from '../constructs/encrypted-log-group';
import { PlatformFunction } from '../constructs/platform-function';
import { PlatformKey } from '../constructs/platform-key';
import { PYTHON_BUILD_LEFTOVERS, REPO_ROOT } from '../constructs/repository-image';
import { PlatformParameters, readPlatformParameter } from '../constructs/platform-parameters';
import { allowHttpsToServices, SUBNET_GROUPS } from './network-stack';

/** Where each kind of evaluation object lives in the eval bucket (one definition, shared with lambda/ and containers/eval). */
export { EVAL_PREFIXES } from '../../lambda/shared/layout';
import { EVAL_PREFIXES } from '../../lambda/shared/layout';

/** Column list of the Athena table, owned by the Python aggregator that writes the rows. */
export const ATHENA_SCHEMA_FILE = path.join(
  __dirname,
  '..',
  '..',
  'containers',
  'eval',
  'src',
  'dapt_eval',
  'athena_schema.json',
);

export interface EvalStackProps extends StackProps {
  readonly config: ResolvedConfig;
  readonly vpc: ec2.IVpc;
  /** Prefix lists of the S3 and DynamoDB gateway endpoints, for the functions' egress. */
  readonly gatewayPrefixLists: { readonly s3: string; readonly dynamodb: string };
}

/**
 * The evaluation fan-out: Step Functions plans a run into shards, a Distributed Map runs one
 * worker Lambda per shard (generate, judge, score; one result object per content-addressed key),
 * and a Python aggregator writes the report and the rows of an Athena table.
 */
export class EvalStack extends Stack {
  readonly stateMachine: sfn.StateMachine;
  readonly idempotencyTable: dynamodb.Table;
  readonly resultsTableName: string;

  constructor(scope: Construct, id: string, props: EvalStackProps) {
    super(scope, id, props);
    const { config } = props;
    const destroyOnDelete = config.behaviour.destroyOnDelete;
    const removalPolicy = destroyOnDelete ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN;

    // The lake is read through its SSM parameters, not exports, so the lake never holds an export
    // lock for this stack (which may be redeployed or torn down on its own).
    const evalBucket = s3.Bucket.fromBucketName(
      this,
      'EvalBucket',
      readPlatformParameter(this, config.ssmRoot, 'evalBucket'),
    );
    const lakeKeyArn = readPlatformParameter(this, config.ssmRoot, 'lakeKeyArn');
    const glueDatabaseName = readPlatformParameter(this, config.ssmRoot, 'glueDatabase');
    // Logs, dead letters and idempotency records get a key of this stack, whose policy it controls.
    const evalKey = new PlatformKey(this, 'EvalKey', {
      alias: `${config.prefix}-${config.envId}-eval`,
      description: `Encrypts the evaluation fan-out's logs, queues and idempotency table in ${config.prefix}-${config.envId}`,
      destroyOnDelete,
    }).key;

    this.idempotencyTable = new dynamodb.Table(this, 'IdempotencyTable', {
      partitionKey: { name: 'id', type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
      encryptionKey: evalKey,
      timeToLiveAttribute: 'expiration',
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      removalPolicy,
    });
    acknowledge(
      this.idempotencyTable,
      ['NIST.800.53.R5-DynamoDBInBackupPlan', 'HIPAA.Security-DynamoDBInBackupPlan'],
      'Holds only short-lived idempotency records of in-flight shards (TTL-expired); results live in versioned S3, so a backup plan would protect nothing of value.',
    );

    const securityGroup = new ec2.SecurityGroup(this, 'FunctionSecurityGroup', {
      vpc: props.vpc,
      description: 'Evaluation Lambdas: outbound to VPC endpoints only (the subnets have no internet route)',
      allowAllOutbound: false,
    });
    allowHttpsToServices(securityGroup, config.network.cidr, [
      props.gatewayPrefixLists.s3,
      props.gatewayPrefixLists.dynamodb,
    ]);
    const functionDefaults = {
      vpc: props.vpc,
      subnets: { subnetGroupName: SUBNET_GROUPS.eval },
      securityGroup,
      encryptionKey: evalKey,
      logRetentionDays: config.logRetentionDays,
      destroyOnDelete,
    };
    const environment = {
      EVAL_BUCKET: evalBucket.bucketName,
      IDEMPOTENCY_TABLE: this.idempotencyTable.tableName,
      POWERTOOLS_METRICS_NAMESPACE: `${config.prefix}/${config.envId}/eval`,
    };
    const objects = (...prefixes: string[]): string[] => prefixes.map((p) => evalBucket.arnForObjects(`${p}*`));
    // S3 answers a read of a missing key with 403 instead of 404 unless the caller may list the
    // bucket; "not there yet" is how the functions find unfinished units. A condition on
    // s3:prefix would not help: S3 checks ListBucket for a missing key without a prefix.
    const listEvalBucket = new iam.PolicyStatement({
      sid: 'TellMissingObjectsApart',
      actions: ['s3:ListBucket'],
      resources: [evalBucket.bucketArn],
    });
    const useLakeKey = new iam.PolicyStatement({
      sid: 'UseLakeKey',
      actions: ['kms:Decrypt', 'kms:GenerateDataKey'],
      resources: [lakeKeyArn],
    });

    const plan = new PlatformFunction(this, 'Plan', {
      ...functionDefaults,
      description: 'Validates a run spec and its benchmark, writes shards and the shard manifest',
      code: { kind: 'nodejs', entry: path.join(REPO_ROOT, 'lambda', 'eval-plan', 'index.ts') },
      environment: { ...environment, POWERTOOLS_SERVICE_NAME: 'eval-plan' },
      wildcards: prefixWildcards(),
      timeout: DEFAULT_PLAN_TIMEOUT,
      memoryMb: DEFAULT_PLAN_MEMORY_MB,
      statements: [
        new iam.PolicyStatement({
          sid: 'ReadBenchmarksAndSpecs',
          actions: ['s3:GetObject'],
          resources: objects(EVAL_PREFIXES.benchmarks, EVAL_PREFIXES.runs),
        }),
        new iam.PolicyStatement({
          sid: 'WriteRunFiles',
          actions: ['s3:PutObject'],
          resources: objects(EVAL_PREFIXES.runs),
        }),
        listEvalBucket,
        useLakeKey,
      ],
    });

    const worker = new PlatformFunction(this, 'Worker', {
      ...functionDefaults,
      description: 'Generates, judges and scores the units of one shard; one result object per content-addressed key',
      code: { kind: 'nodejs', entry: path.join(REPO_ROOT, 'lambda', 'eval-worker', 'index.ts') },
      environment: { ...environment, POWERTOOLS_SERVICE_NAME: 'eval-worker' },
      reservedConcurrency: config.eval.workerReservedConcurrency,
      wildcards: [
        ...prefixWildcards(),
        {
          pattern: new RegExp(`:sagemaker:.+:endpoint/${config.prefix}-${config.envId}-\\*$`),
          reason:
            "Serving endpoints are created per model by this environment; the name prefix limits the worker to this environment's endpoints.",
        },
      ],
      timeout: Duration.seconds(config.eval.workerTimeoutSeconds),
      memoryMb: config.eval.workerMemoryMb,
      statements: [
        new iam.PolicyStatement({
          sid: 'ReadShardsAndBenchmarks',
          actions: ['s3:GetObject'],
          resources: objects(EVAL_PREFIXES.benchmarks, EVAL_PREFIXES.runs),
        }),
        new iam.PolicyStatement({
          sid: 'ReadWriteResults',
          actions: ['s3:GetObject', 's3:PutObject'],
          resources: objects(EVAL_PREFIXES.results),
        }),
        listEvalBucket,
        new iam.PolicyStatement({
          sid: 'ShardIdempotency',
          actions: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem'],
          resources: [this.idempotencyTable.tableArn],
        }),
        new iam.PolicyStatement({
          sid: 'InvokeConfiguredBedrockModels',
          actions: ['bedrock:InvokeModel'],
          resources: config.eval.bedrockModelIds.map(
            (id) => `arn:${Aws.PARTITION}:bedrock:${this.region}::foundation-model/${id}`,
          ),
        }),
        new iam.PolicyStatement({
          sid: 'InvokeThisEnvironmentsEndpoints',
          actions: ['sagemaker:InvokeEndpoint'],
          resources: [
            `arn:${Aws.PARTITION}:sagemaker:${this.region}:${Aws.ACCOUNT_ID}:endpoint/${config.prefix}-${config.envId}-*`,
          ],
        }),
        useLakeKey,
      ],
    });

    const aggregate = new PlatformFunction(this, 'Aggregate', {
      ...functionDefaults,
      description: 'Aggregates per-item results into the run report (JSON, HTML) and Athena rows',
      code: {
        kind: 'image',
        code: lambda.DockerImageCode.fromImageAsset(path.join(REPO_ROOT, 'containers', 'eval'), {
          file: 'Dockerfile.lambda',
          platform: AssetPlatform.LINUX_ARM64,
          exclude: [...PYTHON_BUILD_LEFTOVERS, 'tests'],
        }),
      },
      environment: { ...environment, POWERTOOLS_SERVICE_NAME: 'eval-aggregate' },
      wildcards: prefixWildcards(),
      timeout: DEFAULT_AGGREGATE_TIMEOUT,
      memoryMb: DEFAULT_AGGREGATE_MEMORY_MB,
      statements: [
        new iam.PolicyStatement({
          sid: 'ReadRunsAndResults',
          actions: ['s3:GetObject'],
          resources: objects(EVAL_PREFIXES.runs, EVAL_PREFIXES.results),
        }),
        new iam.PolicyStatement({
          sid: 'WriteReportsAndAthenaRows',
          actions: ['s3:PutObject'],
          resources: objects(EVAL_PREFIXES.runs, EVAL_PREFIXES.athena),
        }),
        listEvalBucket,
        useLakeKey,
      ],
    });

    this.stateMachine = this.createStateMachine(
      config,
      evalBucket,
      evalKey,
      plan.function,
      worker.function,
      aggregate.function,
    );
    // The Distributed Map's item reader reads the shard manifest itself, with the state machine's
    // role; the manifest is encrypted with the lake key like everything in the eval bucket.
    this.stateMachine.addToRolePolicy(
      new iam.PolicyStatement({ sid: 'ReadShardManifests', actions: ['kms:Decrypt'], resources: [lakeKeyArn] }),
    );

    this.resultsTableName = 'results';
    new glue.CfnTable(this, 'ResultsTable', {
      catalogId: this.account,
      databaseName: glueDatabaseName,
      tableInput: {
        name: this.resultsTableName,
        description: 'One row per evaluated unit (item x model x prompt), written by the aggregator',
        tableType: 'EXTERNAL_TABLE',
        partitionKeys: [{ name: 'run_id', type: 'string' }],
        parameters: {
          classification: 'json',
          'projection.enabled': 'true',
          'projection.run_id.type': 'injected',
          'storage.location.template': `${evalBucket.s3UrlForObject(EVAL_PREFIXES.athena)}run_id=\${run_id}/`,
        },
        storageDescriptor: {
          location: evalBucket.s3UrlForObject(EVAL_PREFIXES.athena),
          columns: readAthenaColumns(),
          inputFormat: 'org.apache.hadoop.mapred.TextInputFormat',
          outputFormat: 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat',
          serdeInfo: { serializationLibrary: 'org.openx.data.jsonserde.JsonSerDe' },
        },
      },
    }).applyRemovalPolicy(removalPolicy);

    const parameters = new PlatformParameters(this, 'Parameters', config.ssmRoot);
    parameters.publish(
      'evalStateMachineArn',
      this.stateMachine.stateMachineArn,
      'State machine that runs an evaluation',
    );
    parameters.publish(
      'evalResultsTable',
      `${glueDatabaseName}.${this.resultsTableName}`,
      'Athena table of per-unit evaluation results',
    );
  }

  private createStateMachine(
    config: ResolvedConfig,
    evalBucket: s3.IBucket,
    evalKey: kms.IKey,
    plan: lambda.IFunction,
    worker: lambda.IFunction,
    aggregate: lambda.IFunction,
  ): sfn.StateMachine {
    const planRun = new tasks.LambdaInvoke(this, 'PlanRun', {
      lambdaFunction: plan,
      payload: sfn.TaskInput.fromObject({
        run_id: sfn.JsonPath.stringAt('$.run_id'),
        spec_key: sfn.JsonPath.stringAt('$.spec_key'),
      }),
      resultSelector: { 'plan.$': '$.Payload' },
      resultPath: '$.planned',
      retryOnServiceExceptions: true,
    });
    const runShard = new tasks.LambdaInvoke(this, 'RunShard', {
      lambdaFunction: worker,
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
      maxAttempts: 3,
      backoffRate: 2,
      interval: Duration.seconds(10),
    });
    const shards = new sfn.DistributedMap(this, 'RunShards', {
      itemReader: new sfn.S3JsonItemReader({
        bucket: evalBucket,
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
    const aggregateRun = new tasks.LambdaInvoke(this, 'AggregateRun', {
      lambdaFunction: aggregate,
      payload: sfn.TaskInput.fromObject({ run_id: sfn.JsonPath.stringAt('$.run_id') }),
      payloadResponseOnly: true,
      retryOnServiceExceptions: true,
    });

    const logs = new EncryptedLogGroup(this, 'StateMachineLogs', {
      logGroupName: `/aws/vendedlogs/states/${config.prefix}-${config.envId}-eval`,
      encryptionKey: evalKey,
      retentionDays: config.logRetentionDays,
      destroyOnDelete: config.behaviour.destroyOnDelete,
    });
    const stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      stateMachineName: `${config.prefix}-${config.envId}-eval`,
      definitionBody: sfn.DefinitionBody.fromChainable(planRun.next(shards).next(aggregateRun)),
      tracingEnabled: true,
      logs: { destination: logs.logGroup, level: sfn.LogLevel.ALL, includeExecutionData: false },
      timeout: DEFAULT_RUN_TIMEOUT,
    });
    acknowledgeStateMachinePolicies(stateMachine, config);
    return stateMachine;
  }
}

/** Glue columns from the aggregator's schema file; run_id is the partition, not a column. */
function readAthenaColumns(): glue.CfnTable.ColumnProperty[] {
  const columns = JSON.parse(readFileSync(ATHENA_SCHEMA_FILE, 'utf8')) as { name: string; type: string }[];
  return columns.filter((c) => c.name !== 'run_id').map((c) => ({ name: c.name, type: c.type }));
}

/** Object keys under these prefixes are created per run or per content hash; wildcards stop at the prefix. */
function prefixWildcards(): ExpectedWildcard[] {
  return Object.values(EVAL_PREFIXES).map((prefix) => ({
    pattern: new RegExp(`^arn:(aws[a-z-]*|<AWS::Partition>):s3:::<[A-Za-z0-9]+>/${prefix.replace(/\//g, '\\/')}\\*$`),
    reason: `Object keys under '${prefix}' of the eval bucket are created per run and per content hash; access stops at that prefix.`,
  }));
}

function acknowledgeStateMachinePolicies(stateMachine: sfn.StateMachine, config: ResolvedConfig): void {
  const defaultPolicy = stateMachine.role.node.tryFindChild('DefaultPolicy') as iam.Policy | undefined;
  const distributedMapPolicy = stateMachine.node.tryFindChild('DistributedMapPolicy') as iam.Policy | undefined;
  for (const policy of [defaultPolicy, distributedMapPolicy]) {
    if (!policy) continue;
    acknowledge(
      policy,
      ['NIST.800.53.R5-IAMNoInlinePolicy', 'HIPAA.Security-IAMNoInlinePolicy'],
      `The StateMachine and DistributedMap constructs write these role policies themselves (invoke the eval functions, read the shard manifest, run ${config.prefix}-${config.envId}-eval's own child executions) and offer no managed-policy option.`,
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
/** A run that has not finished in a day is stuck, not slow. */
const DEFAULT_RUN_TIMEOUT = Duration.hours(24);
/** Planning reads one benchmark and writes its shards: minutes at most. */
const DEFAULT_PLAN_TIMEOUT = Duration.minutes(5);
const DEFAULT_PLAN_MEMORY_MB = 1024;
/** Aggregation reads every record of a run and writes the report: Lambda's longest timeout. */
const DEFAULT_AGGREGATE_TIMEOUT = Duration.minutes(15);
/** The aggregator holds a run's records in memory while it builds the report. */
const DEFAULT_AGGREGATE_MEMORY_MB = 3008;
