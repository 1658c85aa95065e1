/**
 * Serve adapted models on a deployed stage: `npx dapt serve <command>` (`--help` on each).
 *
 *   dapt serve register --gate-inputs S3 --report S3 --lineage S3 --model-data S3 [--adapter S3] [--image URI]
 *   dapt serve deploy   --package ARN --name NAME     place an adapter package on the base model, wait
 *   dapt serve status                                 the endpoint and its inference components
 *   dapt serve undeploy --name NAME                   remove an adapter component
 *   dapt serve invoke   --component NAME --prompt TEXT
 *
 * Names come from SSM (`/<prefix>/<envId>/serving/...`). `register` runs the registrar Lambda,
 * which decides with the promotion gate (the local pipeline's) and sets the approval from that
 * decision; it exits 3 when the gate fails, like `dapt-local run`. `deploy` refuses a package the
 * gate failed, and in production anything not Approved.
 */
import { LambdaClient } from '@aws-sdk/client-lambda';
import {
  CreateInferenceComponentCommand,
  DeleteInferenceComponentCommand,
  DescribeEndpointCommand,
  DescribeInferenceComponentCommand,
  DescribeModelCommand,
  ListInferenceComponentsCommand,
  SageMakerClient,
} from '@aws-sdk/client-sagemaker';
import { InvokeEndpointCommand, SageMakerRuntimeClient } from '@aws-sdk/client-sagemaker-runtime';
import { Command } from 'commander';
import { type Environment, environmentOptions, readParameter } from './eval-lib';
import {
  adapterComponentRequest,
  deploymentProblems,
  describePackage,
  invokeRegistrar,
  servingParameterNames,
  waitForComponent,
} from './serve-lib';
import { SsmParameterReader } from './ssm';

/** Where the serve commands write, and the exit code a failed gate sets. */
export interface ServeIo {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
  readonly setExitCode: (code: number) => void;
}

interface ServeValues {
  stage: 'production' | 'experiment';
  experiment?: string;
  region: string;
  prefix: string;
  gateInputs?: string;
  report?: string;
  lineage?: string;
  modelData?: string;
  adapter?: string;
  image?: string;
  package?: string;
  name?: string;
  component?: string;
  prompt?: string;
  maxNewTokens: string;
  timeoutMinutes: string;
}

/** The `serve` command group. */
export function serveCommand(io: ServeIo): Command {
  const group = new Command('serve').description('Register, deploy and call adapted models on the SageMaker endpoint');
  const common = (command: Command): Command => environmentOptions(command);
  common(
    group.command('register').description('Gate a trained model and register it in the domain model package group'),
  )
    .requiredOption('--gate-inputs <s3-uri>', "the run's gate_inputs.json (written beside its report)")
    .requiredOption('--report <s3-uri>', 'the evaluation report (JSON)')
    .requiredOption('--lineage <s3-uri>', "the trained model's lineage.json")
    .requiredOption('--model-data <s3-uri>', 'the base model (or merged weights) prefix the package serves')
    .option('--adapter <s3-uri>', "the LoRA adapter's .tar.gz, for an adapter package")
    .option('--image <uri>', 'the serving image (default: the base component’s)')
    .action(async (values: ServeValues) => register(values, io));
  common(group.command('deploy').description('Place an adapter package on the base model and wait until it serves'))
    .requiredOption('--package <arn>', 'the model package')
    .requiredOption('--name <name>', 'the adapter component’s name suffix (<prefix>-<envId>-<name>)')
    .option('--timeout-minutes <n>', 'how long to wait for InService', '30')
    .action(async (values: ServeValues) => deploy(values, io));
  common(group.command('status').description('The endpoint and its inference components')).action(
    async (values: ServeValues) => status(values, io),
  );
  common(group.command('undeploy').description('Remove an adapter component (never the base model)'))
    .requiredOption('--name <name>', 'the adapter component’s name suffix')
    .action(async (values: ServeValues) => undeploy(values, io));
  common(group.command('invoke').description('Send one prompt to the base model or an adapter'))
    .requiredOption('--component <name>', 'the inference component (full name, see serve status)')
    .requiredOption('--prompt <text>', 'the prompt')
    .option('--max-new-tokens <n>', 'longest reply', '256')
    .action(async (values: ServeValues) => invoke(values, io));
  return group;
}

function context(values: ServeValues): {
  env: Environment;
  ssm: SsmParameterReader;
  names: ReturnType<typeof servingParameterNames>;
} {
  const env: Environment = {
    stage: values.stage,
    ...(values.experiment ? { experiment: values.experiment } : {}),
    prefix: values.prefix,
    region: values.region,
  };
  return { env, ssm: new SsmParameterReader({ region: env.region }), names: servingParameterNames(env) };
}

async function register(values: ServeValues, io: ServeIo): Promise<void> {
  const { env, ssm, names } = context(values);
  const registrar = await readParameter(ssm, names.registrar, env);
  const group = await readParameter(ssm, names.group, env);
  const image = values.image ?? (await baseImage(values, env, ssm, names));
  const result = await invokeRegistrar(new LambdaClient({ region: env.region }), registrar, {
    group,
    gate_inputs_uri: values.gateInputs,
    report_uri: values.report,
    lineage_uri: values.lineage,
    model_data_url: values.modelData,
    ...(values.adapter ? { adapter_url: values.adapter } : {}),
    image,
  });
  io.out(`${result.decision.passed ? 'PASS' : 'FAIL'}: ${result.model_package_arn} is ${result.approval_status}`);
  for (const reason of result.decision.reasons) io.out(`  - ${reason}`);
  if (!result.decision.passed) io.setExitCode(EXIT_GATE_FAILED);
}

async function deploy(values: ServeValues, io: ServeIo): Promise<void> {
  const { env, ssm, names } = context(values);
  const sagemaker = new SageMakerClient({ region: env.region });
  const pkg = await describePackage(sagemaker, values.package!);
  const problems = deploymentProblems(pkg, env.stage);
  if (problems.length > 0) throw new Error(`will not deploy:\n  - ${problems.join('\n  - ')}`);
  const endpointName = await readParameter(ssm, names.endpoint, env);
  const baseComponent = await readParameter(ssm, names.baseComponent, env);
  const name = `${endpointName.replace(/-serving$/, '')}-${values.name}`;
  await sagemaker.send(
    new CreateInferenceComponentCommand(adapterComponentRequest(pkg, { endpointName, baseComponent, name })),
  );
  io.out(`creating ${name} on ${baseComponent} (${pkg.arn})`);
  await waitForComponent(sagemaker, name, {
    intervalMs: DEFAULT_POLL_MS,
    timeoutMs: Number(values.timeoutMinutes) * 60_000,
    onProgress: (s, elapsed) => io.out(`  ${name}: ${s} (${elapsed} s)`),
  });
  io.out(`${name} is in service: dapt serve invoke --component ${name} --prompt "..."`);
}

async function status(values: ServeValues, io: ServeIo): Promise<void> {
  const { env, ssm, names } = context(values);
  const sagemaker = new SageMakerClient({ region: env.region });
  const endpointName = await readParameter(ssm, names.endpoint, env);
  const endpoint = await sagemaker.send(new DescribeEndpointCommand({ EndpointName: endpointName }));
  const instances = endpoint.ProductionVariants?.[0]?.CurrentInstanceCount ?? 0;
  io.out(`endpoint ${endpointName}: ${endpoint.EndpointStatus ?? 'Unknown'}, ${instances} instance(s)`);
  const components = await sagemaker.send(new ListInferenceComponentsCommand({ EndpointNameEquals: endpointName }));
  for (const c of components.InferenceComponents ?? []) {
    io.out(`  ${c.InferenceComponentName}: ${c.InferenceComponentStatus ?? 'Unknown'}`);
  }
  if (instances === 0)
    io.out('at zero instances: the first request starts one (several minutes); see docs/operations.md');
}

async function undeploy(values: ServeValues, io: ServeIo): Promise<void> {
  const { env, ssm, names } = context(values);
  const endpointName = await readParameter(ssm, names.endpoint, env);
  const baseComponent = await readParameter(ssm, names.baseComponent, env);
  const name = `${endpointName.replace(/-serving$/, '')}-${values.name}`;
  if (name === baseComponent) throw new Error(`${name} is the base model, owned by the serving stack: remove it there`);
  await new SageMakerClient({ region: env.region }).send(
    new DeleteInferenceComponentCommand({ InferenceComponentName: name }),
  );
  io.out(`deleting ${name}`);
}

async function invoke(values: ServeValues, io: ServeIo): Promise<void> {
  const { env, ssm, names } = context(values);
  const endpointName = await readParameter(ssm, names.endpoint, env);
  const response = await new SageMakerRuntimeClient({ region: env.region }).send(
    new InvokeEndpointCommand({
      EndpointName: endpointName,
      InferenceComponentName: values.component,
      ContentType: 'application/json',
      Body: JSON.stringify({ inputs: values.prompt, parameters: { max_new_tokens: Number(values.maxNewTokens) } }),
    }),
  );
  const body = JSON.parse(new TextDecoder().decode(response.Body)) as
    { generated_text?: string } | { generated_text?: string }[];
  const first = Array.isArray(body) ? body[0] : body;
  io.out(first?.generated_text ?? JSON.stringify(body));
}

/** The image the base component runs, for packages registered without one. */
async function baseImage(
  values: ServeValues,
  env: Environment,
  ssm: SsmParameterReader,
  names: ReturnType<typeof servingParameterNames>,
): Promise<string> {
  const sagemaker = new SageMakerClient({ region: values.region });
  const component = await sagemaker.send(
    new DescribeInferenceComponentCommand({
      InferenceComponentName: await readParameter(ssm, names.baseComponent, env),
    }),
  );
  const model = await sagemaker.send(new DescribeModelCommand({ ModelName: component.Specification?.ModelName }));
  const image = model.PrimaryContainer?.Image;
  if (!image) throw new Error('the base component has no image to register with: pass --image');
  return image;
}

/** `serve register` when the gate failed (the package is registered, as Rejected). */
export const EXIT_GATE_FAILED = 3;
const DEFAULT_POLL_MS = 15_000;
