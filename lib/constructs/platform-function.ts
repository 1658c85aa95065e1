import * as path from 'node:path';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import type * as logs from 'aws-cdk-lib/aws-logs';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { acknowledge, type ExpectedWildcard } from '../compliance/acknowledge';
import { ManagedRole } from './managed-role';
import { REPO_ROOT } from './repository-image';
import { EncryptedLogGroup } from './encrypted-log-group';

/** How the function's code is packaged: a TypeScript entry bundled with esbuild, or a container image. */
export type PlatformFunctionCode =
  | { readonly kind: 'nodejs'; readonly entry: string }
  | { readonly kind: 'image'; readonly code: lambda.DockerImageCode };

export interface PlatformFunctionProps {
  /** One sentence on what the function does. */
  readonly description: string;
  /** The bundled TypeScript entry or the container image the function runs. */
  readonly code: PlatformFunctionCode;
  /** Environment variables; infrastructure and code meet only through these. */
  readonly environment: Record<string, string>;
  /**
   * The VPC the function runs in (no internet route, only endpoints), its isolated subnets and a
   * security group allowing HTTPS to the endpoints only; or why it runs outside any VPC, which
   * acknowledges the packs' Lambda-in-VPC rule with that reason.
   */
  readonly network:
    | { readonly vpc: ec2.IVpc; readonly subnets: ec2.SubnetSelection; readonly securityGroup: ec2.ISecurityGroup }
    | { readonly outsideVpcReason: string };
  /** Key for the log group, the dead-letter queue and the environment variables. */
  readonly encryptionKey: kms.IKey;
  /** Retention of the function's log group, in days (one of CloudWatch Logs' allowed values). */
  readonly logRetentionDays: number;
  /** Delete the log group and dead-letter queue with the stack (experiments) instead of keeping them. */
  readonly destroyOnDelete: boolean;
  /**
   * Concurrent executions reserved for (and capping) this function.
   * @default - none reserved: the caller bounds concurrency (a reservation fails to deploy in an
   * account whose quota is below 100 plus the reservation, such as a new account's)
   */
  readonly reservedConcurrency?: number;
  /**
   * Why no concurrency is reserved, for the compliance packs (when `reservedConcurrency` is absent).
   * @default - the evaluation functions' reason: their caller bounds their concurrency
   */
  readonly unreservedConcurrencyReason?: string;
  /** Longest an invocation may run (Lambda allows at most 15 minutes). */
  readonly timeout: Duration;
  /** Memory of the function in MB; Lambda gives CPU in proportion. */
  readonly memoryMb: number;
  /** The function's permissions beyond logging, tracing and its VPC interfaces. */
  readonly statements: readonly iam.PolicyStatement[];
  /**
   * Wildcards `statements` are expected to grant, each with its reason; any other fails the synth.
   * @default - none
   */
  readonly wildcards?: readonly ExpectedWildcard[];
}

/**
 * A Lambda function as this platform runs them: inside the VPC's isolated subnets, its own role
 * with a customer-managed policy (no AWS managed policies), a KMS-encrypted log group with the
 * stage's retention, X-Ray tracing, reserved concurrency and a KMS-encrypted dead-letter queue.
 */
export class PlatformFunction extends Construct {
  readonly function: lambda.Function;
  readonly role: iam.Role;
  readonly policy: iam.ManagedPolicy;
  readonly deadLetterQueue: sqs.Queue;

  constructor(scope: Construct, id: string, props: PlatformFunctionProps) {
    super(scope, id);
    const network = props.network;
    const inVpc = 'vpc' in network;
    const logs = new EncryptedLogGroup(this, 'Logs', {
      encryptionKey: props.encryptionKey,
      retentionDays: props.logRetentionDays,
      destroyOnDelete: props.destroyOnDelete,
    });
    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetterQueue', {
      encryption: sqs.QueueEncryption.KMS,
      encryptionMasterKey: props.encryptionKey,
      enforceSSL: true,
      retentionPeriod: DEFAULT_DLQ_RETENTION,
      removalPolicy: props.destroyOnDelete ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN,
    });

    const execution = new ManagedRole(this, 'Execution', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: props.description,
      // The first matching reason is used: outside a VPC `*` is tracing plus whatever the caller explains.
      wildcards: inVpc
        ? [FUNCTION_INFRA_WILDCARD, ...(props.wildcards ?? [])]
        : [...(props.wildcards ?? []), FUNCTION_TRACING_WILDCARD],
      statements: [
        ...infrastructureStatements(logs.logGroup, this.deadLetterQueue, props.encryptionKey, inVpc),
        ...props.statements,
      ],
    });
    this.role = execution.role;
    this.policy = execution.policy;

    const common = {
      description: props.description,
      role: this.role.withoutPolicyUpdates(),
      environment: props.environment,
      // Environment variables at rest with the function's key, not Lambda's AWS-managed one.
      environmentEncryption: props.encryptionKey,
      ...('vpc' in network
        ? { vpc: network.vpc, vpcSubnets: network.subnets, securityGroups: [network.securityGroup] }
        : {}),
      logGroup: logs.logGroup,
      loggingFormat: lambda.LoggingFormat.JSON,
      tracing: lambda.Tracing.ACTIVE,
      reservedConcurrentExecutions: props.reservedConcurrency,
      deadLetterQueue: this.deadLetterQueue,
      timeout: props.timeout,
      memorySize: props.memoryMb,
      architecture: lambda.Architecture.ARM_64,
    };
    this.function =
      props.code.kind === 'nodejs'
        ? new nodejs.NodejsFunction(this, 'Function', {
            ...common,
            entry: props.code.entry,
            handler: 'handler',
            runtime: DEFAULT_NODE_RUNTIME,
            projectRoot: REPO_ROOT,
            depsLockFilePath: path.join(REPO_ROOT, 'package-lock.json'),
            bundling: { minify: true, sourceMap: true, target: 'node24', format: nodejs.OutputFormat.CJS },
          })
        : new lambda.DockerImageFunction(this, 'Function', { ...common, code: props.code.code });
    if (props.reservedConcurrency === undefined) {
      acknowledgeUnreservedConcurrency(this.function, props.unreservedConcurrencyReason ?? DEFAULT_UNRESERVED_REASON);
    }
    if ('outsideVpcReason' in network) {
      acknowledge(
        this.function,
        ['NIST.800.53.R5-LambdaInsideVPC', 'HIPAA.Security-LambdaInsideVPC'],
        network.outsideVpcReason,
      );
    }
    // The role's policy must exist before the function is created, or the first invocations fail.
    this.function.node.addDependency(this.policy);
  }
}

/** The compliance packs ask every function for reserved concurrency; why these have none. */
function acknowledgeUnreservedConcurrency(fn: lambda.Function, reason: string): void {
  acknowledge(fn, ['NIST.800.53.R5-LambdaConcurrency', 'HIPAA.Security-LambdaConcurrency'], reason);
}

const DEFAULT_UNRESERVED_REASON =
  "Concurrency is bounded by its caller (the state machine's Distributed Map maxConcurrency, one plan and one aggregate per run); a reservation would fail to deploy in accounts whose Lambda quota is below 100 plus the reservation, such as new accounts (quota 10). Set eval.workerReservedConcurrency to reserve.";

/** What every platform function may do besides its own work: log, dead-letter, use its key, join the VPC, trace. */
function infrastructureStatements(
  logGroup: logs.ILogGroup,
  deadLetterQueue: sqs.IQueue,
  key: kms.IKey,
  inVpc: boolean,
): iam.PolicyStatement[] {
  const vpcInterfaces = new iam.PolicyStatement({
    sid: 'VpcNetworkInterfaces',
    actions: [
      'ec2:CreateNetworkInterface',
      'ec2:DescribeNetworkInterfaces',
      'ec2:DeleteNetworkInterface',
      'ec2:AssignPrivateIpAddresses',
      'ec2:UnassignPrivateIpAddresses',
    ],
    resources: ['*'],
  });
  return [
    new iam.PolicyStatement({
      sid: 'WriteOwnLogs',
      actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
      resources: [logGroup.logGroupArn],
    }),
    new iam.PolicyStatement({
      sid: 'DeadLetters',
      actions: ['sqs:SendMessage'],
      resources: [deadLetterQueue.queueArn],
    }),
    new iam.PolicyStatement({
      sid: 'UseKeyForLogsAndDeadLetters',
      actions: ['kms:Decrypt', 'kms:GenerateDataKey'],
      resources: [key.keyArn],
    }),
    ...(inVpc ? [vpcInterfaces] : []),
    new iam.PolicyStatement({
      sid: 'Tracing',
      actions: ['xray:PutTraceSegments', 'xray:PutTelemetryRecords'],
      resources: ['*'],
    }),
  ];
}

/** The one wildcard every platform function's policy has (actions without resource-level scope). */
const FUNCTION_INFRA_WILDCARD: ExpectedWildcard = {
  pattern: /^\*$/,
  reason:
    'Only for actions without resource-level permissions: EC2 network-interface management for Lambda in a VPC, and X-Ray PutTraceSegments/PutTelemetryRecords.',
};

/** The wildcard of a function outside any VPC: tracing only. */
const FUNCTION_TRACING_WILDCARD: ExpectedWildcard = {
  pattern: /^\*$/,
  reason: 'Only for actions without resource-level permissions: X-Ray PutTraceSegments/PutTelemetryRecords.',
};

/** Newest Node.js Lambda runtime; the compliance packs flag older ones. */
const DEFAULT_NODE_RUNTIME = lambda.Runtime.NODEJS_24_X;
/** How long a failed event waits in the dead-letter queue (SQS allows at most 14 days). */
const DEFAULT_DLQ_RETENTION = Duration.days(14);
