import * as path from 'node:path';
import { Aws, Duration, Stack } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { Platform as AssetPlatform } from 'aws-cdk-lib/aws-ecr-assets';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { EVAL_PREFIXES } from '../../lambda/shared/layout';
import type { ExpectedWildcard } from '../compliance/acknowledge';
import type { EvalConfig } from '../config/schema';
import { allowHttpsToServices, SUBNET_GROUPS } from './isolated-vpc';
import { PlatformFunction } from './platform-function';
import { PYTHON_BUILD_LEFTOVERS, REPO_ROOT } from './repository-image';

export interface EvalFunctionsProps {
  /** The `eval` section of the stage config: worker timeout, memory, concurrency, Bedrock models. */
  readonly eval: EvalConfig;
  /** `<prefix>-<envId>`: names the SageMaker endpoints the worker may invoke (`<namePrefix>-*`). */
  readonly namePrefix: string;
  /** CloudWatch namespace of the functions' metrics (Powertools), e.g. `dapt/prod/eval`. */
  readonly metricsNamespace: string;
  /** The VPC whose isolated eval subnets the functions run in. */
  readonly vpc: ec2.IVpc;
  /** The VPC's CIDR as a literal, so the compliance checks can see the egress stays inside it. */
  readonly vpcCidr: string;
  /** Prefix lists of the S3 and DynamoDB gateway endpoints, for the functions' egress. */
  readonly gatewayPrefixLists: { readonly s3: string; readonly dynamodb: string };
  /** The eval bucket: benchmarks, run specs and shards, results, reports, Athena rows. */
  readonly evalBucket: s3.IBucket;
  /** The lake's key, which encrypts the eval bucket. */
  readonly lakeKeyArn: string;
  /** Records which shards are in flight, so a retried shard does not run twice at once. */
  readonly idempotencyTable: dynamodb.ITable;
  /** Encrypts the functions' logs, dead-letter queues and environment variables. */
  readonly encryptionKey: kms.IKey;
  /** Retention of the functions' log groups, in days. */
  readonly logRetentionDays: number;
  /** Delete logs and dead-letter queues with the stack (experiments) instead of keeping them. */
  readonly destroyOnDelete: boolean;
}

/**
 * The three functions of an evaluation run, each allowed exactly its part of the eval bucket:
 * `plan` (TypeScript) validates a run spec and writes its shards, `worker` (TypeScript) generates,
 * judges and scores one shard, `aggregate` (the Python package's image) writes the report and the
 * Athena rows. All run in the isolated eval subnets, with egress to the VPC endpoints only.
 */
export class EvalFunctions extends Construct {
  readonly plan: PlatformFunction;
  readonly worker: PlatformFunction;
  readonly aggregate: PlatformFunction;

  constructor(scope: Construct, id: string, props: EvalFunctionsProps) {
    super(scope, id);
    const securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc: props.vpc,
      description: 'Evaluation Lambdas: outbound to VPC endpoints only (the subnets have no internet route)',
      allowAllOutbound: false,
    });
    allowHttpsToServices(securityGroup, props.vpcCidr, [
      props.gatewayPrefixLists.s3,
      props.gatewayPrefixLists.dynamodb,
    ]);
    const common = {
      network: { vpc: props.vpc, subnets: { subnetGroupName: SUBNET_GROUPS.eval }, securityGroup },
      encryptionKey: props.encryptionKey,
      logRetentionDays: props.logRetentionDays,
      destroyOnDelete: props.destroyOnDelete,
      wildcards: prefixWildcards(),
    };
    const environment = (service: string): Record<string, string> => ({
      EVAL_BUCKET: props.evalBucket.bucketName,
      IDEMPOTENCY_TABLE: props.idempotencyTable.tableName,
      POWERTOOLS_METRICS_NAMESPACE: props.metricsNamespace,
      POWERTOOLS_SERVICE_NAME: service,
    });
    this.plan = new PlatformFunction(this, 'Plan', {
      ...common,
      description: 'Validates a run spec and its benchmark, writes shards and the shard manifest',
      code: { kind: 'nodejs', entry: path.join(REPO_ROOT, 'lambda', 'eval-plan', 'index.ts') },
      environment: environment('eval-plan'),
      timeout: DEFAULT_PLAN_TIMEOUT,
      memoryMb: DEFAULT_PLAN_MEMORY_MB,
      statements: planStatements(props),
    });
    this.worker = new PlatformFunction(this, 'Worker', {
      ...common,
      description: 'Generates, judges and scores the units of one shard; one result object per content-addressed key',
      code: { kind: 'nodejs', entry: path.join(REPO_ROOT, 'lambda', 'eval-worker', 'index.ts') },
      environment: environment('eval-worker'),
      reservedConcurrency: props.eval.workerReservedConcurrency,
      wildcards: [...prefixWildcards(), endpointWildcard(props.namePrefix)],
      timeout: Duration.seconds(props.eval.workerTimeoutSeconds),
      memoryMb: props.eval.workerMemoryMb,
      statements: workerStatements(this, props),
    });
    this.aggregate = new PlatformFunction(this, 'Aggregate', {
      ...common,
      description: 'Aggregates per-item results into the run report (JSON, HTML) and Athena rows',
      code: { kind: 'image', code: evalPackageImage() },
      environment: environment('eval-aggregate'),
      timeout: DEFAULT_AGGREGATE_TIMEOUT,
      memoryMb: DEFAULT_AGGREGATE_MEMORY_MB,
      statements: aggregateStatements(props),
    });
  }
}

/** ARNs of the objects under the given prefixes of the eval bucket. */
function objects(bucket: s3.IBucket, ...prefixes: string[]): string[] {
  return prefixes.map((p) => bucket.arnForObjects(`${p}*`));
}

/**
 * What every function needs besides its own objects: ListBucket, because S3 answers a read of a
 * missing key with 403 instead of 404 unless the caller may list the bucket, and "not there yet"
 * is how the functions find unfinished units (a condition on s3:prefix would not help: S3 checks
 * ListBucket for a missing key without a prefix); and the lake key, which encrypts the bucket.
 */
function sharedStatements(props: EvalFunctionsProps): iam.PolicyStatement[] {
  return [
    new iam.PolicyStatement({
      sid: 'TellMissingObjectsApart',
      actions: ['s3:ListBucket'],
      resources: [props.evalBucket.bucketArn],
    }),
    new iam.PolicyStatement({
      sid: 'UseLakeKey',
      actions: ['kms:Decrypt', 'kms:GenerateDataKey'],
      resources: [props.lakeKeyArn],
    }),
  ];
}

function planStatements(props: EvalFunctionsProps): iam.PolicyStatement[] {
  const bucket = props.evalBucket;
  return [
    new iam.PolicyStatement({
      sid: 'ReadBenchmarksAndSpecs',
      actions: ['s3:GetObject'],
      resources: objects(bucket, EVAL_PREFIXES.benchmarks, EVAL_PREFIXES.runs),
    }),
    new iam.PolicyStatement({
      sid: 'WriteRunFiles',
      actions: ['s3:PutObject'],
      resources: objects(bucket, EVAL_PREFIXES.runs),
    }),
    ...sharedStatements(props),
  ];
}

function workerStatements(scope: Construct, props: EvalFunctionsProps): iam.PolicyStatement[] {
  const bucket = props.evalBucket;
  const region = Stack.of(scope).region;
  return [
    new iam.PolicyStatement({
      sid: 'ReadShardsAndBenchmarks',
      actions: ['s3:GetObject'],
      resources: objects(bucket, EVAL_PREFIXES.benchmarks, EVAL_PREFIXES.runs),
    }),
    new iam.PolicyStatement({
      sid: 'ReadWriteResults',
      actions: ['s3:GetObject', 's3:PutObject'],
      resources: objects(bucket, EVAL_PREFIXES.results),
    }),
    sharedStatements(props)[0]!,
    new iam.PolicyStatement({
      sid: 'ShardIdempotency',
      actions: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:DeleteItem'],
      resources: [props.idempotencyTable.tableArn],
    }),
    new iam.PolicyStatement({
      sid: 'InvokeConfiguredBedrockModels',
      actions: ['bedrock:InvokeModel'],
      resources: props.eval.bedrockModelIds.map(
        (id) => `arn:${Aws.PARTITION}:bedrock:${region}::foundation-model/${id}`,
      ),
    }),
    new iam.PolicyStatement({
      sid: 'InvokeThisEnvironmentsEndpoints',
      actions: ['sagemaker:InvokeEndpoint'],
      // An inference component (a base model or an adapter) is authorized as itself too.
      resources: ['endpoint', 'inference-component'].map(
        (type) => `arn:${Aws.PARTITION}:sagemaker:${region}:${Aws.ACCOUNT_ID}:${type}/${props.namePrefix}-*`,
      ),
    }),
    sharedStatements(props)[1]!,
  ];
}

function aggregateStatements(props: EvalFunctionsProps): iam.PolicyStatement[] {
  const bucket = props.evalBucket;
  return [
    new iam.PolicyStatement({
      sid: 'ReadRunsAndResults',
      actions: ['s3:GetObject'],
      resources: objects(bucket, EVAL_PREFIXES.runs, EVAL_PREFIXES.results),
    }),
    new iam.PolicyStatement({
      sid: 'WriteReportsAndAthenaRows',
      actions: ['s3:PutObject'],
      resources: objects(bucket, EVAL_PREFIXES.runs, EVAL_PREFIXES.athena),
    }),
    ...sharedStatements(props),
  ];
}

/**
 * The evaluation package itself (containers/eval) as a Lambda container image; `handler` picks the
 * entry point (the image's default is the aggregator). One asset for every function that uses it.
 */
export function evalPackageImage(handler?: string): lambda.DockerImageCode {
  return lambda.DockerImageCode.fromImageAsset(path.join(REPO_ROOT, 'containers', 'eval'), {
    file: 'Dockerfile.lambda',
    platform: AssetPlatform.LINUX_ARM64,
    exclude: [...PYTHON_BUILD_LEFTOVERS, 'tests'],
    ...(handler ? { cmd: [handler] } : {}),
  });
}

/** Object keys under these prefixes are created per run or per content hash; wildcards stop at the prefix. */
function prefixWildcards(): ExpectedWildcard[] {
  return Object.values(EVAL_PREFIXES).map((prefix) => ({
    pattern: new RegExp(`^arn:(aws[a-z-]*|<AWS::Partition>):s3:::<[A-Za-z0-9]+>/${prefix.replace(/\//g, '\\/')}\\*$`),
    reason: `Object keys under '${prefix}' of the eval bucket are created per run and per content hash; access stops at that prefix.`,
  }));
}

function endpointWildcard(namePrefix: string): ExpectedWildcard {
  return {
    pattern: new RegExp(`:sagemaker:.+:(endpoint|inference-component)/${namePrefix}-\\*$`),
    reason:
      "Serving endpoints and their inference components (base models, adapters) are created per model by this environment; the name prefix limits the worker to this environment's.",
  };
}

/** Planning reads one benchmark and writes its shards: minutes at most. */
const DEFAULT_PLAN_TIMEOUT = Duration.minutes(5);
const DEFAULT_PLAN_MEMORY_MB = 1024;
/** Aggregation reads every record of a run and writes the report: Lambda's longest timeout. */
const DEFAULT_AGGREGATE_TIMEOUT = Duration.minutes(15);
/** The aggregator holds a run's records in memory while it builds the report. */
const DEFAULT_AGGREGATE_MEMORY_MB = 3008;
