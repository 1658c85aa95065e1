/** cli/serve-lib.ts: model packages against moto; inference components and the registrar with fakes (moto serves neither). */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  CreateModelPackageCommand,
  CreateModelPackageGroupCommand,
  DescribeInferenceComponentCommand,
  SageMakerClient,
} from '@aws-sdk/client-sagemaker';
import {
  adapterComponentRequest,
  deploymentProblems,
  describePackage,
  invokeRegistrar,
  type PackageSummary,
  servingParameterNames,
  waitForComponent,
} from '../../cli/serve-lib';
import { type Moto, startMoto } from '../lambda/helpers';

let moto: Moto;
before(async () => {
  moto = await startMoto();
});
after(async () => {
  await moto?.stop();
});

const APPROVED: PackageSummary = {
  arn: 'arn:aws:sagemaker:us-east-1:123456789012:model-package/dapt-prod-website-builder/3',
  approval: 'Approved',
  gate: 'PASS',
  adapterUrl: 's3://models/runs/sft/adapter.tar.gz',
};

test('serve reads its names from /<prefix>/<envId>/serving/...', () => {
  const names = servingParameterNames({ stage: 'production', prefix: 'dapt', region: 'us-east-1' });
  assert.equal(names.endpoint, '/dapt/prod/serving/endpoint-name');
  assert.equal(names.registrar, '/dapt/prod/serving/registrar-function-arn');
  assert.equal(
    servingParameterNames({ stage: 'experiment', experiment: 'alice', prefix: 'dapt', region: 'us-east-1' }).group,
    '/dapt/exp-alice/serving/model-package-group',
  );
});

test('production deploys Approved packages only; nothing deploys a package the gate failed', () => {
  assert.deepEqual(deploymentProblems(APPROVED, 'production'), []);
  const pending = { ...APPROVED, approval: 'PendingManualApproval', gate: undefined };
  assert.match(deploymentProblems(pending, 'production')[0]!, /production serves Approved packages only/);
  assert.deepEqual(deploymentProblems(pending, 'experiment'), [], 'an experiment may try a pending package');
  for (const stage of ['production', 'experiment'] as const) {
    const rejected = { ...APPROVED, approval: 'Rejected', gate: 'FAIL' };
    assert.match(deploymentProblems(rejected, stage)[0]!, /failed the promotion gate/);
    // Approved by hand against a failed gate (the registry's policy denies this; the CLI checks again).
    assert.match(deploymentProblems({ ...APPROVED, gate: 'FAIL' }, stage)[0]!, /failed the promotion gate/);
  }
  assert.match(deploymentProblems({ ...APPROVED, adapterUrl: undefined }, 'experiment')[0]!, /no adapter archive/);
});

test('an adapter package becomes an adapter component on the base, tagged with its package', () => {
  const request = adapterComponentRequest(APPROVED, {
    endpointName: 'dapt-prod-serving',
    baseComponent: 'dapt-prod-base',
    name: 'dapt-prod-support',
  });
  assert.deepEqual(request.Specification, {
    BaseInferenceComponentName: 'dapt-prod-base',
    Container: { ArtifactUrl: 's3://models/runs/sft/adapter.tar.gz' },
  });
  assert.equal(request.RuntimeConfig, undefined, 'adapters have no copies of their own');
  assert.deepEqual(request.Tags, [{ Key: 'dapt:model-package', Value: APPROVED.arn }]);
});

test('a registered package is read back with its approval, gate verdict and adapter (moto)', async () => {
  const sagemaker = new SageMakerClient(moto.clientConfig);
  await sagemaker.send(new CreateModelPackageGroupCommand({ ModelPackageGroupName: 'dapt-prod-website-builder' }));
  const created = await sagemaker.send(
    new CreateModelPackageCommand({
      ModelPackageGroupName: 'dapt-prod-website-builder',
      ModelApprovalStatus: 'Rejected',
      CustomerMetadataProperties: { gate: 'FAIL' },
      InferenceSpecification: {
        Containers: [
          {
            Image: '763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.31.0-lmi13.0.0-cu124',
            ModelDataUrl: 's3://models/base/llama/',
            AdditionalS3DataSource: { S3DataType: 'S3Object', S3Uri: 's3://models/runs/weak/adapter.tar.gz' },
          },
        ],
        SupportedContentTypes: ['application/json'],
        SupportedResponseMIMETypes: ['application/json'],
      },
    }),
  );
  const pkg = await describePackage(sagemaker, created.ModelPackageArn!);
  assert.equal(pkg.approval, 'Rejected');
  assert.equal(pkg.gate, 'FAIL');
  assert.equal(pkg.adapterUrl, 's3://models/runs/weak/adapter.tar.gz');
  assert.match(deploymentProblems(pkg, 'experiment')[0]!, /failed the promotion gate/);
});

/** A SageMaker client that answers DescribeInferenceComponent with the given statuses in turn. */
function componentStatuses(...statuses: string[]): Pick<SageMakerClient, 'send'> {
  let i = 0;
  return {
    send: (async (command: unknown) => {
      assert.ok(command instanceof DescribeInferenceComponentCommand);
      const status = statuses[Math.min(i++, statuses.length - 1)];
      return {
        InferenceComponentStatus: status,
        FailureReason: status === 'Failed' ? 'adapter_config.json not found' : undefined,
      };
    }) as SageMakerClient['send'],
  };
}

test('deploy waits with progress until the component serves, and says why one failed', async () => {
  const seen: string[] = [];
  const options = { intervalMs: 1, timeoutMs: 5_000, onProgress: (s: string) => seen.push(s) };
  await waitForComponent(componentStatuses('Creating', 'Creating', 'InService'), 'c', options);
  assert.deepEqual(seen, ['Creating', 'Creating', 'InService']);
  await assert.rejects(
    waitForComponent(componentStatuses('Creating', 'Failed'), 'c', options),
    /c failed: adapter_config.json not found/,
  );
  await assert.rejects(
    waitForComponent(componentStatuses('Creating'), 'c', { ...options, timeoutMs: 20 }),
    /still Creating after 0.02 s/,
  );
});

test("the registrar's refusal reaches the user as its error; its result is returned as is", async () => {
  const lambda = (payload: unknown, functionError?: string): Parameters<typeof invokeRegistrar>[0] => ({
    send: (async () => ({
      Payload: new TextEncoder().encode(JSON.stringify(payload)),
      FunctionError: functionError,
    })) as never,
  });
  await assert.rejects(
    invokeRegistrar(
      lambda({ errorType: 'ValidationError', errorMessage: 'gate_inputs_uri: String should match' }, 'Unhandled'),
      'arn',
      {},
    ),
    /the registrar refused: ValidationError: gate_inputs_uri/,
  );
  const result = await invokeRegistrar(
    lambda({
      model_package_arn: 'arn:pkg',
      approval_status: 'Rejected',
      decision: { passed: false, reasons: ['mcq: ...'] },
    }),
    'arn',
    {},
  );
  assert.equal(result.approval_status, 'Rejected');
});
