import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Match } from 'aws-cdk-lib/assertions';
import { LAKE_ZONES } from '../../lib/stacks/data-lake-stack';
import { EXPERIMENT, PRODUCTION, templatesFor } from '../helpers';

type Resource = { Properties: Record<string, unknown>; DeletionPolicy?: string; UpdateReplacePolicy?: string };

for (const selection of [PRODUCTION, EXPERIMENT]) {
  const { dataLake: template, platform } = templatesFor(selection);
  const name = selection.stage;
  const buckets = template.findResources('AWS::S3::Bucket') as Record<string, Resource>;
  const zoneIds = LAKE_ZONES.map((zone) =>
    template.getResourceId('AWS::S3::Bucket', { Properties: { LoggingConfiguration: { LogFilePrefix: `${zone}/` } } }),
  );

  test(`DataLakeStack (${name}) has one bucket per zone plus the access-logs bucket`, () => {
    assert.equal(Object.keys(buckets).length, LAKE_ZONES.length + 1);
    assert.equal(new Set(zoneIds).size, LAKE_ZONES.length);
  });

  test(`DataLakeStack (${name}) encrypts every zone with the customer-managed lake key`, () => {
    const keyId = template.getResourceId('AWS::KMS::Key', { Properties: { EnableKeyRotation: true } });
    for (const id of zoneIds) {
      const encryption = buckets[id]!.Properties.BucketEncryption as {
        ServerSideEncryptionConfiguration: { ServerSideEncryptionByDefault: unknown; BucketKeyEnabled: boolean }[];
      };
      assert.deepEqual(encryption.ServerSideEncryptionConfiguration[0]!.ServerSideEncryptionByDefault, {
        SSEAlgorithm: 'aws:kms',
        KMSMasterKeyID: { 'Fn::GetAtt': [keyId, 'Arn'] },
      });
      assert.equal(encryption.ServerSideEncryptionConfiguration[0]!.BucketKeyEnabled, true);
    }
  });

  test(`DataLakeStack (${name}) versions, logs and locks down every bucket`, () => {
    const logsId = Object.keys(buckets).find((id) => !zoneIds.includes(id))!;
    for (const [id, bucket] of Object.entries(buckets)) {
      assert.deepEqual(bucket.Properties.VersioningConfiguration, { Status: 'Enabled' }, `${id} versioning`);
      assert.deepEqual(
        bucket.Properties.PublicAccessBlockConfiguration,
        {
          BlockPublicAcls: true,
          BlockPublicPolicy: true,
          IgnorePublicAcls: true,
          RestrictPublicBuckets: true,
        },
        `${id} public access`,
      );
      if (id !== logsId) {
        assert.deepEqual(
          (bucket.Properties.LoggingConfiguration as { DestinationBucketName: unknown }).DestinationBucketName,
          { Ref: logsId },
          `${id} access logs`,
        );
      }
      template.hasResourceProperties('AWS::S3::BucketPolicy', {
        Bucket: { Ref: id },
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
            Match.objectLike({ Effect: 'Deny', Condition: { NumericLessThan: { 's3:TlsVersion': 1.2 } } }),
          ]),
        },
      });
    }
  });

  test(`DataLakeStack (${name}) aborts stale uploads and expires old versions`, () => {
    for (const id of zoneIds) {
      const rules = (buckets[id]!.Properties.LifecycleConfiguration as { Rules: Record<string, unknown>[] }).Rules;
      assert.deepEqual(rules[0], {
        Id: 'abort-incomplete-uploads-and-expire-old-versions',
        Status: 'Enabled',
        AbortIncompleteMultipartUpload: { DaysAfterInitiation: platform.config.dataLake.abortIncompleteUploadDays },
        NoncurrentVersionExpiration: { NoncurrentDays: platform.config.dataLake.noncurrentVersionExpirationDays },
        ExpiredObjectDeleteMarker: true,
      });
    }
  });

  test(`DataLakeStack (${name}) removal policies follow the stage`, () => {
    const destroy = platform.config.behaviour.destroyOnDelete;
    for (const [id, bucket] of Object.entries(buckets)) {
      assert.equal(bucket.DeletionPolicy, destroy ? 'Delete' : 'Retain', `${id} DeletionPolicy`);
    }
    for (const [id, key] of Object.entries(template.findResources('AWS::KMS::Key') as Record<string, Resource>)) {
      assert.equal(key.DeletionPolicy, destroy ? 'Delete' : 'Retain', `${id} DeletionPolicy`);
    }
    template.resourceCountIs('Custom::S3AutoDeleteObjects', destroy ? LAKE_ZONES.length + 1 : 0);
  });

  test(`DataLakeStack (${name}) has a Glue database and an encrypted Athena workgroup for eval results`, () => {
    template.hasResourceProperties('AWS::Glue::Database', {
      DatabaseInput: { Name: `dapt_${platform.config.envId.replace(/-/g, '_')}_eval` },
    });
    template.hasResourceProperties('AWS::Athena::WorkGroup', {
      WorkGroupConfiguration: {
        EnforceWorkGroupConfiguration: true,
        ResultConfiguration: { EncryptionConfiguration: { EncryptionOption: 'SSE_KMS' } },
      },
    });
  });

  test(`DataLakeStack (${name}) publishes bucket names and the key ARN as SSM parameters`, () => {
    for (const zone of LAKE_ZONES) {
      template.hasResourceProperties('AWS::SSM::Parameter', {
        Name: `${platform.config.ssmRoot}/datalake/buckets/${zone}`,
      });
    }
    template.hasResourceProperties('AWS::SSM::Parameter', { Name: `${platform.config.ssmRoot}/datalake/kms-key-arn` });
  });
}
