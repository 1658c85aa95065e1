/**
 * Deploy contract for encryption: whoever reads or writes a KMS-encrypted location must be able to
 * use its key, and each service that encrypts on the platform's behalf must be named in the key's
 * policy the way that service's documentation requires. IAM and KMS decide this at run time;
 * synthesis does not look.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { allows, type Deployment, deploymentFor, sparkJobRoles, type Statement } from './model';
import { EXPERIMENT, PRODUCTION } from '../helpers';

interface EncryptedLocation {
  readonly what: string;
  /** Resource patterns of the data (objects of a bucket, a table, a queue). */
  readonly resource: string;
  readonly key: string;
  /** Data actions that need the key, and the KMS action each needs. */
  readonly needs: readonly { readonly action: string; readonly kms: string }[];
}

/** Every bucket, table and queue encrypted with a customer-managed key, with the key token. */
function encryptedLocations(d: Deployment): EncryptedLocation[] {
  const out: EncryptedLocation[] = [];
  for (const bucket of d.resources('AWS::S3::Bucket')) {
    const rule = bucket.props.BucketEncryption?.ServerSideEncryptionConfiguration?.[0]?.ServerSideEncryptionByDefault;
    if (rule?.SSEAlgorithm !== 'aws:kms' || !rule.KMSMasterKeyID) continue;
    out.push({
      what: `bucket ${bucket.stack}/${bucket.id}`,
      resource: `arn:<AWS::Partition>:s3:::«${bucket.stack}/${bucket.id}»/`,
      key: d.resolve(bucket.stack, rule.KMSMasterKeyID),
      needs: [
        { action: 's3:GetObject', kms: 'kms:Decrypt' },
        // A multipart upload (boto3 and the SDKs switch to it for large files) also decrypts.
        { action: 's3:PutObject', kms: 'kms:GenerateDataKey' },
      ],
    });
  }
  for (const table of d.resources('AWS::DynamoDB::Table')) {
    const sse = table.props.SSESpecification;
    if (!sse?.KMSMasterKeyId) continue;
    out.push({
      what: `table ${table.stack}/${table.id}`,
      resource: `«${table.stack}/${table.id}.Arn»`,
      key: d.resolve(table.stack, sse.KMSMasterKeyId),
      needs: ['dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:Query'].map((action) => ({
        action,
        kms: 'kms:Decrypt',
      })),
    });
  }
  for (const queue of d.resources('AWS::SQS::Queue')) {
    if (!queue.props.KmsMasterKeyId) continue;
    out.push({
      what: `queue ${queue.stack}/${queue.id}`,
      resource: `«${queue.stack}/${queue.id}.Arn»`,
      key: d.resolve(queue.stack, queue.props.KmsMasterKeyId),
      needs: [
        { action: 'sqs:SendMessage', kms: 'kms:GenerateDataKey' },
        { action: 'sqs:ReceiveMessage', kms: 'kms:Decrypt' },
      ],
    });
  }
  for (const topic of d.resources('AWS::SNS::Topic')) {
    if (!topic.props.KmsMasterKeyId) continue;
    // A publisher to an encrypted topic needs the key itself (SNS's documentation of SSE):
    // GenerateDataKey* and Decrypt, or Publish fails with KMS.AccessDeniedException.
    out.push({
      what: `topic ${topic.stack}/${topic.id}`,
      resource: `«${topic.stack}/${topic.id}»`,
      key: d.resolve(topic.stack, topic.props.KmsMasterKeyId),
      needs: [
        { action: 'sns:Publish', kms: 'kms:GenerateDataKey' },
        { action: 'sns:Publish', kms: 'kms:Decrypt' },
      ],
    });
  }
  return out;
}

/** The resource a statement's pattern names, as it matches a location (objects: `<bucket>/...`). */
function touches(statements: readonly Statement[], action: string, location: EncryptedLocation): boolean {
  const probe = location.resource.endsWith('/') ? `${location.resource}some/object` : location.resource;
  return allows(statements, action, probe);
}

function keyStatementsFor(d: Deployment, keyToken: string): Statement[] {
  const policy = d.keyPolicy(keyToken);
  assert.ok(policy, `no key in this deployment resolves to ${keyToken}`);
  return policy.statements;
}

/** Allow statements of `statements` whose principals include `principal` (of `kind`). */
function forPrincipal(statements: readonly Statement[], kind: string, principal: string): Statement[] {
  return statements.filter(
    (s) => s.effect === 'Allow' && (s.principals[kind] ?? []).some((p) => p === principal || p === '*'),
  );
}

function conditionValues(s: Statement, key: string): string[] {
  return Object.values(s.conditions).flatMap((keys) => keys[key] ?? []);
}

for (const selection of [PRODUCTION, EXPERIMENT]) {
  const d = deploymentFor(selection);
  const name = selection.stage;

  test(`deploy contract (${name}): every role that reads or writes encrypted data may use its key`, () => {
    const locations = encryptedLocations(d);
    assert.ok(locations.length > 5, 'expected the lake, the eval table, the dead-letter queues and the topics');
    const problems: string[] = [];
    for (const [role, { statements }] of d.roles()) {
      for (const location of locations) {
        for (const { action, kms } of location.needs) {
          if (!touches(statements, action, location)) continue;
          if (!allows(statements, kms, location.key))
            problems.push(`${role} may ${action} on ${location.what} but not ${kms} on its key ${location.key}`);
        }
      }
    }
    assert.deepEqual(problems, [], 'each of these calls would fail with AccessDenied (KMS)');
  });

  test(`deploy contract (${name}): CloudWatch Logs is named in the key policy of every encrypted log group`, () => {
    for (const group of d.resources('AWS::Logs::LogGroup')) {
      if (!group.props.KmsKeyId) continue;
      const statements = keyStatementsFor(d, d.resolve(group.stack, group.props.KmsKeyId)).filter((s) =>
        (s.principals.Service ?? []).some((p) => /^logs\.(<AWS::Region>|[a-z0-9-]+)\.amazonaws\.com$/.test(p)),
      );
      const where = `log group ${group.stack}/${group.id}`;
      for (const action of ['kms:Encrypt', 'kms:Decrypt', 'kms:GenerateDataKey', 'kms:DescribeKey']) {
        assert.ok(allows(statements, action, '*'), `${where}: its key does not let CloudWatch Logs ${action}`);
      }
      assert.ok(
        statements.every((s) => conditionValues(s, 'kms:EncryptionContext:aws:logs:arn').length > 0),
        `${where}: the CloudWatch Logs statement must be limited by kms:EncryptionContext:aws:logs:arn`,
      );
    }
  });

  test(`deploy contract (${name}): the keys of Spark's logs let the job roles, which write them, use them`, () => {
    // EMR Serverless writes a job's logs with the job's role; with encryptionKeyArn set, that role
    // must be able to use the key ("Encrypting logs", EMR Serverless User Guide), through its own
    // policy and a key policy that delegates to IAM or names it.
    const roles = sparkJobRoles(d);
    assert.ok(roles.length > 0);
    for (const { role, statements, application } of roles) {
      assert.ok(application, role);
      const monitoring = application.props.MonitoringConfiguration;
      const keys = [
        monitoring.CloudWatchLoggingConfiguration.EncryptionKeyArn,
        monitoring.S3MonitoringConfiguration.EncryptionKeyArn,
      ].map((k) => d.resolve(application.stack, k));
      for (const key of keys) {
        const policy = keyStatementsFor(d, key);
        const delegates = policy.some(
          (s) =>
            s.effect === 'Allow' &&
            (s.principals.AWS ?? []).some(
              (p) => p === 'arn:<AWS::Partition>:iam::<AWS::AccountId>:root' || p === role,
            ) &&
            allows([s], 'kms:GenerateDataKey', '*'),
        );
        assert.ok(delegates, `key ${key}: its policy neither delegates to IAM nor names ${role}`);
        for (const action of ['kms:GenerateDataKey', 'kms:Decrypt']) {
          assert.ok(allows(statements, action, key), `${role} may not ${action} with ${key}`);
        }
      }
      const group = d
        .resources('AWS::Logs::LogGroup')
        .find(
          (g) =>
            `«${g.stack}/${g.id}»` ===
            d.resolve(application.stack, monitoring.CloudWatchLoggingConfiguration.LogGroupName),
        );
      assert.ok(group, `${application.id}: its log group is not one of this deployment's`);
      assert.equal(
        d.resolve(group.stack, group.props.KmsKeyId),
        keys[0],
        'the log group is encrypted with the key the jobs are told',
      );
    }
  });

  test(`deploy contract (${name}): step functions log groups lie under /aws/vendedlogs/`, () => {
    // Outside that prefix every log delivery adds to the account's one CloudWatch Logs resource
    // policy, which is limited to 5,120 characters; under it, delivery needs no resource policy.
    for (const machine of d.resources('AWS::StepFunctions::StateMachine')) {
      for (const destination of machine.props.LoggingConfiguration?.Destinations ?? []) {
        const groupToken = d.resolve(machine.stack, destination.CloudWatchLogsLogGroup.LogGroupArn);
        const group = d.resources('AWS::Logs::LogGroup').find((g) => groupToken.startsWith(`«${g.stack}/${g.id}.`));
        assert.ok(group, `${machine.id}: log group ${groupToken} not found`);
        assert.match(
          String(group.props.LogGroupName ?? ''),
          /^\/aws\/vendedlogs\/states\//,
          `${machine.id} logs to ${group.id}`,
        );
      }
    }
  });

  test(`deploy contract (${name}): the service-linked roles that launch GPU nodes are named in the EBS key policy`, () => {
    // Auto Scaling and EC2 Fleet launch the nodes with their service-linked roles, which carry no
    // IAM permissions of their own: the key policy must name them as principals (a condition on
    // the account root does not give them anything), and they must exist before the key policy.
    const templates = d.resources('AWS::EC2::LaunchTemplate');
    assert.ok(templates.length > 0);
    for (const lt of templates) {
      for (const mapping of lt.props.LaunchTemplateData?.BlockDeviceMappings ?? []) {
        if (!mapping.Ebs?.KmsKeyId) continue;
        const keyToken = d.resolve(lt.stack, mapping.Ebs.KmsKeyId);
        const policy = d.keyPolicy(keyToken)!;
        for (const role of [
          'autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling',
          'ec2fleet.amazonaws.com/AWSServiceRoleForEC2Fleet',
        ]) {
          const arn = `arn:<AWS::Partition>:iam::<AWS::AccountId>:role/aws-service-role/${role}`;
          const statements = forPrincipal(policy.statements, 'AWS', arn);
          for (const action of [
            'kms:Encrypt',
            'kms:Decrypt',
            'kms:ReEncryptFrom',
            'kms:GenerateDataKeyWithoutPlaintext',
            'kms:DescribeKey',
            'kms:CreateGrant',
          ]) {
            assert.ok(
              allows(statements, action, '*'),
              `launch template ${lt.id}: key ${keyToken} does not let ${role} ${action}`,
            );
          }
          const dependencies = new Set(policy.key.dependsOn);
          const creator = d
            .resources()
            .filter((r) => r.stack === policy.key.stack && dependencies.has(r.id))
            .find(
              (r) =>
                JSON.stringify(r.props).includes(role.split('/')[0]!) &&
                JSON.stringify(r.props).includes('createServiceLinkedRole'),
            );
          assert.ok(
            creator,
            `key ${policy.key.id} must depend on a resource that creates ${role} if it is missing (a key policy naming a missing role is rejected)`,
          );
        }
      }
    }
  });

  test(`deploy contract (${name}): launch template changes reach the GPU compute environment`, () => {
    for (const ce of d.resources('AWS::Batch::ComputeEnvironment')) {
      const lt = ce.props.ComputeResources?.LaunchTemplate;
      if (!lt) continue;
      assert.ok(lt.Version, `${ce.id}: no launch template version: Batch keeps the version it first saw`);
      const version = d.resolve(ce.stack, lt.Version);
      assert.match(
        version,
        /LatestVersionNumber»$/,
        `${ce.id}: version ${version} must follow the template's latest version`,
      );
    }
  });
}

test('deploy contract (production): the CloudTrail key policy has the sections CloudTrail documents', () => {
  const d = deploymentFor(PRODUCTION);
  const trails = d.resources('AWS::CloudTrail::Trail');
  assert.equal(trails.length, 1);
  const trail = trails[0]!;
  const keyToken = d.resolve(trail.stack, trail.props.KMSKeyId);
  const cloudtrail = forPrincipal(keyStatementsFor(d, keyToken), 'Service', 'cloudtrail.amazonaws.com');

  const encrypt = cloudtrail.filter((s) => allows([s], 'kms:GenerateDataKey', '*'));
  assert.ok(encrypt.length > 0, 'CloudTrail may not encrypt log files');
  for (const s of encrypt) {
    assert.ok(
      conditionValues(s, 'kms:EncryptionContext:aws:cloudtrail:arn').length > 0,
      'encrypt: limited to trails by kms:EncryptionContext:aws:cloudtrail:arn',
    );
    assert.ok(
      conditionValues(s, 'aws:SourceArn').some((a) => a.includes(':trail/')),
      'encrypt: limited to this trail by aws:SourceArn',
    );
  }
  // DescribeKey calls carry no encryption context: a statement that requires one never matches.
  assert.ok(
    cloudtrail.some(
      (s) =>
        allows([s], 'kms:DescribeKey', '*') &&
        conditionValues(s, 'kms:EncryptionContext:aws:cloudtrail:arn').length === 0,
    ),
    'CloudTrail may not describe the key without an encryption context',
  );
  // With an S3 Bucket Key on the trail bucket, creating the trail needs kms:Decrypt.
  assert.ok(
    cloudtrail.some((s) => allows([s], 'kms:Decrypt', '*')),
    'CloudTrail may not decrypt (the trail bucket uses an S3 Bucket Key)',
  );

  const readers = keyStatementsFor(d, keyToken).filter(
    (s) => s.effect === 'Allow' && allows([s], 'kms:Decrypt', '*') && (s.principals.AWS ?? []).length > 0,
  );
  assert.ok(
    readers.some(
      (s) =>
        conditionValues(s, 'kms:CallerAccount').length > 0 &&
        conditionValues(s, 'kms:EncryptionContext:aws:cloudtrail:arn').length > 0,
    ),
    "principals of this account may not decrypt the trail's log files",
  );
});
