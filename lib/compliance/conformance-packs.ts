/**
 * The AWS Config conformance packs that keep checking in production what the cdk-nag packs check
 * once at synth time.
 *
 * Every rule of cdk-nag's NIST 800-53 rev 5 and HIPAA Security packs is a port of an AWS Config
 * managed rule (cdk-nag's packs follow AWS's "Operational Best Practices" conformance packs); the
 * table below names the managed rule behind each. A pack here holds, for each cdk-nag rule of the
 * pack of the same name, its managed rule, plus the account-level rules synthesis cannot see (root
 * MFA, account-wide public-access blocks, EBS encryption by default...). The mapping is written by
 * hand because no library publishes it; `test/compliance/conformance-packs.test.ts` checks that it
 * covers every rule the installed cdk-nag pack has, so a cdk-nag upgrade that adds a rule fails
 * the tests until the rule is mapped here.
 */
import type { CONFORMANCE_PACKS } from '../config/schema';

export type ConformancePackName = (typeof CONFORMANCE_PACKS)[number];

/** One AWS Config managed rule, with the input parameters it needs (strings, as Config takes them). */
export interface ManagedRule {
  readonly identifier: string;
  readonly parameters?: Readonly<Record<string, string>>;
}

const rule = (identifier: string, parameters?: Record<string, string>): ManagedRule => ({ identifier, parameters });

/** cdk-nag rule name (without the pack prefix) -> the AWS Config managed rule it ports. */
export const NAG_RULE_TO_CONFIG_RULE: Readonly<Record<string, ManagedRule>> = {
  ALBHttpDropInvalidHeaderEnabled: rule('ALB_HTTP_DROP_INVALID_HEADER_ENABLED'),
  ALBHttpToHttpsRedirection: rule('ALB_HTTP_TO_HTTPS_REDIRECTION_CHECK'),
  ALBWAFEnabled: rule('ALB_WAF_ENABLED'),
  APIGWAssociatedWithWAF: rule('API_GW_ASSOCIATED_WITH_WAF'),
  APIGWCacheEnabledAndEncrypted: rule('API_GW_CACHE_ENABLED_AND_ENCRYPTED'),
  APIGWExecutionLoggingEnabled: rule('API_GW_EXECUTION_LOGGING_ENABLED'),
  APIGWSSLEnabled: rule('API_GW_SSL_ENABLED'),
  APIGWXrayEnabled: rule('API_GW_XRAY_ENABLED'),
  AutoScalingGroupELBHealthCheckRequired: rule('AUTOSCALING_GROUP_ELB_HEALTHCHECK_REQUIRED'),
  AutoScalingLaunchConfigPublicIpDisabled: rule('AUTOSCALING_LAUNCH_CONFIG_PUBLIC_IP_DISABLED'),
  CloudTrailCloudWatchLogsEnabled: rule('CLOUD_TRAIL_CLOUD_WATCH_LOGS_ENABLED'),
  CloudTrailEncryptionEnabled: rule('CLOUD_TRAIL_ENCRYPTION_ENABLED'),
  CloudTrailLogFileValidationEnabled: rule('CLOUD_TRAIL_LOG_FILE_VALIDATION_ENABLED'),
  // cdk-nag asks for an alarm action only; the managed rule's defaults also ask for an
  // insufficient-data action, which the platform's alarms do not have by design.
  CloudWatchAlarmAction: rule('CLOUDWATCH_ALARM_ACTION_CHECK', {
    alarmActionRequired: 'true',
    insufficientDataActionRequired: 'false',
    okActionRequired: 'false',
  }),
  CloudWatchLogGroupEncrypted: rule('CLOUDWATCH_LOG_GROUP_ENCRYPTED'),
  CloudWatchLogGroupRetentionPeriod: rule('CW_LOGGROUP_RETENTION_PERIOD_CHECK'),
  CodeBuildProjectEnvVarAwsCred: rule('CODEBUILD_PROJECT_ENVVAR_AWSCRED_CHECK'),
  CodeBuildProjectSourceRepoUrl: rule('CODEBUILD_PROJECT_SOURCE_REPO_URL_CHECK'),
  DMSReplicationNotPublic: rule('DMS_REPLICATION_NOT_PUBLIC'),
  DynamoDBAutoScalingEnabled: rule('DYNAMODB_AUTOSCALING_ENABLED'),
  DynamoDBInBackupPlan: rule('DYNAMODB_IN_BACKUP_PLAN'),
  DynamoDBPITREnabled: rule('DYNAMODB_PITR_ENABLED'),
  EC2EBSInBackupPlan: rule('EBS_IN_BACKUP_PLAN'),
  EC2EBSOptimizedInstance: rule('EBS_OPTIMIZED_INSTANCE'),
  EC2IMDSv2Enabled: rule('EC2_IMDSV2_CHECK'),
  EC2InstanceDetailedMonitoringEnabled: rule('EC2_INSTANCE_DETAILED_MONITORING_ENABLED'),
  EC2InstanceNoPublicIp: rule('EC2_INSTANCE_NO_PUBLIC_IP'),
  EC2InstanceProfileAttached: rule('EC2_INSTANCE_PROFILE_ATTACHED'),
  EC2InstancesInVPC: rule('INSTANCES_IN_VPC'),
  // The five ports cdk-nag's EC2RestrictedCommonPorts checks.
  EC2RestrictedCommonPorts: rule('RESTRICTED_INCOMING_TRAFFIC', {
    blockedPort1: '20',
    blockedPort2: '21',
    blockedPort3: '3389',
    blockedPort4: '3306',
    blockedPort5: '4333',
  }),
  EC2RestrictedSSH: rule('INCOMING_SSH_DISABLED'),
  ECSTaskDefinitionUserForHostMode: rule('ECS_TASK_DEFINITION_USER_FOR_HOST_MODE_CHECK'),
  EFSEncrypted: rule('EFS_ENCRYPTED_CHECK'),
  EFSInBackupPlan: rule('EFS_IN_BACKUP_PLAN'),
  ELBACMCertificateRequired: rule('ELB_ACM_CERTIFICATE_REQUIRED'),
  ELBCrossZoneLoadBalancingEnabled: rule('ELB_CROSS_ZONE_LOAD_BALANCING_ENABLED'),
  ELBDeletionProtectionEnabled: rule('ELB_DELETION_PROTECTION_ENABLED'),
  ELBLoggingEnabled: rule('ELB_LOGGING_ENABLED'),
  ELBTlsHttpsListenersOnly: rule('ELB_TLS_HTTPS_LISTENERS_ONLY'),
  ELBv2ACMCertificateRequired: rule('ELBV2_ACM_CERTIFICATE_REQUIRED'),
  EMRKerberosEnabled: rule('EMR_KERBEROS_ENABLED'),
  ElastiCacheRedisClusterAutomaticBackup: rule('ELASTICACHE_REDIS_CLUSTER_AUTOMATIC_BACKUP_CHECK'),
  ElasticBeanstalkEnhancedHealthReportingEnabled: rule('BEANSTALK_ENHANCED_HEALTH_REPORTING_ENABLED'),
  ElasticBeanstalkManagedUpdatesEnabled: rule('ELASTIC_BEANSTALK_MANAGED_UPDATES_ENABLED'),
  IAMGroupHasUsers: rule('IAM_GROUP_HAS_USERS_CHECK'),
  IAMNoInlinePolicy: rule('IAM_NO_INLINE_POLICY_CHECK'),
  IAMPolicyNoStatementsWithAdminAccess: rule('IAM_POLICY_NO_STATEMENTS_WITH_ADMIN_ACCESS'),
  IAMPolicyNoStatementsWithFullAccess: rule('IAM_POLICY_NO_STATEMENTS_WITH_FULL_ACCESS'),
  IAMUserGroupMembership: rule('IAM_USER_GROUP_MEMBERSHIP_CHECK'),
  IAMUserNoPolicies: rule('IAM_USER_NO_POLICIES_CHECK'),
  KMSBackingKeyRotationEnabled: rule('CMK_BACKING_KEY_ROTATION_ENABLED'),
  LambdaConcurrency: rule('LAMBDA_CONCURRENCY_CHECK'),
  LambdaDLQ: rule('LAMBDA_DLQ_CHECK'),
  LambdaFunctionPublicAccessProhibited: rule('LAMBDA_FUNCTION_PUBLIC_ACCESS_PROHIBITED'),
  LambdaInsideVPC: rule('LAMBDA_INSIDE_VPC'),
  OpenSearchEncryptedAtRest: rule('OPENSEARCH_ENCRYPTED_AT_REST'),
  OpenSearchErrorLogsToCloudWatch: rule('OPENSEARCH_LOGS_TO_CLOUDWATCH'),
  OpenSearchInVPCOnly: rule('OPENSEARCH_IN_VPC_ONLY'),
  OpenSearchNodeToNodeEncryption: rule('OPENSEARCH_NODE_TO_NODE_ENCRYPTION_CHECK'),
  RDSAutomaticMinorVersionUpgradeEnabled: rule('RDS_AUTOMATIC_MINOR_VERSION_UPGRADE_ENABLED'),
  RDSEnhancedMonitoringEnabled: rule('RDS_ENHANCED_MONITORING_ENABLED'),
  RDSInBackupPlan: rule('RDS_IN_BACKUP_PLAN'),
  RDSInstanceBackupEnabled: rule('DB_INSTANCE_BACKUP_ENABLED'),
  RDSInstanceDeletionProtectionEnabled: rule('RDS_INSTANCE_DELETION_PROTECTION_ENABLED'),
  RDSInstancePublicAccess: rule('RDS_INSTANCE_PUBLIC_ACCESS_CHECK'),
  RDSLoggingEnabled: rule('RDS_LOGGING_ENABLED'),
  RDSMultiAZSupport: rule('RDS_MULTI_AZ_SUPPORT'),
  RDSStorageEncrypted: rule('RDS_STORAGE_ENCRYPTED'),
  RedshiftBackupEnabled: rule('REDSHIFT_BACKUP_ENABLED'),
  RedshiftClusterConfiguration: rule('REDSHIFT_CLUSTER_CONFIGURATION_CHECK', {
    clusterDbEncrypted: 'true',
    loggingEnabled: 'true',
  }),
  RedshiftClusterMaintenanceSettings: rule('REDSHIFT_CLUSTER_MAINTENANCESETTINGS_CHECK', {
    allowVersionUpgrade: 'true',
  }),
  RedshiftClusterPublicAccess: rule('REDSHIFT_CLUSTER_PUBLIC_ACCESS_CHECK'),
  RedshiftEnhancedVPCRoutingEnabled: rule('REDSHIFT_ENHANCED_VPC_ROUTING_ENABLED'),
  RedshiftRequireTlsSSL: rule('REDSHIFT_REQUIRE_TLS_SSL'),
  S3BucketLevelPublicAccessProhibited: rule('S3_BUCKET_LEVEL_PUBLIC_ACCESS_PROHIBITED'),
  S3BucketLoggingEnabled: rule('S3_BUCKET_LOGGING_ENABLED'),
  S3BucketPublicReadProhibited: rule('S3_BUCKET_PUBLIC_READ_PROHIBITED'),
  S3BucketPublicWriteProhibited: rule('S3_BUCKET_PUBLIC_WRITE_PROHIBITED'),
  S3BucketReplicationEnabled: rule('S3_BUCKET_REPLICATION_ENABLED'),
  S3BucketSSLRequestsOnly: rule('S3_BUCKET_SSL_REQUESTS_ONLY'),
  S3BucketVersioningEnabled: rule('S3_BUCKET_VERSIONING_ENABLED'),
  S3DefaultEncryptionKMS: rule('S3_DEFAULT_ENCRYPTION_KMS'),
  SNSEncryptedKMS: rule('SNS_ENCRYPTED_KMS'),
  SageMakerEndpointConfigurationKMSKeyConfigured: rule('SAGEMAKER_ENDPOINT_CONFIGURATION_KMS_KEY_CONFIGURED'),
  SageMakerNotebookInstanceKMSKeyConfigured: rule('SAGEMAKER_NOTEBOOK_INSTANCE_KMS_KEY_CONFIGURED'),
  SageMakerNotebookNoDirectInternetAccess: rule('SAGEMAKER_NOTEBOOK_NO_DIRECT_INTERNET_ACCESS'),
  SecretsManagerRotationEnabled: rule('SECRETSMANAGER_ROTATION_ENABLED_CHECK'),
  SecretsManagerUsingKMSKey: rule('SECRETSMANAGER_USING_CMK'),
  VPCDefaultSecurityGroupClosed: rule('VPC_DEFAULT_SECURITY_GROUP_CLOSED'),
  VPCFlowLogsEnabled: rule('VPC_FLOW_LOGS_ENABLED'),
  VPCNoUnrestrictedRouteToIGW: rule('NO_UNRESTRICTED_ROUTE_TO_IGW'),
  VPCSubnetAutoAssignPublicIpDisabled: rule('SUBNET_AUTO_ASSIGN_PUBLIC_IP_DISABLED'),
  WAFv2LoggingEnabled: rule('WAFV2_LOGGING_ENABLED'),
};

/**
 * Account-level checks of both frameworks that no template shows: they hold or fail for the
 * account, whatever is deployed, so only a recorder can check them.
 */
export const ACCOUNT_LEVEL_RULES: readonly ManagedRule[] = [
  rule('CLOUD_TRAIL_ENABLED'),
  rule('MULTI_REGION_CLOUD_TRAIL_ENABLED'),
  rule('CLOUDTRAIL_S3_DATAEVENTS_ENABLED'),
  rule('ROOT_ACCOUNT_MFA_ENABLED'),
  rule('IAM_ROOT_ACCESS_KEY_CHECK'),
  rule('S3_ACCOUNT_LEVEL_PUBLIC_ACCESS_BLOCKS_PERIODIC', {
    BlockPublicAcls: 'true',
    BlockPublicPolicy: 'true',
    IgnorePublicAcls: 'true',
    RestrictPublicBuckets: 'true',
  }),
  rule('EC2_EBS_ENCRYPTION_BY_DEFAULT'),
  rule('KMS_CMK_NOT_SCHEDULED_FOR_DELETION'),
];

/** Rules both cdk-nag packs have (cdk-nag 3.0.2; the test compares these lists with the installed packs). */
const SHARED_NAG_RULES: readonly string[] = [
  'ALBHttpToHttpsRedirection',
  'APIGWCacheEnabledAndEncrypted',
  'APIGWExecutionLoggingEnabled',
  'APIGWSSLEnabled',
  'AutoScalingGroupELBHealthCheckRequired',
  'AutoScalingLaunchConfigPublicIpDisabled',
  'CloudTrailCloudWatchLogsEnabled',
  'CloudTrailEncryptionEnabled',
  'CloudTrailLogFileValidationEnabled',
  'CloudWatchAlarmAction',
  'CloudWatchLogGroupEncrypted',
  'CloudWatchLogGroupRetentionPeriod',
  'DMSReplicationNotPublic',
  'DynamoDBAutoScalingEnabled',
  'DynamoDBInBackupPlan',
  'DynamoDBPITREnabled',
  'EC2EBSInBackupPlan',
  'EC2EBSOptimizedInstance',
  'EC2IMDSv2Enabled',
  'EC2InstanceNoPublicIp',
  'EC2InstanceProfileAttached',
  'EC2InstancesInVPC',
  'EC2RestrictedCommonPorts',
  'EC2RestrictedSSH',
  'ECSTaskDefinitionUserForHostMode',
  'EFSEncrypted',
  'EFSInBackupPlan',
  'ELBACMCertificateRequired',
  'ELBCrossZoneLoadBalancingEnabled',
  'ELBDeletionProtectionEnabled',
  'ELBLoggingEnabled',
  'ELBTlsHttpsListenersOnly',
  'ELBv2ACMCertificateRequired',
  'ElastiCacheRedisClusterAutomaticBackup',
  'ElasticBeanstalkEnhancedHealthReportingEnabled',
  'ElasticBeanstalkManagedUpdatesEnabled',
  'IAMNoInlinePolicy',
  'IAMPolicyNoStatementsWithAdminAccess',
  'IAMPolicyNoStatementsWithFullAccess',
  'IAMUserGroupMembership',
  'IAMUserNoPolicies',
  'LambdaConcurrency',
  'LambdaDLQ',
  'LambdaFunctionPublicAccessProhibited',
  'LambdaInsideVPC',
  'OpenSearchEncryptedAtRest',
  'OpenSearchErrorLogsToCloudWatch',
  'OpenSearchInVPCOnly',
  'OpenSearchNodeToNodeEncryption',
  'RDSEnhancedMonitoringEnabled',
  'RDSInBackupPlan',
  'RDSInstanceBackupEnabled',
  'RDSInstanceDeletionProtectionEnabled',
  'RDSInstancePublicAccess',
  'RDSLoggingEnabled',
  'RDSMultiAZSupport',
  'RDSStorageEncrypted',
  'RedshiftBackupEnabled',
  'RedshiftClusterConfiguration',
  'RedshiftClusterMaintenanceSettings',
  'RedshiftClusterPublicAccess',
  'RedshiftEnhancedVPCRoutingEnabled',
  'RedshiftRequireTlsSSL',
  'S3BucketLevelPublicAccessProhibited',
  'S3BucketLoggingEnabled',
  'S3BucketPublicReadProhibited',
  'S3BucketPublicWriteProhibited',
  'S3BucketReplicationEnabled',
  'S3BucketSSLRequestsOnly',
  'S3BucketVersioningEnabled',
  'S3DefaultEncryptionKMS',
  'SNSEncryptedKMS',
  'SageMakerEndpointConfigurationKMSKeyConfigured',
  'SageMakerNotebookInstanceKMSKeyConfigured',
  'SageMakerNotebookNoDirectInternetAccess',
  'SecretsManagerRotationEnabled',
  'SecretsManagerUsingKMSKey',
  'VPCDefaultSecurityGroupClosed',
  'VPCFlowLogsEnabled',
  'VPCNoUnrestrictedRouteToIGW',
  'VPCSubnetAutoAssignPublicIpDisabled',
  'WAFv2LoggingEnabled',
];

/** The cdk-nag rule names of each pack. */
export const NAG_PACK_RULES: Readonly<Record<ConformancePackName, readonly string[]>> = {
  'NIST.800.53.R5': [...SHARED_NAG_RULES, 'ALBWAFEnabled', 'APIGWAssociatedWithWAF', 'KMSBackingKeyRotationEnabled'],
  'HIPAA.Security': [
    ...SHARED_NAG_RULES,
    'ALBHttpDropInvalidHeaderEnabled',
    'APIGWXrayEnabled',
    'CodeBuildProjectEnvVarAwsCred',
    'CodeBuildProjectSourceRepoUrl',
    'EC2InstanceDetailedMonitoringEnabled',
    'EMRKerberosEnabled',
    'IAMGroupHasUsers',
    'RDSAutomaticMinorVersionUpgradeEnabled',
  ],
};

/** The conformance pack's name in AWS Config: `dapt-prod-nist-800-53-r5`. */
export function conformancePackName(namePrefix: string, pack: ConformancePackName): string {
  const slug = pack === 'NIST.800.53.R5' ? 'nist-800-53-r5' : 'hipaa-security';
  return `${namePrefix}-${slug}`;
}

/**
 * The pack's template body (YAML: AWS Config reads conformance pack templates as YAML), one
 * `AWS::Config::ConfigRule` per managed rule behind the cdk-nag rules `nagRules` (by default the
 * rules of the cdk-nag pack of the same name). Throws, naming them, on rules the table above lacks.
 */
export function conformancePackTemplate(
  pack: ConformancePackName,
  nagRules: readonly string[] = NAG_PACK_RULES[pack],
): string {
  const unmapped = nagRules.filter((name) => !(name in NAG_RULE_TO_CONFIG_RULE));
  if (unmapped.length > 0) {
    throw new Error(
      `cdk-nag's ${pack} pack has rules with no AWS Config managed rule in NAG_RULE_TO_CONFIG_RULE ` +
        `(lib/compliance/conformance-packs.ts): ${unmapped.join(', ')}`,
    );
  }
  const rules = new Map<string, ManagedRule>();
  for (const name of [...nagRules].sort()) {
    const managed = NAG_RULE_TO_CONFIG_RULE[name]!;
    rules.set(managed.identifier, managed);
  }
  for (const managed of ACCOUNT_LEVEL_RULES) rules.set(managed.identifier, managed);
  const lines = [
    `# AWS Config rules mirroring cdk-nag's ${pack} pack (generated by lib/compliance/conformance-packs.ts)`,
  ];
  lines.push('Resources:');
  for (const managed of [...rules.values()].sort((a, b) => a.identifier.localeCompare(b.identifier))) {
    lines.push(`  ${logicalId(managed.identifier)}:`);
    lines.push('    Type: AWS::Config::ConfigRule');
    lines.push('    Properties:');
    lines.push(`      ConfigRuleName: ${managed.identifier.toLowerCase().replace(/_/g, '-')}`);
    lines.push('      Source:');
    lines.push('        Owner: AWS');
    lines.push(`        SourceIdentifier: ${managed.identifier}`);
    if (managed.parameters) {
      lines.push('      InputParameters:');
      for (const [key, value] of Object.entries(managed.parameters)) lines.push(`        ${key}: '${value}'`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** `S3_DEFAULT_ENCRYPTION_KMS` -> `S3DefaultEncryptionKms`. */
function logicalId(identifier: string): string {
  return identifier
    .toLowerCase()
    .split('_')
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
    .join('');
}
