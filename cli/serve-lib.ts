/**
 * The pure and AWS-facing parts of `dapt serve` (cli/serve.ts), kept apart so they can be tested:
 * model packages against moto, inference components (which moto does not serve) with a fake.
 */
import { InvokeCommand, type LambdaClient } from '@aws-sdk/client-lambda';
import {
  type CreateInferenceComponentCommandInput,
  DescribeInferenceComponentCommand,
  DescribeModelPackageCommand,
  type SageMakerClient,
} from '@aws-sdk/client-sagemaker';
import { parameterRoot, platformParameterName } from '../lib/config/parameter-names';
import { type Environment, envId } from './eval-lib';

/** SSM parameters the serve commands read. */
export function servingParameterNames(
  env: Environment,
): Record<'endpoint' | 'baseComponent' | 'group' | 'registrar', string> {
  const root = parameterRoot(env.prefix, envId(env));
  return {
    endpoint: platformParameterName(root, 'servingEndpointName'),
    baseComponent: platformParameterName(root, 'servingBaseComponent'),
    group: platformParameterName(root, 'servingModelPackageGroup'),
    registrar: platformParameterName(root, 'servingRegistrarFunctionArn'),
  };
}

/** What `serve deploy` needs to know about a model package. */
export interface PackageSummary {
  readonly arn: string;
  readonly approval: string;
  /** The gate's verdict the registrar recorded (`PASS`/`FAIL`), if any. */
  readonly gate?: string;
  readonly image?: string;
  readonly modelDataUrl?: string;
  /** The LoRA adapter's archive, for a package that is an adapter on the base. */
  readonly adapterUrl?: string;
}

export async function describePackage(sagemaker: SageMakerClient, arn: string): Promise<PackageSummary> {
  const described = await sagemaker.send(new DescribeModelPackageCommand({ ModelPackageName: arn }));
  const container = described.InferenceSpecification?.Containers?.[0];
  return {
    arn: described.ModelPackageArn ?? arn,
    approval: described.ModelApprovalStatus ?? 'PendingManualApproval',
    gate: described.CustomerMetadataProperties?.gate,
    image: container?.Image,
    modelDataUrl: container?.ModelDataUrl,
    adapterUrl: container?.AdditionalS3DataSource?.S3Uri,
  };
}

/**
 * Why a package may not be deployed here; empty when it may. Production takes Approved packages
 * only (the registrar approves exactly those that passed the gate); an experiment may also try a
 * package awaiting approval, but never one the gate failed.
 */
export function deploymentProblems(pkg: PackageSummary, stage: Environment['stage']): string[] {
  const problems: string[] = [];
  if (pkg.approval === 'Rejected' || pkg.gate === 'FAIL') {
    problems.push(`${pkg.arn} failed the promotion gate (${pkg.approval}): it is not served anywhere`);
  } else if (stage === 'production' && pkg.approval !== 'Approved') {
    problems.push(`${pkg.arn} is ${pkg.approval}: production serves Approved packages only (approved by the gate)`);
  }
  if (!pkg.adapterUrl) {
    problems.push(
      `${pkg.arn} has no adapter archive: serve deploy places LoRA adapters on the endpoint's base model; full-weight models are served by the stack's serving.baseModel`,
    );
  }
  return problems;
}

/** The adapter inference component that serves `pkg` on the base model. */
export function adapterComponentRequest(
  pkg: PackageSummary,
  target: { endpointName: string; baseComponent: string; name: string },
): CreateInferenceComponentCommandInput {
  return {
    InferenceComponentName: target.name,
    EndpointName: target.endpointName,
    Specification: { BaseInferenceComponentName: target.baseComponent, Container: { ArtifactUrl: pkg.adapterUrl } },
    Tags: [{ Key: 'dapt:model-package', Value: pkg.arn }],
  };
}

/** Polls an inference component until it is InService; a Failed one throws its reason. */
export async function waitForComponent(
  sagemaker: Pick<SageMakerClient, 'send'>,
  name: string,
  options: { intervalMs: number; timeoutMs: number; onProgress: (status: string, elapsedS: number) => void },
): Promise<void> {
  const started = Date.now();
  for (;;) {
    const described = await sagemaker.send(new DescribeInferenceComponentCommand({ InferenceComponentName: name }));
    const status = described.InferenceComponentStatus ?? 'Unknown';
    options.onProgress(status, Math.round((Date.now() - started) / 1000));
    if (status === 'InService') return;
    if (status === 'Failed')
      throw new Error(`inference component ${name} failed: ${described.FailureReason ?? 'no reason given'}`);
    if (Date.now() - started > options.timeoutMs) {
      throw new Error(
        `inference component ${name} is still ${status} after ${options.timeoutMs / 1000} s; check it with 'dapt serve status'`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs));
  }
}

/** What the registrar Lambda returns (`dapt_eval.registry.register`). */
export interface RegistrationResult {
  readonly model_package_arn: string;
  readonly approval_status: 'Approved' | 'Rejected';
  readonly decision: { readonly passed: boolean; readonly reasons: readonly string[] };
}

/** Invokes the registrar synchronously; its error (bad inputs, missing evidence) is raised as one. */
export async function invokeRegistrar(
  lambda: Pick<LambdaClient, 'send'>,
  functionArn: string,
  registration: Record<string, unknown>,
): Promise<RegistrationResult> {
  const response = await lambda.send(
    new InvokeCommand({ FunctionName: functionArn, Payload: new TextEncoder().encode(JSON.stringify(registration)) }),
  );
  const text = new TextDecoder().decode(response.Payload ?? new Uint8Array());
  if (response.FunctionError) {
    const error = JSON.parse(text || '{}') as { errorMessage?: string; errorType?: string };
    throw new Error(`the registrar refused: ${error.errorType ?? 'Error'}: ${error.errorMessage ?? text}`);
  }
  return JSON.parse(text) as RegistrationResult;
}
