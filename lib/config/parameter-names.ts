/**
 * Names of the SSM parameters platform stacks publish, with no CDK dependency, so the stacks
 * and the command-line tools (cli/) read them from one place.
 */

/** Short environment id used in names: `prod`, or `exp-<experiment>`. */
export function environmentId(stage: string, experiment?: string): string {
  return stage === 'production' ? 'prod' : `exp-${experiment}`;
}

/** Root of every parameter an environment publishes, e.g. `/dapt/prod`. */
export function parameterRoot(prefix: string, envId: string): string {
  return `/${prefix}/${envId}`;
}

/** Every parameter a platform publishes, by key. The path is `<ssmRoot>/<value>`. */
export const PLATFORM_PARAMETERS = {
  vpcId: 'network/vpc-id',
  vpcCidr: 'network/vpc-cidr',
  availabilityZones: 'network/availability-zones',
  trainingSubnetIds: 'network/subnets/training',
  evalSubnetIds: 'network/subnets/eval',
  efaSecurityGroupId: 'network/security-groups/efa',
  endpointSecurityGroupId: 'network/security-groups/endpoints',
  lakeKeyArn: 'datalake/kms-key-arn',
  rawBucket: 'datalake/buckets/raw',
  curatedBucket: 'datalake/buckets/curated',
  datasetsBucket: 'datalake/buckets/datasets',
  modelsBucket: 'datalake/buckets/models',
  evalBucket: 'datalake/buckets/eval',
  artifactsBucket: 'datalake/buckets/artifacts',
  accessLogsBucket: 'datalake/buckets/access-logs',
  glueDatabase: 'datalake/glue-database',
  athenaWorkGroup: 'datalake/athena-workgroup',
  evalStateMachineArn: 'eval/state-machine-arn',
  evalResultsTable: 'eval/results-table',
  trainingGpuQueueArn: 'training/gpu-queue-arn',
  trainingCpuQueueArn: 'training/cpu-queue-arn',
  trainingSingleNodeJobDefinitionArn: 'training/job-definitions/single-node',
  trainingMultiNodeJobDefinitionArn: 'training/job-definitions/multi-node',
  trainingPreflightJobDefinitionArn: 'training/job-definitions/preflight',
  trainingDataPrepJobDefinitionArn: 'training/job-definitions/data-prep',
  trainingTokenizeJobDefinitionArn: 'training/job-definitions/tokenize',
  trainingSparkApplicationId: 'training/spark/application-id',
  trainingSparkApplicationArn: 'training/spark/application-arn',
  trainingSparkLogGroup: 'training/spark/log-group',
  trainingSparkJobRoleArn: 'training/spark/job-role-arn',
  trainingKeyArn: 'training/kms-key-arn',
  trainingJobLogGroup: 'training/job-log-group',
  trainingMaxNodes: 'training/max-nodes',
  trainingCapacityMode: 'training/capacity-mode',
  servingEndpointName: 'serving/endpoint-name',
  servingBaseComponent: 'serving/base-component',
  servingAlarmTopicArn: 'serving/alarm-topic-arn',
  servingModelPackageGroup: 'serving/model-package-group',
  servingRegistrarFunctionArn: 'serving/registrar-function-arn',
  pipelineStateMachineArn: 'pipeline/state-machine-arn',
  pipelineTopicArn: 'pipeline/topic-arn',
} as const;
export type PlatformParameterKey = keyof typeof PLATFORM_PARAMETERS;

/** Full SSM path of a parameter, e.g. `/dapt/prod/network/vpc-id`. Lists are comma-joined. */
export function platformParameterName(ssmRoot: string, key: PlatformParameterKey): string {
  return `${ssmRoot}/${PLATFORM_PARAMETERS[key]}`;
}

/** Where a run stack (`-c run=NAME`) publishes its job definitions and its Spark job role. */
export function runParameterName(
  ssmRoot: string,
  run: string,
  key: 'single-node' | 'multi-node' | 'tokenize' | 'data-prep' | 'spark-job-role',
): string {
  if (key === 'spark-job-role') return `${ssmRoot}/runs/${run}/spark/job-role-arn`;
  return `${ssmRoot}/runs/${run}/job-definitions/${key}`;
}

/**
 * Prefix of run outputs (checkpoints, merged weights, adapters, metrics, configs) in the models and
 * artifacts zones, and of a run's curated records and manifests: `runs/<run>/`. Here, with the
 * other names the stacks and the CLIs share, so both import one definition.
 */
export const RUNS_PREFIX = 'runs/';

/**
 * The lifecycle's own parameters, written by `dapt env extend|expire-now` and the sweeper, never by
 * CloudFormation (so a redeploy leaves them alone): `expires-at`, an ISO time that overrides the
 * stacks' ttl when written after their latest deploy, and `warned`, the expiry the sweeper last
 * warned about. An environment's live at `<ssmRoot>/lifecycle/...`, a run stack's at
 * `<ssmRoot>/runs/<run>/...`.
 */
export function lifecycleParameterName(ssmRoot: string, key: 'expires-at' | 'warned', run?: string): string {
  return run === undefined ? `${ssmRoot}/lifecycle/${key}` : `${ssmRoot}/runs/${run}/${key}`;
}
