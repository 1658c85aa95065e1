import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Match } from 'aws-cdk-lib/assertions';
import { LAKE_ZONES } from '../../lib/stacks/data-lake-stack';
import { EXPERIMENT, PRODUCTION, templatesFor } from '../helpers';

test('AuditStack exists in production only', () => {
  assert.ok(templatesFor(PRODUCTION).audit, 'production has no audit stack');
  assert.equal(templatesFor(EXPERIMENT).audit, undefined);
});

test('AuditStack trail validates log files, covers all regions and is KMS-encrypted', () => {
  const template = templatesFor(PRODUCTION).audit!;
  const keyId = template.getResourceId('AWS::KMS::Key', { Properties: { EnableKeyRotation: true } });
  template.hasResourceProperties('AWS::CloudTrail::Trail', {
    EnableLogFileValidation: true,
    IsMultiRegionTrail: true,
    IncludeGlobalServiceEvents: true,
    IsLogging: true,
    KMSKeyId: { 'Fn::GetAtt': [keyId, 'Arn'] },
    CloudWatchLogsLogGroupArn: Match.anyValue(),
  });
  template.hasResourceProperties('AWS::KMS::Key', {
    KeyPolicy: {
      Statement: Match.arrayWith([
        Match.objectLike({
          Sid: 'AllowCloudTrailToEncryptThisTrail',
          Principal: { Service: 'cloudtrail.amazonaws.com' },
        }),
      ]),
    },
  });
});

test('AuditStack records S3 data events of every lake zone', () => {
  const { audit } = templatesFor(PRODUCTION);
  const trail = Object.values(audit!.findResources('AWS::CloudTrail::Trail'))[0] as {
    Properties: { EventSelectors: { DataResources: { Type: string; Values: unknown[] }[]; ReadWriteType: string }[] };
  };
  const selector = trail.Properties.EventSelectors.find((s) =>
    s.DataResources?.some((d) => d.Type === 'AWS::S3::Object'),
  );
  assert.ok(selector, 'no S3 data-event selector');
  assert.equal(selector.ReadWriteType, 'All');
  assert.equal(selector.DataResources[0]!.Values.length, LAKE_ZONES.length);
});

test('AuditStack keeps its trail, bucket and logs (production retains)', () => {
  const template = templatesFor(PRODUCTION).audit!;
  for (const type of ['AWS::S3::Bucket', 'AWS::KMS::Key', 'AWS::Logs::LogGroup']) {
    for (const [id, r] of Object.entries(template.findResources(type))) {
      assert.equal((r as { DeletionPolicy?: string }).DeletionPolicy, 'Retain', `${type} ${id}`);
    }
  }
});
