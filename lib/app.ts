/**
 * Builds one environment (a stage, and for ephemeral stages an experiment) into a CDK app.
 * `bin/app.ts`, the tests and `scripts/synth-all.ts` all build through here.
 */
import { App, type AppProps, type Stack, Stage, Tags } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { attachComplianceChecks } from './compliance/checks';
import { ENVIRONMENT_TAG, lifecycleStackName, resolveTtlHours, RUN_TAG, TTL_TAG } from './config/lifecycle';
import { ConfigError, loadConfig, type ResolvedConfig, type StageSelection } from './config/load';
import { ExperimentBudget } from './constructs/experiment-budget';
import { AuditStack } from './stacks/audit-stack';
import { DataLakeStack } from './stacks/data-lake-stack';
import { DeliveryStack, deliveryStackName } from './stacks/delivery-stack';
import { EvalStack } from './stacks/eval-stack';
import { LifecycleStack, lifecycleTopicArn } from './stacks/lifecycle-stack';
import { NetworkStack } from './stacks/network-stack';
import { PipelineStack } from './stacks/pipeline-stack';
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
  /** The sweeper of this account and region: every experiment's, or production's run stacks'. */
  readonly lifecycle: LifecycleStack;
  /** The experiment pipeline; present where there is serving (it registers and deploys there). */
  readonly pipeline?: PipelineStack;
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
  /**
   * Hours an experiment environment or run stack lives after this deploy (`-c ttl=HOURS`).
   * @default - `lifecycle.defaultTtlHours`; more than `lifecycle.maxTtlHours` fails the synth
   */
  readonly ttlHours?: string;
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
  // Counts the run's costs (tagged experiment=<run>), told to the stage's lifecycle topic.
  new ExperimentBudget(stack, 'Budget', {
    budgetName: `${config.prefix}-${config.envId}-run-${selection.run}`,
    experiment: selection.run,
    monthlyUsd: config.lifecycle.budget.monthlyUsd,
    notificationEmails: config.lifecycle.notificationEmails,
    topicArn: lifecycleTopicArn(stack, config),
  });
  tagLifecycle([stack], config, ttlHoursOf(config, options), selection.run);
  tagAll(app, config, selection.run);
  if (options.complianceChecks !== false) attachComplianceChecks(app);
  return stack;
}

/** `-c ttl`, checked against `lifecycle.maxTtlHours`. */
function ttlHoursOf(config: ResolvedConfig, options: BuildOptions): number {
  const ttl = resolveTtlHours(config.lifecycle, options.ttlHours);
  if ('problem' in ttl) throw new ConfigError('selection (cdk context)', [ttl.problem]);
  return ttl.hours;
}

/**
 * Static stack tags the sweeper reads (lib/config/lifecycle.ts). Stack tags only, never resource
 * tags in the template; CloudFormation passes them on to the resources, and since they change only
 * when `-c ttl` does, a redeploy updates nothing. The expiry is computed by the sweeper.
 */
function tagLifecycle(stacks: readonly Stack[], config: ResolvedConfig, ttlHours: number, run?: string): void {
  for (const stack of stacks) {
    stack.tags.setTag(TTL_TAG, String(ttlHours));
    stack.tags.setTag(ENVIRONMENT_TAG, config.envId);
    if (run !== undefined) stack.tags.setTag(RUN_TAG, run);
  }
}

/**
 * The sweeper's stack (one per account and region, the same template whichever experiment deploys
 * it) and, in an experiment, the environment's budget (in its network stack, deleted last) and
 * lifecycle tags. Production's platform stacks get no ttl: production never expires.
 */
function addLifecycle(
  app: Stage,
  config: ResolvedConfig,
  stacks: readonly Stack[],
  network: NetworkStack,
  options: BuildOptions,
): LifecycleStack {
  const name = lifecycleStackName(config.prefix, config.stage);
  const lifecycle = new LifecycleStack(app, name, {
    env: { account: config.account, region: config.region },
    stackName: name,
    config,
    // Shared by every experiment: `cdk destroy --all` of one experiment must not take it along.
    terminationProtection: true,
    description: `Expiry warnings, deletion of expired ${config.stage === 'production' ? 'run stacks' : 'experiment environments'}, and the budgets' topic of ${config.prefix} in this region`,
  });
  // Whichever experiment deploys it, it is no experiment's (and its costs in no experiment's budget).
  Tags.of(lifecycle).add('experiment', 'none', { priority: LIFECYCLE_TAG_PRIORITY });
  if (config.stage === 'production') {
    if (options.ttlHours !== undefined) {
      throw new ConfigError('selection (cdk context)', [
        `ttl = ${JSON.stringify(options.ttlHours)}: production never expires; -c ttl applies to experiments and run stacks (-c run=NAME)`,
      ]);
    }
    return lifecycle;
  }
  // The budget's notifications go to the lifecycle topic, which must exist first.
  network.addStackDependency(lifecycle);
  new ExperimentBudget(network, 'Budget', {
    budgetName: `${config.prefix}-${config.envId}`,
    experiment: config.experiment!,
    monthlyUsd: config.lifecycle.budget.monthlyUsd,
    notificationEmails: config.lifecycle.notificationEmails,
    topicArn: lifecycleTopicArn(network, config),
  });
  tagLifecycle(stacks, config, ttlHoursOf(config, options));
  return lifecycle;
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
  const pipeline = serving
    ? new PipelineStack(app, name('pipeline'), {
        ...common,
        ...stackName('pipeline'),
        description: `Experiment pipeline (Step Functions: data, tokens, training, evaluation, gate, registry, deploy) of ${config.prefix}-${config.envId}`,
        vpc: network.vpc,
        s3PrefixListId: network.gatewayPrefixLists.s3,
      })
    : undefined;
  // It reads the other stacks' SSM parameters at deploy time.
  for (const upstream of [dataLake, evaluation, training, serving])
    if (upstream) pipeline?.addStackDependency(upstream);
  const environmentStacks = [
    network,
    dataLake,
    evaluation,
    training,
    ...(serving ? [serving] : []),
    ...(pipeline ? [pipeline] : []),
  ];
  const lifecycle = addLifecycle(app, config, environmentStacks, network, options);
  const audit = config.audit.cloudTrail
    ? new AuditStack(app, name('audit'), {
        ...common,
        ...stackName('audit'),
        description: `CloudTrail audit trail of ${config.prefix}-${config.envId}`,
        dataBuckets: Object.values(dataLake.buckets),
        accessLogsBucket: dataLake.accessLogsBucket,
        checkedStacks: [...environmentStacks, lifecycle],
        sourceCommit: options.sourceCommit,
      })
    : undefined;

  tagAll(app, config, config.experiment ?? 'none');
  if (options.complianceChecks !== false) attachComplianceChecks(app);
  if (audit) tagLifecycle(config.stage === 'production' ? [] : [audit], config, ttlHoursOf(config, options));
  return { config, network, dataLake, evaluation, training, audit, serving, pipeline, lifecycle };
}

/** Above the app-wide tags' default priority (100), so the lifecycle stack's `experiment` stays `none`. */
const LIFECYCLE_TAG_PRIORITY = 200;
