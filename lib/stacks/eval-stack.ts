import { RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type { Construct } from 'constructs';
import { acknowledge } from '../compliance/acknowledge';
import type { ResolvedConfig } from '../config/load';
import { EncryptedLogGroup } from '../constructs/encrypted-log-group';
import { EvalFunctions } from '../constructs/eval-functions';
import { EvalStateMachine } from '../constructs/eval-state-machine';
import { LakeImports } from '../constructs/lake-imports';
import { PlatformKey } from '../constructs/platform-key';
import { PlatformParameters, readPlatformParameter } from '../constructs/platform-parameters';
import { ResultsTable } from '../constructs/results-table';

/** Where each kind of evaluation object lives in the eval bucket (one definition, shared with lambda/ and containers/eval). */
export { EVAL_PREFIXES } from '../../lambda/shared/layout';
export { ATHENA_SCHEMA_FILE } from '../constructs/results-table';

export interface EvalStackProps extends StackProps {
  /** The resolved stage config; the stack reads `eval`, `prefix`, `envId`, the CIDR and the log retention. */
  readonly config: ResolvedConfig;
  /** The network stack's VPC (isolated subnets only). */
  readonly vpc: ec2.IVpc;
  /** Prefix lists of the S3 and DynamoDB gateway endpoints, for the functions' egress. */
  readonly gatewayPrefixLists: { readonly s3: string; readonly dynamodb: string };
}

/**
 * The evaluation fan-out: `EvalFunctions` (plan, worker, aggregate), the `EvalStateMachine` that
 * runs them (one worker per shard in a Distributed Map), and the Athena `ResultsTable` of every
 * run's rows. The stack owns the state it keeps: its key, the idempotency table and the logs.
 */
export class EvalStack extends Stack {
  readonly stateMachine: sfn.StateMachine;
  readonly idempotencyTable: dynamodb.Table;
  readonly resultsTableName: string;

  constructor(scope: Construct, id: string, props: EvalStackProps) {
    super(scope, id, props);
    const { config } = props;
    const namePrefix = `${config.prefix}-${config.envId}`;
    const destroyOnDelete = config.behaviour.destroyOnDelete;
    const removalPolicy = destroyOnDelete ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN;
    const lake = new LakeImports(this, config.ssmRoot);
    const evalBucket = lake.bucket('eval');
    // Logs, dead letters and idempotency records get a key of this stack, whose policy it controls.
    const evalKey = new PlatformKey(this, 'EvalKey', {
      alias: `${namePrefix}-eval`,
      description: `Encrypts the evaluation fan-out's logs, queues and idempotency table in ${namePrefix}`,
      destroyOnDelete,
    }).key;
    this.idempotencyTable = createIdempotencyTable(this, evalKey, removalPolicy);
    const logs = { encryptionKey: evalKey, logRetentionDays: config.logRetentionDays, destroyOnDelete };
    const functions = new EvalFunctions(this, 'Functions', {
      ...props,
      ...logs,
      eval: config.eval,
      namePrefix,
      metricsNamespace: `${config.prefix}/${config.envId}/eval`,
      vpcCidr: config.network.cidr,
      evalBucket,
      lakeKeyArn: lake.keyArn(),
      idempotencyTable: this.idempotencyTable,
    });
    const stateMachineLogs = new EncryptedLogGroup(this, 'StateMachineLogs', {
      logGroupName: `/aws/vendedlogs/states/${namePrefix}-eval`,
      encryptionKey: evalKey,
      retentionDays: config.logRetentionDays,
      destroyOnDelete,
    });
    this.stateMachine = new EvalStateMachine(this, 'StateMachine', {
      stateMachineName: `${namePrefix}-eval`,
      evalBucket,
      lakeKeyArn: lake.keyArn(),
      logGroup: stateMachineLogs.logGroup,
      plan: functions.plan.function,
      worker: functions.worker.function,
      aggregate: functions.aggregate.function,
    }).stateMachine;
    const databaseName = readPlatformParameter(this, config.ssmRoot, 'glueDatabase');
    this.resultsTableName = new ResultsTable(this, 'ResultsTable', {
      databaseName,
      evalBucket,
      removalPolicy,
    }).tableName;

    const parameters = new PlatformParameters(this, 'Parameters', config.ssmRoot);
    parameters.publish(
      'evalStateMachineArn',
      this.stateMachine.stateMachineArn,
      'State machine that runs an evaluation',
    );
    parameters.publish(
      'evalResultsTable',
      `${databaseName}.${this.resultsTableName}`,
      'Athena table of per-unit evaluation results',
    );
  }
}

/** Short-lived records of in-flight shards (TTL-expired), encrypted with the stack's key. */
function createIdempotencyTable(
  scope: Construct,
  key: PlatformKey['key'],
  removalPolicy: RemovalPolicy,
): dynamodb.Table {
  const table = new dynamodb.Table(scope, 'IdempotencyTable', {
    partitionKey: { name: 'id', type: dynamodb.AttributeType.STRING },
    billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
    encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
    encryptionKey: key,
    timeToLiveAttribute: 'expiration',
    pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
    removalPolicy,
  });
  acknowledge(
    table,
    ['NIST.800.53.R5-DynamoDBInBackupPlan', 'HIPAA.Security-DynamoDBInBackupPlan'],
    'Holds only short-lived idempotency records of in-flight shards (TTL-expired); results live in versioned S3, so a backup plan would protect nothing of value.',
  );
  return table;
}
