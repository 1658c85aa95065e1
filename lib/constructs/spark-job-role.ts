import { Aws, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import type { ExpectedWildcard } from '../compliance/acknowledge';
import { SPARK_JOB } from '../config/spark-job';
import { dataPipelineStatements, dataPipelineWildcards } from './data-prep-job';
import { ManagedRole } from './managed-role';

export interface SparkJobRoleProps {
  /** Start of the role's description, e.g. `dapt-exp-demo` or `dapt-prod-run-lora7b`. */
  readonly namePrefix: string;
  /** The EMR Serverless application that may assume the role (and no other). */
  readonly applicationArn: string;
  /** Prefix of the curated and datasets zones the job may write: '' (the whole zones, in an experiment stage) or `runs/<run>/`. */
  readonly writePrefix: string;
  /** The zones the pipeline reads and writes, and the artifacts zone (job code and Spark's logs). */
  readonly buckets: Record<'raw' | 'curated' | 'datasets' | 'artifacts', s3.IBucket>;
  /** The lake's key, which encrypts every zone. */
  readonly lakeKeyArn: string;
  /** ARN of the application's log group (`arn:...:log-group:<name>:*`). */
  readonly logGroupArn: string;
  /** The key of that log group. */
  readonly logKeyArn: string;
}

/**
 * The role of the data pipeline's Spark jobs: what the Batch data-prep job may do (the same
 * statements, the same `writePrefix`), plus reading the job's code, writing Spark's logs under the
 * prefix and writing to the application's log group. Only EMR Serverless may assume it, and only
 * for the one application of this account.
 */
export class SparkJobRole extends Construct {
  readonly role: iam.Role;

  constructor(scope: Construct, id: string, props: SparkJobRoleProps) {
    super(scope, id);
    const written = props.writePrefix === '' ? 'whole zones' : `under '${props.writePrefix}' only`;
    this.role = new ManagedRole(this, 'Role', {
      // Confused-deputy guard: the service may assume the role only for this account's application.
      assumedBy: new iam.ServicePrincipal('emr-serverless.amazonaws.com').withConditions({
        StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID },
        ArnEquals: { 'aws:SourceArn': props.applicationArn },
      }),
      description: `Spark training-data pipeline jobs of ${props.namePrefix}: read raw inputs, write curated records and dataset manifests (${written})`,
      statements: [...dataPipelineStatements(props), ...sparkStatements(scope, props)],
      wildcards: [...dataPipelineWildcards(props.writePrefix), ...sparkWildcards(props.writePrefix)],
    }).role;
  }
}

/** What a Spark job needs besides the pipeline's own permissions. */
function sparkStatements(scope: Construct, props: SparkJobRoleProps): iam.PolicyStatement[] {
  const { artifacts } = props.buckets;
  return [
    new iam.PolicyStatement({
      sid: 'ReadJobCode',
      actions: ['s3:GetObject'],
      resources: [artifacts.arnForObjects(`${SPARK_JOB.codePrefix}*`)],
    }),
    new iam.PolicyStatement({
      sid: 'WriteSparkLogs',
      actions: ['s3:PutObject', 's3:AbortMultipartUpload'],
      resources: [artifacts.arnForObjects(`${props.writePrefix}${SPARK_JOB.logsPrefix}*`)],
    }),
    new iam.PolicyStatement({
      sid: 'WriteJobLogs',
      actions: ['logs:CreateLogStream', 'logs:PutLogEvents', 'logs:DescribeLogStreams'],
      resources: [props.logGroupArn],
    }),
    // EMR Serverless looks the group up before it writes (its CloudWatch logging documentation).
    new iam.PolicyStatement({
      sid: 'FindLogGroup',
      actions: ['logs:DescribeLogGroups'],
      resources: [`arn:${Aws.PARTITION}:logs:${Stack.of(scope).region}:${Aws.ACCOUNT_ID}:log-group:*`],
    }),
    new iam.PolicyStatement({
      sid: 'UseLogKey',
      actions: ['kms:Decrypt', 'kms:GenerateDataKey'],
      resources: [props.logKeyArn],
    }),
  ];
}

function sparkWildcards(writePrefix: string): ExpectedWildcard[] {
  const escaped = (text: string): string => text.replace(/[/-]/g, '\\$&');
  return [
    {
      pattern: new RegExp(
        `^arn:(aws[a-z-]*|<AWS::Partition>):s3:::<[A-Za-z0-9]+>/${escaped(SPARK_JOB.codePrefix)}\\*$`,
      ),
      reason:
        "The job's code (entry point and packed Python environment), read-only; file names come with each release of the code.",
    },
    {
      pattern: new RegExp(
        `^arn:(aws[a-z-]*|<AWS::Partition>):s3:::<[A-Za-z0-9]+>/${escaped(writePrefix + SPARK_JOB.logsPrefix)}\\*$`,
      ),
      reason: "Spark's event logs and driver/executor logs of this role's jobs; EMR Serverless names them per job run.",
    },
    {
      pattern: /:log-group:(<[A-Za-z0-9]+>|[^:*]+):\*$/,
      reason: 'Log streams of the one Spark log group; EMR Serverless names a stream per job run and worker.',
    },
    {
      pattern: /:log-group:\*$/,
      reason:
        'logs:DescribeLogGroups lists groups by name prefix and has no narrower resource; it reads names, never events.',
    },
  ];
}
