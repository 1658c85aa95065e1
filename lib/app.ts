/**
 * Builds one environment (a stage, and for ephemeral stages an experiment) into a CDK app.
 * `bin/app.ts`, the tests and `scripts/synth-all.ts` all build through here.
 */
import { App, type AppProps, Stage, Tags } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { attachComplianceChecks } from './compliance/checks';
import { loadConfig, type ResolvedConfig, type StageSelection } from './config/load';
import { AuditStack } from './stacks/audit-stack';
import { DataLakeStack } from './stacks/data-lake-stack';
import { DeliveryStack, deliveryStackName } from './stacks/delivery-stack';
import { EvalStack } from './stacks/eval-stack';
import { NetworkStack } from './stacks/network-stack';
import { RunStack } from './stacks/run-stack';
import { ServingStack } from './stacks/serving-stack';
import { TrainingStack } from './stacks/training-stack';

/** Feature flags this project is written against (kept here, not in cdk.json, so tests use them too). */
export const FEATURE_FLAGS: Record<string, boolean> = {
  '@aws-cdk/aws-ec2:restrictDefaultSecurityGroup': true,
  '@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy': true,
  '@aws-cdk/aws-s3:createDefaultLoggingPolicy': true,
  '@aws-cdk/aws-iam:minimizePolicies': true,
  '@aws-cdk/core:enablePartitionLiterals': true,
  '@aws-cdk/aws-kms:reduceCrossAccountRegionPolicyScope': true,
  '@aws-cdk/aws-logs:useDefaultLogGroupClass': true,
};

/** The stacks of one environment. */
export interface Platform {
  readonly config: ResolvedConfig;
  readonly network: NetworkStack;
  readonly dataLake: DataLakeStack;
  readonly evaluation: EvalStack;
  readonly training: TrainingStack;
  /** Present where the stage audits (production). */
  readonly audit?: AuditStack;
  /** Present where the stage config has a `serving` section. */
  readonly serving?: ServingStack;
}

/** How an app is built; tests that read templates only may skip the compliance checks (they add no resources). */
export interface BuildOptions {
  /** Attach the cdk-nag packs. @default true */
  readonly complianceChecks?: boolean;
  /**
   * The commit (or S3 object version) being deployed, which the delivery pipeline passes as
   * `-c commit=...`; recorded in the stage's `delivery/deployed-commit` parameter.
   * @default - recorded as not built by the pipeline
   */
  readonly sourceCommit?: string;
}

/** Adds the stack of one experiment run on an existing environment (`-c run=NAME`), tagged and checked. */
export function buildRun(
  app: App,
  selection: StageSelection & { run: string; upstream?: readonly string[] },
  options: BuildOptions = {},
): RunStack {
  const config = loadConfig(selection);
  const stack = new RunStack(app, `${config.prefix}-${config.envId}-run-${selection.run}`, {
    env: { account: config.account, region: config.region },
    config,
    run: selection.run,
    upstreamRuns: selection.upstream,
    description: `Training jobs of run '${selection.run}' on ${config.prefix}-${config.envId}: writes only under runs/${selection.run}/`,
  });
  tagAll(app, config, selection.run);
  if (options.complianceChecks !== false) attachComplianceChecks(app);
  return stack;
}

/** Cost-allocation tags on every resource of the app (or stage). */
function tagAll(app: Stage, config: ResolvedConfig, experiment: string): void {
  const tags: Record<string, string> = {
    project: config.tags.project,
    stage: config.stage,
    experiment,
    owner: config.tags.owner,
    'cost-center': config.tags.costCenter,
  };
  for (const [key, value] of Object.entries(tags)) Tags.of(app).add(key, value);
}

/** Creates an app with this project's feature flags. */
export function createApp(props: AppProps = {}): App {
  return new App({ ...props, context: { ...FEATURE_FLAGS, ...props.context } });
}

/** What `bin/app.ts` deploys for a selection: the platform, and where the stage has `delivery`, its pipeline. */
export interface Environment {
  readonly config: ResolvedConfig;
  /** The platform's stacks (inside the pipeline's stage where there is a pipeline). */
  readonly platform: Platform;
  /** The delivery pipeline's stack; present where the stage config has `delivery` (production). */
  readonly delivery?: DeliveryStack;
}

/**
 * Adds what the selection deploys to `app`: a stage with `delivery` gets its pipeline stack, which
 * deploys the platform's stacks as its `Production` stage (only the pipeline is deployed from a
 * workstation, once; then it updates itself); a stage without gets the platform's stacks directly.
 */
export function buildEnvironment(app: App, selection: StageSelection, options: BuildOptions = {}): Environment {
  const config = loadConfig(selection);
  const delivery = config.delivery;
  if (!delivery) return { config, platform: buildPlatform(app, selection, options) };
  let platform: Platform | undefined;
  const stack = new DeliveryStack(app, deliveryStackName(config), {
    env: { account: config.account, region: config.region },
    config: { ...config, delivery },
    terminationProtection: config.behaviour.terminationProtection,
    description: `Delivery pipeline of ${config.prefix}-${config.envId}: deploys reviewed commits after tests, compliance gates and approval`,
    buildStage: (scope: Construct, id: string) => {
      const stage = new Stage(scope, id, { env: { account: config.account, region: config.region } });
      platform = buildPlatform(stage, selection, options);
      return stage;
    },
  });
  tagAll(app, config, 'none');
  if (options.complianceChecks !== false) attachComplianceChecks(app);
  return { config, platform: platform!, delivery: stack };
}

/**
 * Adds the stacks of the selected environment to `app` (or to a pipeline's stage), tags them and
 * attaches the compliance checks. Stack names are fixed, so a stack keeps its name inside a stage.
 */
export function buildPlatform(app: Stage, selection: StageSelection, options: BuildOptions = {}): Platform {
  const config = loadConfig(selection);
  const env = { account: config.account, region: config.region };
  const name = (part: string): string => `${config.prefix}-${config.envId}-${part}`;
  const common = { env, config, terminationProtection: config.behaviour.terminationProtection };
  const stackName = (part: string): { stackName: string } => ({ stackName: name(part) });

  const network = new NetworkStack(app, name('network'), {
    ...common,
    ...stackName('network'),
    description: `Isolated VPC, endpoints and flow logs of ${config.prefix}-${config.envId}`,
  });
  const dataLake = new DataLakeStack(app, name('data-lake'), {
    ...common,
    ...stackName('data-lake'),
    description: `KMS-encrypted S3 data lake and Glue/Athena catalog of ${config.prefix}-${config.envId}`,
  });
  const evaluation = new EvalStack(app, name('eval'), {
    ...common,
    ...stackName('eval'),
    description: `Evaluation fan-out (Step Functions, Lambda, Athena table) of ${config.prefix}-${config.envId}`,
    vpc: network.vpc,
    gatewayPrefixLists: network.gatewayPrefixLists,
  });
  // The eval stack reads the lake's SSM parameters at deploy time: they must exist first.
  evaluation.addStackDependency(dataLake);
  const training = new TrainingStack(app, name('training'), {
    ...common,
    ...stackName('training'),
    description: `GPU training on AWS Batch (P5, EFA) and data-preparation queue of ${config.prefix}-${config.envId}`,
    vpc: network.vpc,
    efaSecurityGroup: network.efaSecurityGroup,
    s3PrefixListId: network.gatewayPrefixLists.s3,
  });
  training.addStackDependency(dataLake);
  const servingConfig = config.serving;
  const serving = servingConfig
    ? new ServingStack(app, name('serving'), {
        ...common,
        ...stackName('serving'),
        config: { ...config, serving: servingConfig },
        description: `SageMaker endpoint serving the base model and its LoRA adapters in ${config.prefix}-${config.envId}`,
        vpc: network.vpc,
        s3PrefixListId: network.gatewayPrefixLists.s3,
      })
    : undefined;
  serving?.addStackDependency(dataLake);
  const audit = config.audit.cloudTrail
    ? new AuditStack(app, name('audit'), {
        ...common,
        ...stackName('audit'),
        description: `CloudTrail audit trail of ${config.prefix}-${config.envId}`,
        dataBuckets: Object.values(dataLake.buckets),
        accessLogsBucket: dataLake.accessLogsBucket,
        checkedStacks: [network, dataLake, evaluation, training, ...(serving ? [serving] : [])],
        sourceCommit: options.sourceCommit,
      })
    : undefined;

  tagAll(app, config, config.experiment ?? 'none');
  if (options.complianceChecks !== false) attachComplianceChecks(app);
  return { config, network, dataLake, evaluation, training, audit, serving };
}
