import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as emrserverless from 'aws-cdk-lib/aws-emrserverless';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import type { TrainingConfig } from '../config/schema';
import { SPARK_JOB } from '../config/spark-job';
import { EncryptedLogGroup } from './encrypted-log-group';
import { allowHttpsToServices, SUBNET_GROUPS } from './isolated-vpc';

export interface SparkApplicationProps {
  /** Start of the application's name, e.g. `dapt-prod` (the application is `<namePrefix>-data`). */
  readonly namePrefix: string;
  /** The VPC whose isolated training subnets the workers run in. */
  readonly vpc: ec2.IVpc;
  /** The VPC's CIDR as a literal, so the compliance checks can see the egress stays inside it. */
  readonly vpcCidr: string;
  /** Prefix list of the S3 gateway endpoint: the workers' only way to S3. */
  readonly s3PrefixListId: string;
  /** Most vCPUs, memory and disk held at once over all workers (`training.sparkMaxCapacity`). */
  readonly maxCapacity: TrainingConfig['sparkMaxCapacity'];
  /** Encrypts the driver and executor logs in CloudWatch (a `PlatformKey`). */
  readonly logKey: kms.IKey;
  /** Retention of the log group in days (`logRetentionDays`). */
  readonly logRetentionDays: number;
  /** Delete the log group with its stack (experiments) instead of keeping it. */
  readonly destroyOnDelete: boolean;
  /** The lake's artifacts zone, which holds the job code and Spark's own logs (`spark-logs/`). */
  readonly artifactsBucket: s3.IBucket;
  /** The lake's key, which encrypts Spark's logs in the artifacts zone as it encrypts every zone. */
  readonly lakeKeyArn: string;
}

/**
 * An EMR Serverless application for the data pipeline's Spark jobs: workers in the isolated
 * training subnets behind a security group that reaches only the VPC's endpoints and S3, started
 * by the first job and stopped after a few idle minutes, with no capacity held while idle
 * (nothing is billed then). Driver and executor logs go to an encrypted log group and, with
 * Spark's event logs, to the artifacts zone. Jobs bring their own role (`SparkJobRole`).
 */
export class SparkApplication extends Construct {
  readonly application: emrserverless.CfnApplication;
  /** Egress to the VPC endpoints and S3 only; the subnets have no internet route either. */
  readonly securityGroup: ec2.SecurityGroup;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: SparkApplicationProps) {
    super(scope, id);
    this.securityGroup = new ec2.SecurityGroup(this, 'SecurityGroup', {
      vpc: props.vpc,
      description:
        'Spark data-preparation workers: outbound to VPC endpoints only (the subnets have no internet route)',
      allowAllOutbound: false,
    });
    allowHttpsToServices(this.securityGroup, props.vpcCidr, [props.s3PrefixListId]);
    this.logGroup = new EncryptedLogGroup(this, 'Logs', {
      encryptionKey: props.logKey,
      retentionDays: props.logRetentionDays,
      destroyOnDelete: props.destroyOnDelete,
    }).logGroup;
    this.application = new emrserverless.CfnApplication(this, 'Resource', {
      name: `${props.namePrefix}-data`,
      type: 'SPARK',
      releaseLabel: SPARK_JOB.releaseLabel,
      architecture: 'X86_64',
      autoStartConfiguration: { enabled: true },
      autoStopConfiguration: { enabled: true, idleTimeoutMinutes: DEFAULT_IDLE_TIMEOUT_MINUTES },
      // No initialCapacity: nothing is pre-initialized, so an idle application costs nothing.
      maximumCapacity: renderCapacity(props.maxCapacity),
      networkConfiguration: {
        subnetIds: props.vpc.selectSubnets({ subnetGroupName: SUBNET_GROUPS.training }).subnetIds,
        securityGroupIds: [this.securityGroup.securityGroupId],
      },
      monitoringConfiguration: renderMonitoring(props, this.logGroup),
    });
  }

  /** `arn:<partition>:emr-serverless:<region>:<account>:/applications/<id>`. */
  get applicationArn(): string {
    return this.application.attrArn;
  }

  get applicationId(): string {
    return this.application.attrApplicationId;
  }
}

/** EMR Serverless's capacity strings: `400 vCPU`, `3000 GB`, `20000 GB`. */
function renderCapacity(
  capacity: TrainingConfig['sparkMaxCapacity'],
): emrserverless.CfnApplication.MaximumAllowedResourcesProperty {
  return { cpu: `${capacity.vCpus} vCPU`, memory: `${capacity.memoryGiB} GB`, disk: `${capacity.diskGiB} GB` };
}

/**
 * The application's default monitoring; a job run of a run stack overrides the S3 location with
 * its own `runs/<run>/spark-logs/`, the only place its role may write logs.
 */
function renderMonitoring(
  props: SparkApplicationProps,
  logGroup: logs.ILogGroup,
): emrserverless.CfnApplication.MonitoringConfigurationProperty {
  return {
    cloudWatchLoggingConfiguration: {
      enabled: true,
      logGroupName: logGroup.logGroupName,
      logStreamNamePrefix: SPARK_JOB.logStreamPrefix,
      encryptionKeyArn: props.logKey.keyArn,
    },
    s3MonitoringConfiguration: {
      logUri: `s3://${props.artifactsBucket.bucketName}/${SPARK_JOB.logsPrefix}`,
      encryptionKeyArn: props.lakeKeyArn,
    },
  };
}

/** Workers go back this many minutes after the last job ends; the next job waits for new ones (about a minute). */
const DEFAULT_IDLE_TIMEOUT_MINUTES = 5;
