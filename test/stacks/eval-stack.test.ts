import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { buildPlatform, createApp } from '../../lib/app';
import { DEFAULT_CONFIG_DIR } from '../../lib/config/load';
import { ATHENA_SCHEMA_FILE } from '../../lib/stacks/eval-stack';
import { EXPERIMENT, PRODUCTION, templatesFor } from '../helpers';

type Statement = { Sid?: string; Action: string | string[]; Resource: unknown; Effect: string };
type Resource = { Properties: Record<string, unknown>; DeletionPolicy?: string };

for (const selection of [PRODUCTION, EXPERIMENT]) {
  const { evaluation: template, network, platform } = templatesFor(selection);
  const name = selection.stage;
  const functions = template.findResources('AWS::Lambda::Function', {
    Properties: { Description: Match.stringLikeRegexp('shard|run spec|Aggregates') },
  }) as Record<string, Resource>;
  const policies = Object.values(template.findResources('AWS::IAM::ManagedPolicy')) as Resource[];
  const statements = policies.flatMap((p) => (p.Properties.PolicyDocument as { Statement: Statement[] }).Statement);

  test(`EvalStack (${name}) runs plan, worker and aggregate Lambdas in the isolated eval subnets`, () => {
    assert.equal(Object.keys(functions).length, 3);
    const evalSubnets = Object.entries(network.findResources('AWS::EC2::Subnet'))
      .filter(([, s]) =>
        ((s as Resource).Properties.Tags as { Key: string; Value: string }[]).some(
          (t) => t.Key === 'aws-cdk:subnet-name' && t.Value === 'eval',
        ),
      )
      .map(([id]) => id);
    for (const [id, fn] of Object.entries(functions)) {
      const vpcConfig = fn.Properties.VpcConfig as { SubnetIds: { 'Fn::ImportValue': string }[] };
      assert.equal(vpcConfig.SubnetIds.length, evalSubnets.length, `${id} subnets`);
      for (const subnet of vpcConfig.SubnetIds) {
        assert.ok(
          evalSubnets.some((s) => subnet['Fn::ImportValue'].includes(s)),
          `${id} runs outside the eval subnets: ${JSON.stringify(subnet)}`,
        );
      }
      assert.deepEqual(fn.Properties.TracingConfig, { Mode: 'Active' }, `${id} tracing`);
      // None reserved unless configured: a reservation fails in accounts with a small quota.
      assert.equal(fn.Properties.ReservedConcurrentExecutions, undefined, `${id} reserved concurrency`);
      assert.ok(fn.Properties.DeadLetterConfig, `${id} dead-letter queue`);
    }
    template.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('one shard'),
      Runtime: 'nodejs24.x',
      Timeout: platform.config.eval.workerTimeoutSeconds,
      Environment: {
        Variables: Match.objectLike({
          EVAL_BUCKET: Match.anyValue(),
          IDEMPOTENCY_TABLE: Match.anyValue(),
          POWERTOOLS_SERVICE_NAME: 'eval-worker',
        }),
      },
    });
    template.hasResourceProperties('AWS::Lambda::Function', {
      PackageType: 'Image',
      Description: Match.stringLikeRegexp('Aggregates'),
    });
  });

  test(`EvalStack (${name}) roles use customer-managed policies with no wildcard actions`, () => {
    for (const role of Object.values(template.findResources('AWS::IAM::Role')) as Resource[]) {
      assert.equal(role.Properties.ManagedPolicyArns, undefined, 'AWS managed policy attached to a role');
    }
    for (const statement of statements) {
      for (const action of [statement.Action].flat()) {
        assert.ok(!action.includes('*') || ['kms:GenerateDataKey*'].includes(action), `wildcard action ${action}`);
        assert.ok(!/FullAccess/.test(action));
      }
    }
  });

  test(`EvalStack (${name}) scopes model access to the configured Bedrock models and this environment's endpoints`, () => {
    const bedrock = statements.find((s) => s.Sid === 'InvokeConfiguredBedrockModels')!;
    assert.deepEqual(bedrock.Action, 'bedrock:InvokeModel');
    assert.equal([bedrock.Resource].flat().length, platform.config.eval.bedrockModelIds.length);
    const sagemaker = statements.find((s) => s.Sid === 'InvokeThisEnvironmentsEndpoints')!;
    assert.match(JSON.stringify(sagemaker.Resource), new RegExp(`endpoint/dapt-${platform.config.envId}-\\*`));
  });

  test(`EvalStack (${name}) gives each function only its prefixes of the eval bucket`, () => {
    const resourcesOf = (sid: string): string =>
      JSON.stringify(statements.filter((s) => s.Sid === sid).map((s) => s.Resource));
    assert.match(resourcesOf('ReadWriteResults'), /\/results\/items\/\*/);
    assert.doesNotMatch(resourcesOf('ReadWriteResults'), /\/runs\//);
    assert.match(resourcesOf('WriteReportsAndAthenaRows'), /\/athena\/results\/\*/);
    // A bucket-wide grant renders as [..., {"Ref": "<bucket parameter>"}, "/*"].
    const bucketWide = /\{"Ref":"SsmParameterValue[A-Za-z0-9]+"\},"\/\*"\]/;
    const stateMachinePolicy = Object.values(template.findResources('AWS::IAM::Policy')) as Resource[];
    assert.ok(
      stateMachinePolicy.some((p) => bucketWide.test(JSON.stringify(p.Properties.PolicyDocument))),
      "the pattern must recognise the state machine's bucket-wide item-reader grant (it would not catch anything otherwise)",
    );
    for (const statement of statements) {
      assert.doesNotMatch(
        JSON.stringify(statement.Resource),
        bucketWide,
        `bucket-wide object access in ${statement.Sid}`,
      );
    }
  });

  test(`EvalStack (${name}) state machine: plan -> distributed map over S3 shards -> aggregate, logged and traced`, () => {
    const machine = Object.values(template.findResources('AWS::StepFunctions::StateMachine'))[0] as Resource;
    const definition = JSON.stringify(machine.Properties.DefinitionString);
    assert.match(definition, /\\"Mode\\":\\"DISTRIBUTED\\"/);
    assert.match(definition, /\\"Resource\\":\\"arn:.*states:::s3:getObject\\"/);
    assert.match(definition, /\\"InputType\\":\\"JSON\\"/);
    assert.match(definition, /MaxConcurrencyPath/);
    assert.deepEqual(machine.Properties.TracingConfiguration, { Enabled: true });
    assert.equal((machine.Properties.LoggingConfiguration as { Level: string }).Level, 'ALL');
  });

  test(`EvalStack (${name}) idempotency table: customer-managed key, PITR, TTL`, () => {
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }],
      SSESpecification: { SSEEnabled: true, SSEType: 'KMS', KMSMasterKeyId: Match.anyValue() },
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      TimeToLiveSpecification: { AttributeName: 'expiration', Enabled: true },
    });
  });

  test(`EvalStack (${name}) Athena table columns come from the aggregator's schema file`, () => {
    const columns = (JSON.parse(readFileSync(ATHENA_SCHEMA_FILE, 'utf8')) as { name: string; type: string }[]).filter(
      (c) => c.name !== 'run_id',
    );
    template.hasResourceProperties('AWS::Glue::Table', {
      TableInput: Match.objectLike({
        PartitionKeys: [{ Name: 'run_id', Type: 'string' }],
        StorageDescriptor: Match.objectLike({ Columns: columns.map((c) => ({ Name: c.name, Type: c.type })) }),
      }),
    });
  });

  test(`EvalStack (${name}) reads the lake through SSM (no export lock) and publishes its state machine`, () => {
    const parameters = template.toJSON().Parameters as Record<string, { Type: string; Default: string }>;
    const ssmNames = Object.values(parameters)
      .filter((p) => p.Type.startsWith('AWS::SSM::Parameter::Value'))
      .map((p) => p.Default);
    for (const key of ['datalake/buckets/eval', 'datalake/kms-key-arn', 'datalake/glue-database']) {
      assert.ok(ssmNames.includes(`${platform.config.ssmRoot}/${key}`), `${key} not read from SSM`);
    }
    assert.doesNotMatch(JSON.stringify(template.toJSON().Resources), /data-lake:ExportsOutput/);
    template.hasResourceProperties('AWS::SSM::Parameter', {
      Name: `${platform.config.ssmRoot}/eval/state-machine-arn`,
    });
  });

  test(`EvalStack (${name}) removal policies follow the stage`, () => {
    const expected = platform.config.behaviour.destroyOnDelete ? 'Delete' : 'Retain';
    for (const type of [
      'AWS::DynamoDB::Table',
      'AWS::KMS::Key',
      'AWS::Logs::LogGroup',
      'AWS::SQS::Queue',
      'AWS::Glue::Table',
    ]) {
      for (const [id, r] of Object.entries(template.findResources(type)) as [string, Resource][]) {
        assert.equal(r.DeletionPolicy, expected, `${type} ${id}`);
      }
    }
  });
}

test('EvalStack reserves worker concurrency only when configured', () => {
  const raw = JSON.parse(readFileSync(path.join(DEFAULT_CONFIG_DIR, 'experiment.json'), 'utf8')) as Record<
    string,
    Record<string, unknown>
  >;
  raw.eval!.workerReservedConcurrency = 60;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dapt-eval-'));
  writeFileSync(path.join(dir, 'experiment.json'), JSON.stringify(raw));
  const template = Template.fromStack(
    buildPlatform(createApp(), { stage: 'experiment', experiment: 'rc', configDir: dir }).evaluation,
  );
  template.hasResourceProperties('AWS::Lambda::Function', {
    Description: Match.stringLikeRegexp('one shard'),
    ReservedConcurrentExecutions: 60,
  });
});
