/**
 * Deploy contract for resource policies and the network's edges: the bucket policies CloudTrail and
 * S3 server access logging document (with their confused-deputy conditions), trust policies of
 * service roles, VPC endpoint policies that keep data in this account, security-group egress that
 * stays inside the VPC, and which zones the trainer may read.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SPARK_JOB } from '../../lib/config/spark-job';
import { allows, type Deployment, deploymentFor, iamMatch, sparkJobRoles, type Statement } from './model';
import { EXPERIMENT, PRODUCTION } from '../helpers';

function conditionValues(s: Statement, key: string): string[] {
  return Object.values(s.conditions).flatMap((keys) => keys[key] ?? []);
}

function bucketPolicyOf(d: Deployment, stack: string, bucketToken: string): Statement[] {
  const policies = d
    .resources('AWS::S3::BucketPolicy')
    .filter((p) => d.resolve(p.stack, p.props.Bucket) === bucketToken);
  assert.ok(policies.length > 0, `no bucket policy for ${bucketToken} (looked from ${stack})`);
  return policies.flatMap((p) => d.statements(p.stack, p.props.PolicyDocument));
}

test('deploy contract (production): the trail bucket policy lets only this trail write, as CloudTrail documents', () => {
  const d = deploymentFor(PRODUCTION);
  const trail = d.resources('AWS::CloudTrail::Trail')[0]!;
  const bucketToken = d.resolve(trail.stack, trail.props.S3BucketName);
  const statements = bucketPolicyOf(d, trail.stack, bucketToken).filter(
    (s) => s.effect === 'Allow' && (s.principals.Service ?? []).includes('cloudtrail.amazonaws.com'),
  );
  const bucketArn = `arn:<AWS::Partition>:s3:::${bucketToken}`;
  assert.ok(allows(statements, 's3:GetBucketAcl', bucketArn), 'CloudTrail may not read the bucket ACL');
  assert.ok(
    allows(statements, 's3:PutObject', `${bucketArn}/AWSLogs/<AWS::AccountId>/CloudTrail/x.json.gz`),
    'CloudTrail may not write log files',
  );
  for (const s of statements) {
    assert.ok(
      conditionValues(s, 'aws:SourceArn').some((a) => a.includes(':trail/')),
      `statement ${s.sid ?? s.actions.join(',')} lacks aws:SourceArn naming the trail`,
    );
  }
});

for (const selection of [PRODUCTION, EXPERIMENT]) {
  const d = deploymentFor(selection);
  const name = selection.stage;

  test(`deploy contract (${name}): every access-logged bucket may deliver to its log bucket, as S3 documents`, () => {
    const logged = d.resources('AWS::S3::Bucket').filter((b) => b.props.LoggingConfiguration?.DestinationBucketName);
    assert.ok(logged.length >= 6);
    for (const bucket of logged) {
      const destination = d.resolve(bucket.stack, bucket.props.LoggingConfiguration.DestinationBucketName);
      const target = d.resources('AWS::S3::Bucket').find((b) => `«${b.stack}/${b.id}»` === destination);
      assert.ok(target, `${bucket.id} logs to ${destination}, not a bucket of this deployment`);
      // S3 delivers access logs only to SSE-S3 buckets.
      const sse =
        target.props.BucketEncryption?.ServerSideEncryptionConfiguration?.[0]?.ServerSideEncryptionByDefault
          ?.SSEAlgorithm;
      assert.equal(sse, 'AES256', `log bucket ${target.id} must use SSE-S3`);
      const prefix = d.resolve(bucket.stack, bucket.props.LoggingConfiguration.LogFilePrefix ?? '');
      const statements = bucketPolicyOf(d, bucket.stack, destination).filter(
        (s) => s.effect === 'Allow' && (s.principals.Service ?? []).includes('logging.s3.amazonaws.com'),
      );
      const covering = statements.filter((s) =>
        allows([s], 's3:PutObject', `arn:<AWS::Partition>:s3:::${destination}/${prefix}log-object`),
      );
      assert.ok(
        covering.length > 0,
        `${bucket.stack}/${bucket.id}: S3 may not deliver its access logs to ${destination}/${prefix}`,
      );
      // The source is named by reference or, where the bucket has a fixed name, by that name.
      const sourceArns = [`arn:<AWS::Partition>:s3:::«${bucket.stack}/${bucket.id}»`];
      if (bucket.props.BucketName)
        sourceArns.push(`arn:<AWS::Partition>:s3:::${d.resolve(bucket.stack, bucket.props.BucketName)}`);
      assert.ok(
        covering.some(
          (s) =>
            conditionValues(s, 'aws:SourceArn').some((a) => sourceArns.includes(a)) &&
            conditionValues(s, 'aws:SourceAccount').length > 0,
        ),
        `${bucket.stack}/${bucket.id}: the delivery statement must name it in aws:SourceArn and the account in aws:SourceAccount`,
      );
    }
  });

  test(`deploy contract (${name}): service roles trust their service only for this account's resources`, () => {
    const flowLogs = d.resources('AWS::EC2::FlowLog');
    assert.ok(flowLogs.length > 0);
    for (const flowLog of flowLogs) {
      const roleToken = d.resolve(flowLog.stack, flowLog.props.DeliverLogsPermissionArn).replace(/\.Arn»$/, '»');
      const role = d.roles().get(roleToken);
      assert.ok(role, `flow log role ${roleToken}`);
      const trust = d.statements(role.resource.stack, role.resource.props.AssumeRolePolicyDocument);
      for (const s of trust) {
        assert.ok(conditionValues(s, 'aws:SourceAccount').length > 0, 'flow-log role trust lacks aws:SourceAccount');
        assert.ok(
          conditionValues(s, 'aws:SourceArn').some((a) => a.includes(':vpc-flow-log/')),
          'flow-log role trust lacks aws:SourceArn',
        );
      }
    }
  });

  test(`deploy contract (${name}): the serving role trusts SageMaker only on this account's behalf`, () => {
    const roles = [...d.roles().values()].filter((r) =>
      JSON.stringify(r.resource.props.AssumeRolePolicyDocument).includes('sagemaker.amazonaws.com'),
    );
    assert.ok(roles.length > 0, 'a serving stack with a SageMaker execution role');
    for (const role of roles) {
      for (const s of d.statements(role.resource.stack, role.resource.props.AssumeRolePolicyDocument)) {
        assert.ok(
          conditionValues(s, 'aws:SourceAccount').includes('<AWS::AccountId>'),
          'SageMaker trust lacks aws:SourceAccount',
        );
      }
    }
  });

  test(`deploy contract (${name}): VPC endpoints allow only this account's principals and resources`, () => {
    const endpoints = d.resources('AWS::EC2::VPCEndpoint');
    assert.ok(endpoints.length > 0);
    for (const endpoint of endpoints) {
      const where = `${d.resolve(endpoint.stack, endpoint.props.ServiceName)} (${endpoint.id})`;
      assert.ok(
        endpoint.props.PolicyDocument,
        `${where} has no endpoint policy: it would let any account's credentials and resources through`,
      );
      for (const s of d.statements(endpoint.stack, endpoint.props.PolicyDocument)) {
        if (s.effect !== 'Allow') continue;
        const scopedToAccount =
          conditionValues(s, 'aws:PrincipalAccount').includes('<AWS::AccountId>') ||
          conditionValues(s, 'aws:ResourceAccount').includes('<AWS::AccountId>') ||
          s.resources.every((r) => r !== '*' && !r.includes(':::*'));
        assert.ok(scopedToAccount, `${where}: statement ${s.sid ?? ''} is not limited to this account`);
      }
    }
    // Data stores: a principal of this account must not copy data to another account's bucket or table.
    for (const endpoint of endpoints.filter((e) => /\.(s3|dynamodb)$/.test(d.resolve(e.stack, e.props.ServiceName)))) {
      const statements = d.statements(endpoint.stack, endpoint.props.PolicyDocument);
      const open = statements.filter(
        (s) =>
          s.effect === 'Allow' &&
          s.resources.includes('*') &&
          !conditionValues(s, 'aws:ResourceAccount').includes('<AWS::AccountId>'),
      );
      assert.deepEqual(
        open.map((s) => s.sid),
        [],
        `${endpoint.id}: statements on any resource must require aws:ResourceAccount`,
      );
    }
  });

  test(`deploy contract (${name}): security groups send nothing outside the VPC`, () => {
    const cidr = d.platformCidr;
    for (const group of d.resources('AWS::EC2::SecurityGroup')) {
      for (const rule of group.props.SecurityGroupEgress ?? []) {
        const where = `${group.stack}/${group.id} egress ${JSON.stringify(rule)}`;
        assert.notEqual(rule.CidrIp, '0.0.0.0/0', where);
        assert.notEqual(rule.CidrIpv6, '::/0', where);
        if (rule.CidrIp && rule.CidrIp !== '255.255.255.255/32') assert.equal(rule.CidrIp, cidr, where);
      }
    }
    for (const rule of d.resources('AWS::EC2::SecurityGroupEgress')) {
      assert.notEqual(rule.props.CidrIp, '0.0.0.0/0', `${rule.stack}/${rule.id}`);
      if (rule.props.CidrIp) assert.equal(rule.props.CidrIp, cidr, `${rule.stack}/${rule.id}`);
    }
  });

  test(`deploy contract (${name}): Spark job roles trust EMR Serverless only for this account's application`, () => {
    const roles = sparkJobRoles(d);
    assert.ok(roles.length >= (name === 'experiment' ? 2 : 1), 'expected a Spark job role per environment and per run');
    for (const { role, trust, application } of roles) {
      assert.ok(application, `${role}: aws:SourceArn does not name an EMR Serverless application of this deployment`);
      for (const s of trust) {
        assert.ok(
          conditionValues(s, 'aws:SourceAccount').includes('<AWS::AccountId>'),
          `${role}: no aws:SourceAccount`,
        );
        assert.equal(
          conditionValues(s, 'aws:SourceArn').length,
          1,
          `${role}: aws:SourceArn must name the one application`,
        );
      }
    }
  });

  test(`deploy contract (${name}): Spark job roles can read what the job reads and write its logs, under their own prefix`, () => {
    const zone = (prefix: string): string => {
      const bucket = d.resources('AWS::S3::Bucket').find((b) => b.id.startsWith(prefix));
      assert.ok(bucket, prefix);
      return `arn:<AWS::Partition>:s3:::«${bucket.stack}/${bucket.id}»`;
    };
    for (const { role, resource, statements, application } of sparkJobRoles(d)) {
      // A run stack's role writes only under runs/<run>/; the experiment stage's, the whole zones.
      const prefix = resource.stack.includes('-run-') ? 'runs/contract/' : '';
      const reads = [
        `${zone('RawZone')}/inputs/kb.jsonl`,
        `${zone('CuratedZone')}/clean/records.jsonl`,
        `${zone('DatasetsZone')}/${prefix}pipeline/x/data.yaml`,
        `${zone('ArtifactsZone')}/${SPARK_JOB.entryPoint}`,
        `${zone('ArtifactsZone')}/${SPARK_JOB.environmentArchive}`,
      ];
      for (const object of reads)
        assert.ok(allows(statements, 's3:GetObject', object), `${role} cannot read ${object}`);
      const logs = `${zone('ArtifactsZone')}/${prefix}${SPARK_JOB.logsPrefix}applications/x/jobs/y/stdout.gz`;
      assert.ok(allows(statements, 's3:PutObject', logs), `${role} cannot write Spark's logs at ${logs}`);
      assert.ok(
        !allows(statements, 's3:PutObject', `${zone('ArtifactsZone')}/other/x`),
        `${role} may write the artifacts zone`,
      );
      assert.ok(!allows(statements, 's3:PutObject', `${zone('ModelsZone')}/${prefix}x`), `${role} may write models`);
      const group = d.resolve(
        application!.stack,
        application!.props.MonitoringConfiguration.CloudWatchLoggingConfiguration.LogGroupName,
      );
      for (const action of ['logs:CreateLogStream', 'logs:PutLogEvents']) {
        assert.ok(
          statements.some(
            (s) =>
              s.actions.some((a) => iamMatch(a, action)) &&
              s.resources.some(
                // The group's Arn attribute is `arn:...:log-group:<name>:*`, its streams included.
                (r) => r.includes(`:log-group:${group}:`) || r === group.replace(/»$/, '.Arn»'),
              ),
          ),
          `${role} may not ${action} in the application's log group ${group}`,
        );
      }
    }
  });

  test(`deploy contract (${name}): trainer jobs cannot read the raw (unredacted) zone`, () => {
    const raw = d.resources('AWS::S3::Bucket').find((b) => b.id.startsWith('RawZone'));
    assert.ok(raw);
    const rawObjects = `arn:<AWS::Partition>:s3:::«${raw.stack}/${raw.id}»/any/object`;
    const trainerRoles = [...d.roles()].filter(([, r]) => /TrainerJobs/.test(r.resource.id));
    assert.ok(trainerRoles.length > 0);
    for (const [role, { statements }] of trainerRoles) {
      assert.ok(!allows(statements, 's3:GetObject', rawObjects), `${role} may read the raw zone`);
    }
  });
}

test('deploy contract (production): data preparation writes only under its own run', () => {
  // Production is shared: no environment-wide data-prep job; each run stack brings one whose role
  // writes curated records and manifests only under runs/<run>/.
  const d = deploymentFor(PRODUCTION, 'contract');
  const zones = d.resources('AWS::S3::Bucket').filter((b) => /^(Curated|Datasets)Zone/.test(b.id));
  assert.equal(zones.length, 2);
  const writers = [...d.roles()].filter(([, r]) =>
    r.statements.some(
      (s) =>
        s.actions.some((a) => iamMatch(a, 's3:PutObject')) &&
        s.resources.some((res) => zones.some((z) => res.startsWith(`arn:<AWS::Partition>:s3:::«${z.stack}/${z.id}»/`))),
    ),
  );
  assert.ok(writers.length > 0, 'expected the run stack to prepare data');
  for (const [role, { statements }] of writers) {
    for (const zone of zones) {
      const bucket = `arn:<AWS::Partition>:s3:::«${zone.stack}/${zone.id}»`;
      assert.ok(
        !allows(statements, 's3:PutObject', `${bucket}/shared/records.jsonl`),
        `${role} may write anywhere in ${zone.id}`,
      );
    }
    assert.ok(
      zones.some((z) =>
        allows(
          statements,
          's3:PutObject',
          `arn:<AWS::Partition>:s3:::«${z.stack}/${z.id}»/runs/contract/records.jsonl`,
        ),
      ),
      `${role} cannot write its own run`,
    );
  }
});
