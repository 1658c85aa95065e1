/**
 * What an experiment costs before it is paid for: `npx dapt cost <command>` (`--help` on each;
 * no AWS credentials needed: prices come from the bundled, dated table lib/cost/prices.json).
 *
 *   dapt cost train --config FILE [--nodes N] [--tokens-per-second X] [--stage experiment]
 *   dapt cost env   --stage S [--experiment NAME]
 *   dapt cost eval  --spec FILE (--benchmark DIR | --items N) [--stage S]
 *
 * Each prints an itemized table (quantity x unit price), the assumptions behind it and what is
 * not counted; `--json` prints the same as JSON. `--refresh-prices` asks the AWS Price List API
 * for the instance prices when credentials exist, and says so when it falls back to the table.
 * `confirmSpend` is the confirmation `dapt train submit` asks above a stage's threshold.
 */
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { createInterface } from 'node:readline/promises';
import { PricingClient } from '@aws-sdk/client-pricing';
import { Command, Option } from 'commander';
import { DEFAULT_JUDGE_DECODING } from '../lambda/shared/evaluate';
import { parseRunSpec } from '../lambda/shared/spec';
import { loadConfig, type ResolvedConfig } from '../lib/config/load';
import { INTERFACE_ENDPOINTS } from '../lib/constructs/isolated-vpc';
import {
  type CostEstimate,
  DEFAULT_ENVIRONMENT_ASSUMPTIONS,
  DEFAULT_EVAL_ASSUMPTIONS,
  DEFAULT_TRAINING_ASSUMPTIONS,
  estimateEnvironment,
  estimateEval,
  estimateTraining,
  GPUS_PER_P5_NODE,
  idleEnvironment,
  unitUsd,
  usd,
} from '../lib/cost/estimate';
import { DEFAULT_PRICES_FILE, instancePrice, loadPriceTable, type PriceTable } from '../lib/cost/prices';
import {
  CHARS_PER_TOKEN,
  isMissingCredentials,
  type PricingApi,
  readBenchmark,
  parseTrainerCostConfig,
  readTrainerCostConfig,
  refreshInstancePrices,
  trainingStages,
} from './cost-lib';
import { UsageError, UserError } from './train-lib';

/** Where the cost commands write, and how a Price List client is made (tests: a fake). */
export interface CostIo {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
  /** @default a PricingClient in us-east-1 (the Price List API's endpoint) */
  readonly pricing?: () => PricingApi;
  /** @default DEFAULT_VENV_PYTHON */
  readonly python?: string;
}

/** Above this estimate `train submit` asks first, where the stage sets no `training.confirmSpendAboveUsd`. */
export const DEFAULT_CONFIRM_ABOVE_USD = 500;

interface CostValues {
  config?: string;
  spec?: string;
  benchmark?: string;
  items?: string;
  nodes: string;
  stage?: 'production' | 'experiment';
  experiment?: string;
  instanceType?: string;
  tokensPerSecond?: string;
  mfu?: string;
  startupHours?: string;
  logGbPerMonth?: string;
  logHorizonDays?: string;
  lakeGb?: string;
  endpointGbPerMonth?: string;
  s3EventsPerMonth?: string;
  promptTokens?: string;
  completionTokens?: string;
  secondsPerCall?: string;
  json: boolean;
  refreshPrices: boolean;
  prices?: string;
}

/** The `cost` command group, on commander. */
export function costCommand(io: CostIo): Command {
  const group = new Command('cost').description(
    'Estimate what a training job, an idle environment or an evaluation run costs, before spending (no AWS credentials needed)',
  );
  const common = (command: Command): Command =>
    command
      .option('--json', 'print the estimate as JSON', false)
      .option(
        '--refresh-prices',
        'ask the AWS Price List API for the instance prices (needs credentials; falls back to the bundled table)',
        false,
      )
      .option(
        '--prices <file>',
        `price table (default: the bundled ${DEFAULT_PRICES_FILE.replace(/.*\/lib\//, 'lib/')})`,
      )
      .option('--experiment <name>', 'the experiment environment (with --stage experiment; the name changes no price)');
  common(
    group
      .command('train')
      .description('Cost of a training job: instance-hours of its stages at on-demand prices, plus startup'),
  )
    .requiredOption('--config <file>', 'trainer config (YAML), as for dapt train submit')
    .option('--nodes <n>', 'nodes of the job', '1')
    .addOption(
      new Option('--stage <stage>', 'stage whose region, instance type and limits apply')
        .choices(['production', 'experiment'])
        .default('experiment'),
    )
    .option('--instance-type <type>', "instance type (default: the stage's first training.instanceTypes)")
    .option('--tokens-per-second <x>', 'tokens per second per node, for every stage (default: from --mfu)')
    .option(
      '--mfu <m>',
      'model FLOPs utilisation the throughput is derived from',
      String(DEFAULT_TRAINING_ASSUMPTIONS.mfu),
    )
    .option(
      '--startup-hours <h>',
      'hours per node before the first step (boot, image pull, token cache, model load)',
      String(DEFAULT_TRAINING_ASSUMPTIONS.startupHoursPerNode),
    )
    .action(async (values: CostValues) => train(values, io));
  common(group.command('env').description("Cost per hour and per month of a stage's environment while idle"))
    .addOption(new Option('--stage <stage>', 'the stage').choices(['production', 'experiment']).makeOptionMandatory())
    .option(
      '--log-gb-per-month <gb>',
      'GB of logs ingested per month while idle',
      String(DEFAULT_ENVIRONMENT_ASSUMPTIONS.logIngestGbPerMonth),
    )
    .option(
      '--log-horizon-days <days>',
      'days of logs accumulated for the storage line',
      String(DEFAULT_ENVIRONMENT_ASSUMPTIONS.logHorizonDays),
    )
    .option('--lake-gb <gb>', 'GB stored in the data lake', String(DEFAULT_ENVIRONMENT_ASSUMPTIONS.lakeGb))
    .option(
      '--endpoint-gb-per-month <gb>',
      'GB through the interface endpoints per month',
      String(DEFAULT_ENVIRONMENT_ASSUMPTIONS.endpointGbPerMonth),
    )
    .option(
      '--s3-events-per-month <n>',
      'S3 data events the trail records per month',
      String(DEFAULT_ENVIRONMENT_ASSUMPTIONS.s3DataEventsPerMonth),
    )
    .action(async (values: CostValues) => env(values, io));
  common(
    group
      .command('eval')
      .description('Cost of an evaluation run: provider tokens (models and judge) plus Lambda and Step Functions'),
  )
    .requiredOption('--spec <file>', 'run spec (JSON), as for dapt eval start')
    .option('--benchmark <dir>', "the benchmark's folder (benchmark.json and items): item count and prompt lengths")
    .option('--items <n>', 'number of items (without --benchmark)')
    .option('--prompt-tokens <n>', 'prompt tokens per item (default: from --benchmark, else 500)')
    .option('--completion-tokens <n>', "completion tokens per item (default: the spec's decoding.max_tokens)")
    .option(
      '--seconds-per-call <s>',
      'seconds one provider call takes',
      String(DEFAULT_EVAL_ASSUMPTIONS.secondsPerCall),
    )
    .addOption(
      new Option('--stage <stage>', 'stage whose region and worker memory apply')
        .choices(['production', 'experiment'])
        .default('production'),
    )
    .action(async (values: CostValues) => evaluation(values, io));
  return group;
}

async function train(values: CostValues, io: CostIo): Promise<void> {
  const nodes = wholeNumber('--nodes', values.nodes);
  const config = stageConfig(values, io);
  const instanceType = values.instanceType ?? config.training.instanceTypes[0]!;
  const table = await pricesFor(values, io, config.region, { ec2: [instanceType] });
  instancePrice(table, config.region, 'ec2OnDemandHourly', instanceType); // an unpriced type fails before the validator runs
  const estimate = trainingEstimate(
    values.config!,
    nodes,
    config,
    instanceType,
    table,
    {
      ...DEFAULT_TRAINING_ASSUMPTIONS,
      mfu: fraction('--mfu', values.mfu!),
      startupHoursPerNode: nonNegative('--startup-hours', values.startupHours!),
      ...(values.tokensPerSecond === undefined
        ? {}
        : { tokensPerSecondPerNode: positive('--tokens-per-second', values.tokensPerSecond) }),
    },
    io.python,
  );
  const threshold = confirmThreshold(config);
  const confirmation = {
    thresholdUsd: threshold,
    setting: `training.confirmSpendAboveUsd of config/${config.stage}.json`,
    asks: estimate.totalUsd > threshold,
  };
  if (values.json) {
    io.out(JSON.stringify({ ...estimate, confirmation }, null, 2));
    return;
  }
  for (const line of renderEstimate(estimate)) io.out(line);
  io.out(
    `confirmation: ${confirmation.asks ? 'above' : 'within'} ${usd(threshold)} (${confirmation.setting}): dapt train submit ${confirmation.asks ? 'asks before submitting (--yes skips the question)' : 'submits without asking'}`,
  );
}

/**
 * The estimate of a trainer config on a stage: reads the config with the trainer's validator, or
 * takes `validated`, what that validator already returned for `file` (`train submit` has it).
 */
export function trainingEstimate(
  file: string,
  nodes: number,
  config: ResolvedConfig,
  instanceType: string,
  table: PriceTable,
  assumptions = DEFAULT_TRAINING_ASSUMPTIONS,
  python?: string,
  region: string = config.region,
  validated?: unknown,
): CostEstimate {
  const trainer = validated !== undefined ? parseTrainerCostConfig(validated) : readTrainerCostConfig(file, python);
  return estimateTraining(
    {
      experiment: trainer.experiment,
      stages: trainingStages(trainer, dirname(file)),
      nodes,
      instanceType,
      region,
      gpusPerNode: GPUS_PER_P5_NODE,
      peakFlopsPerGpu: trainer.compute.peak_flops,
      capacityMode: config.training.capacity.mode,
      maxNodes: config.training.maxNodes,
      jobTimeoutHours: config.training.jobTimeoutHours,
      retryAttempts: config.training.retryAttempts,
    },
    table,
    assumptions,
  );
}

async function env(values: CostValues, io: CostIo): Promise<void> {
  const config = stageConfig(values, io);
  const table = await pricesFor(values, io, config.region, {
    sagemaker: config.serving ? [config.serving.instanceType] : [],
  });
  const estimate = estimateEnvironment(idleEnvironment(config, Object.keys(INTERFACE_ENDPOINTS).length), table, {
    logIngestGbPerMonth: nonNegative('--log-gb-per-month', values.logGbPerMonth!),
    logHorizonDays: nonNegative('--log-horizon-days', values.logHorizonDays!),
    lakeGb: nonNegative('--lake-gb', values.lakeGb!),
    endpointGbPerMonth: nonNegative('--endpoint-gb-per-month', values.endpointGbPerMonth!),
    s3DataEventsPerMonth: nonNegative('--s3-events-per-month', values.s3EventsPerMonth!),
  });
  print(estimate, values, io);
}

async function evaluation(values: CostValues, io: CostIo): Promise<void> {
  const spec = parseRunSpec(readJson(values.spec!), values.spec!);
  const config = stageConfig(values, io);
  if (values.benchmark === undefined && values.items === undefined)
    throw new UsageError(
      'cost eval needs --benchmark DIR (its benchmark.json and items give the item count and prompt lengths) or --items N',
    );
  const benchmark = values.benchmark === undefined ? null : readBenchmark(values.benchmark);
  const items = values.items === undefined ? benchmark!.items : wholeNumber('--items', values.items);
  const promptTokens =
    values.promptTokens !== undefined
      ? positive('--prompt-tokens', values.promptTokens)
      : benchmark
        ? Math.ceil(benchmark.promptChars / CHARS_PER_TOKEN)
        : DEFAULT_PROMPT_TOKENS;
  const completionTokens =
    values.completionTokens !== undefined
      ? positive('--completion-tokens', values.completionTokens)
      : spec.decoding.max_tokens;
  const judgeTemplateTokens = Math.ceil((benchmark?.judgeChars || JUDGE_TEMPLATE_FALLBACK_CHARS) / CHARS_PER_TOKEN);
  const table = await pricesFor(values, io, config.region, {});
  if (values.refreshPrices)
    io.err(
      'notice: --refresh-prices refreshes instance prices only; Bedrock, Lambda and Step Functions keep the bundled figures',
    );
  const estimate = estimateEval(
    {
      region: config.region,
      benchmark: benchmark?.name ?? `${spec.benchmark.name}@${spec.benchmark.version}`,
      items,
      task: benchmark?.task ?? null,
      models: spec.models.map((m) => ({
        provider: m.provider,
        modelId: m.model_id,
        ...(m.region ? { region: m.region } : {}),
      })),
      judge: spec.judge
        ? {
            provider: spec.judge.provider,
            modelId: spec.judge.model_id,
            ...(spec.judge.region ? { region: spec.judge.region } : {}),
          }
        : null,
      shardSize: spec.shard_size,
      workerConcurrency: spec.worker_concurrency,
      workerMemoryMb: config.eval.workerMemoryMb,
    },
    {
      promptTokens,
      completionTokens,
      judgePromptTokens: judgeTemplateTokens + completionTokens,
      judgeCompletionTokens: DEFAULT_JUDGE_DECODING.max_tokens,
      origins: {
        promptTokens:
          values.promptTokens !== undefined
            ? 'given'
            : benchmark
              ? `mean rendered prompt of ${benchmark.items} items / ${CHARS_PER_TOKEN} characters per token`
              : `assumed (no --benchmark): ${DEFAULT_PROMPT_TOKENS}`,
        completionTokens:
          values.completionTokens !== undefined
            ? 'given'
            : "the spec's decoding.max_tokens: an upper bound (mcq and label answers are a few tokens)",
        judgePromptTokens: `the judge prompt with question and reference (${benchmark?.judgeChars ? `mean of the items, ${CHARS_PER_TOKEN} characters per token` : 'template only, no --benchmark'}) + the candidate answer's completion tokens`,
        judgeCompletionTokens: "the judge's max_tokens (judge.DEFAULT_JUDGE_PARAMS): an upper bound",
      },
    },
    table,
    { ...DEFAULT_EVAL_ASSUMPTIONS, secondsPerCall: positive('--seconds-per-call', values.secondsPerCall!) },
  );
  print(estimate, values, io);
}

/** Prompt tokens assumed per item without a benchmark folder. */
const DEFAULT_PROMPT_TOKENS = 500;
/** Characters of the judge template alone. */
const JUDGE_TEMPLATE_FALLBACK_CHARS = 500;

function print(estimate: CostEstimate, values: CostValues, io: CostIo): void {
  if (values.json) io.out(JSON.stringify(estimate, null, 2));
  else for (const line of renderEstimate(estimate)) io.out(line);
}

/** The stage config (an experiment stage without --experiment gets a placeholder name: names change no price). */
function stageConfig(values: CostValues, io: CostIo): ResolvedConfig {
  const stage = values.stage ?? 'experiment';
  const experiment = stage === 'experiment' ? (values.experiment ?? PLACEHOLDER_EXPERIMENT) : values.experiment;
  if (stage === 'experiment' && values.experiment === undefined && !values.json)
    io.err(
      `notice: no --experiment; the estimate uses the experiment name '${PLACEHOLDER_EXPERIMENT}' (names change no price)`,
    );
  return loadConfig({ stage, ...(experiment === undefined ? {} : { experiment }) });
}

const PLACEHOLDER_EXPERIMENT = 'estimate';

/** The bundled (or `--prices`) table, with instance prices from the Price List API on `--refresh-prices`. */
async function pricesFor(
  values: CostValues,
  io: CostIo,
  region: string,
  wanted: { readonly ec2?: readonly string[]; readonly sagemaker?: readonly string[] },
): Promise<PriceTable> {
  const table = loadPriceTable(values.prices ?? DEFAULT_PRICES_FILE);
  if (!values.refreshPrices) return table;
  const fallback = `fell back to the bundled price table (retrieved ${table.retrieved})`;
  try {
    const client = io.pricing ? io.pricing() : new PricingClient({ region: PRICE_LIST_REGION });
    const result = await refreshInstancePrices(table, region, wanted, client);
    for (const item of result.refreshed) io.err(`refreshed from the AWS Price List API: ${item}`);
    for (const item of result.kept) io.err(`notice: ${item}`);
    return result.table;
  } catch (err) {
    if (isMissingCredentials(err)) io.err(`notice: --refresh-prices: no AWS credentials; ${fallback}`);
    else
      io.err(
        `notice: --refresh-prices: the Price List API call failed (${(err as Error).name}: ${(err as Error).message}); ${fallback}`,
      );
    return table;
  }
}

/** The Price List API answers in us-east-1 (also eu-central-1, ap-south-1). */
const PRICE_LIST_REGION = 'us-east-1';

/** The estimate as lines: the itemized table, facts, assumptions, notices, exclusions and prices. */
export function renderEstimate(estimate: CostEstimate): string[] {
  const rows = estimate.lines.map((line) => [
    line.item,
    `${quantity(line.quantity)} ${line.unit}`,
    `${unitUsd(line.unitUsd)}${line.verified ? '' : ' ?'}`,
    usd(line.usd),
  ]);
  const header = ['item', 'quantity', 'unit price', estimate.period === 'month' ? 'per month' : 'cost'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const format = (cells: string[]): string =>
    `  ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')}`.trimEnd();
  const out = [estimate.title, format(header)];
  estimate.lines.forEach((line, i) => {
    out.push(format(rows[i]!));
    if (line.detail) out.push(`      ${line.detail}`);
  });
  out.push(format(['total', '', '', usd(estimate.totalUsd)]));
  out.push(`  ${estimate.facts.map((f) => `${f.name}: ${f.value}`).join('; ')}`);
  out.push('assumptions:');
  for (const a of estimate.assumptions)
    out.push(`  - ${a.name}: ${a.value} (${a.origin}${a.flag ? `; override: ${a.flag}` : ''})`);
  if (estimate.notices.length > 0) out.push('notices:', ...estimate.notices.map((n) => `  - ${n}`));
  out.push('not counted:', ...estimate.notCounted.map((n) => `  - ${n}`));
  const unverified = estimate.prices.used.filter((p) => !p.verified);
  out.push(
    `prices: ${estimate.prices.used.some((p) => p.by === 'price-list-api') ? 'AWS Price List API and ' : ''}the table retrieved ${estimate.prices.retrieved} (lib/cost/prices.json; every price names its source); ${unverified.length} of ${estimate.prices.used.length} used unverified (marked ?)`,
  );
  for (const p of unverified) out.push(`  ? ${p.ref}: ${p.note ?? p.source}`);
  return out;
}

function quantity(value: number): string {
  if (value >= 1e7) return `${(value / 1e6).toFixed(1)} M`;
  if (value >= 1000) return Math.round(value).toLocaleString('en-US');
  if (value !== 0 && value < 0.01) return String(Number(value.toPrecision(2)));
  return String(Math.round(value * 100) / 100);
}

/** The stage's confirmation threshold. */
export function confirmThreshold(config: Pick<ResolvedConfig, 'training'>): number {
  return config.training.confirmSpendAboveUsd ?? DEFAULT_CONFIRM_ABOVE_USD;
}

/** How `confirmSpend` asks. */
export interface ConfirmOptions {
  /** Accept without asking (`--yes`). */
  readonly yes?: boolean;
  /** @default process.stdin */
  readonly input?: NodeJS.ReadableStream & { readonly isTTY?: boolean };
  /** @default process.stderr */
  readonly output?: NodeJS.WritableStream;
}

/**
 * Above `threshold` USD, asks on the terminal before money is spent; `yes` accepts without
 * asking. Without a terminal (a pipe, CI) and without `yes` it refuses: nobody can answer.
 * Resolves to why it may go on; throws UserError when it may not.
 */
export async function confirmSpend(
  estimate: Pick<CostEstimate, 'totalUsd' | 'title'>,
  threshold: number,
  options: ConfirmOptions = {},
): Promise<'within threshold' | 'accepted with --yes' | 'confirmed'> {
  if (estimate.totalUsd <= threshold) return 'within threshold';
  if (options.yes) return 'accepted with --yes';
  const input = options.input ?? process.stdin;
  const above = `the estimated ${usd(estimate.totalUsd)} for ${estimate.title} is above the confirmation threshold of ${usd(threshold)}`;
  if (!input.isTTY)
    throw new UserError(
      `${above}, and there is no terminal to confirm on (stdin is not a TTY): nothing was submitted. Re-run with --yes to accept the cost`,
    );
  const prompt = createInterface({ input, output: options.output ?? process.stderr });
  try {
    const answer = await prompt.question(`${above}. Submit anyway? [y/N] `);
    if (/^\s*y(es)?\s*$/i.test(answer)) return 'confirmed';
  } finally {
    prompt.close();
  }
  throw new UserError('not confirmed: nothing was submitted');
}

/**
 * What `dapt train submit` does before submitting: prints the estimate's total and, above the
 * stage's threshold, asks (`yes` skips; a dry run only says it would ask). An estimate that
 * cannot be made (an instance type or region the table lacks) is a notice, not a refusal.
 */
export async function checkTrainingSpend(args: {
  readonly file: string;
  readonly nodes: number;
  readonly stage: 'production' | 'experiment';
  readonly experiment?: string;
  readonly region: string;
  readonly yes: boolean;
  readonly dryRun: boolean;
  readonly out: (line: string) => void;
  readonly python?: string;
  /** What the trainer's validator returned for `file`, where the caller already ran it. @default - validated here */
  readonly validated?: unknown;
  readonly confirm?: ConfirmOptions;
}): Promise<void> {
  let estimate: CostEstimate;
  let threshold: number;
  try {
    const config = loadConfig({ stage: args.stage, ...(args.experiment ? { experiment: args.experiment } : {}) });
    const instanceType = config.training.instanceTypes[0]!;
    estimate = trainingEstimate(
      args.file,
      args.nodes,
      config,
      instanceType,
      loadPriceTable(),
      DEFAULT_TRAINING_ASSUMPTIONS,
      args.python,
      args.region,
      args.validated,
    );
    threshold = confirmThreshold(config);
  } catch (err) {
    args.out(`notice: no cost estimate (${(err as Error).message.split('\n')[0]}); nothing is asked`);
    return;
  }
  const hours = estimate.lines.reduce((n, l) => n + l.quantity, 0);
  args.out(
    `cost estimate: ${usd(estimate.totalUsd)} (${Math.round(hours * 100) / 100} instance-hours at ${usd(estimate.lines[0]!.unitUsd)}/h on-demand${estimate.prices.used.some((p) => !p.verified) ? ', unverified price' : ''}; itemized: npx dapt cost train --config ${args.file} --nodes ${args.nodes} --stage ${args.stage})`,
  );
  if (args.dryRun) {
    if (estimate.totalUsd > threshold)
      args.out(`dry run: above the confirmation threshold of ${usd(threshold)}; submitting would ask (or take --yes)`);
    return;
  }
  const outcome = await confirmSpend(estimate, threshold, { yes: args.yes, ...args.confirm });
  if (outcome !== 'within threshold') args.out(`above the confirmation threshold of ${usd(threshold)}: ${outcome}`);
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new UserError(`${file}: cannot read or parse it as JSON: ${(err as Error).message}`);
  }
}

function wholeNumber(flag: string, text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1)
    throw new UsageError(`${flag} = ${JSON.stringify(text)}: must be a whole number >= 1`);
  return Number(text);
}

function nonNegative(flag: string, text: string): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || value < 0)
    throw new UsageError(`${flag} = ${JSON.stringify(text)}: must be a number >= 0`);
  return value;
}

function positive(flag: string, text: string): number {
  const value = nonNegative(flag, text);
  if (value === 0) throw new UsageError(`${flag} = ${JSON.stringify(text)}: must be a number > 0`);
  return value;
}

function fraction(flag: string, text: string): number {
  const value = positive(flag, text);
  if (value > 1) throw new UsageError(`${flag} = ${JSON.stringify(text)}: must be a fraction in (0, 1]`);
  return value;
}
