/**
 * The reading parts of `dapt cost` (cli/cost.ts): a trainer config as the trainer validates it,
 * the size of each stage's model, a benchmark's items and prompt lengths, and the AWS Price List
 * API refresh of the instance prices. The arithmetic is in lib/cost/estimate.ts.
 */
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { GetProductsCommand, type GetProductsCommandOutput } from '@aws-sdk/client-pricing';
import { z } from 'zod';
import { loadRows, parseManifest } from '../lambda/shared/benchmark';
import { formatChoices, JUDGE_PROMPT, render, type Task } from '../lambda/shared/prompts';
import type { ModelSize, TrainingStage } from '../lib/cost/estimate';
import { parametersFromName } from '../lib/cost/estimate';
import type { Price, PriceTable } from '../lib/cost/prices';
import { llamaDimensions, llamaParameterCount, loraParameterCount } from './train-fit';
import { DEFAULT_VENV_PYTHON, runTrainerValidator, UserError } from './train-lib';

/** The slice of a validated trainer config (dapt_trainer.config.ExperimentConfig) the cost needs. */
export const TrainerCostConfigSchema = z.object({
  experiment: z.string(),
  compute: z.object({ peak_flops: z.number().positive() }),
  stages: z
    .array(
      z.object({
        name: z.string(),
        steps: z.number().int().positive(),
        micro_batch_size: z.number().int().positive(),
        grad_accum_steps: z.number().int().positive(),
        data: z.object({ seq_len: z.number().int().positive() }),
        model: z.object({ path: z.string().nullable(), from_stage: z.string().nullable() }),
        method: z.object({
          name: z.enum(['full', 'lora']),
          lora: z.object({ rank: z.number().int(), target_modules: z.array(z.string()) }),
        }),
      }),
    )
    .min(1),
});
export type TrainerCostConfig = z.infer<typeof TrainerCostConfigSchema>;

/**
 * Validates the YAML with the trainer's own `load_config` in the project venv (defaults filled
 * in, problems relayed verbatim), as `dapt train submit` does, and returns what the cost needs.
 */
export function readTrainerCostConfig(file: string, python: string = DEFAULT_VENV_PYTHON): TrainerCostConfig {
  return parseTrainerCostConfig(runTrainerValidator(file, python));
}

/** What the cost needs from a config the trainer's validator returned (`runTrainerValidator`). */
export function parseTrainerCostConfig(raw: unknown): TrainerCostConfig {
  const parsed = TrainerCostConfigSchema.safeParse(raw);
  if (!parsed.success)
    throw new Error(
      `the trainer's config has changed shape; cli/cost-lib.ts TrainerCostConfigSchema needs updating: ${parsed.error.message}`,
    );
  return parsed.data;
}

/**
 * Each stage with its model's size: from a local Hugging Face `config.json` (exact, as `train
 * submit`'s memory estimate reads it), else from a size in the model's name (`llama-3-1-8b`),
 * else unknown; a `from_stage` model has its origin's size. Relative paths are resolved from
 * `baseDir` (the config's folder), then the cwd.
 */
export function trainingStages(config: TrainerCostConfig, baseDir: string): TrainingStage[] {
  const sizes = new Map<string, { size: ModelSize | null; dims: ReturnType<typeof llamaDimensions> | null }>();
  return config.stages.map((stage) => {
    let size: ModelSize | null = null;
    let dims: ReturnType<typeof llamaDimensions> | null = null;
    if (stage.model.from_stage !== null) {
      const origin = sizes.get(stage.model.from_stage);
      dims = origin?.dims ?? null;
      size = origin?.size
        ? { ...origin.size, origin: `stage '${stage.model.from_stage}': ${origin.size.origin}` }
        : null;
    } else if (stage.model.path !== null) {
      const file = stage.model.path.startsWith('s3://') ? null : configJson(stage.model.path, baseDir);
      if (file !== null) {
        dims = llamaDimensions(JSON.parse(readFileSync(file, 'utf8')), file);
        const parameters = llamaParameterCount(dims);
        size = {
          parameters,
          matmulParameters: parameters - dims.vocab * dims.hidden,
          attention: { layers: dims.layers, heads: dims.heads, headDim: dims.headDim },
          origin: `${path.relative(process.cwd(), file) || file} (LLaMA dimensions)`,
        };
      } else {
        const named = parametersFromName(stage.model.path);
        if (named !== null)
          size = {
            parameters: named,
            matmulParameters: named,
            origin: `the size in model.path = ${stage.model.path} (embeddings and attention not separated)`,
          };
      }
    }
    sizes.set(stage.name, { size, dims });
    return {
      name: stage.name,
      steps: stage.steps,
      seqLen: stage.data.seq_len,
      microBatchSize: stage.micro_batch_size,
      gradAccumSteps: stage.grad_accum_steps,
      method: stage.method.name,
      model: size,
      adapterParameters:
        stage.method.name === 'lora' && dims !== null
          ? loraParameterCount(dims, stage.method.lora.rank, stage.method.lora.target_modules)
          : null,
    };
  });
}

function configJson(modelPath: string, baseDir: string): string | null {
  for (const candidate of [path.resolve(baseDir, modelPath, 'config.json'), path.resolve(modelPath, 'config.json')])
    if (existsSync(candidate)) return candidate;
  return null;
}

/** Characters per token assumed for prompt text: the usual rule of thumb for English. */
export const CHARS_PER_TOKEN = 4;

/** A benchmark folder as the cost sees it: its task, item count and prompt lengths. */
export interface BenchmarkShape {
  readonly name: string;
  readonly task: Task;
  readonly items: number;
  /** Mean characters of the rendered prompt. */
  readonly promptChars: number;
  /** Mean characters of the judge prompt without the candidate answer (qa only; else 0). */
  readonly judgeChars: number;
}

/** Reads `benchmark.json` and its items (bad rows are left out, as the plan quarantines them). */
export function readBenchmark(dir: string): BenchmarkShape {
  const manifestFile = path.join(dir, 'benchmark.json');
  if (!existsSync(manifestFile)) throw new UserError(`--benchmark = ${dir}: no benchmark.json there`);
  const manifest = parseManifest(readFileSync(manifestFile, 'utf8'), manifestFile);
  const itemsFile = path.join(dir, manifest.items_file);
  if (!existsSync(itemsFile)) throw new UserError(`${manifestFile}: items file ${itemsFile} does not exist`);
  const { rows } = loadRows(readFileSync(itemsFile, 'utf8'), manifest.task, manifest.labels ?? null, itemsFile);
  let prompt = 0;
  let judge = 0;
  for (const row of rows) {
    const text = (field: string): string => (typeof row[field] === 'string' ? (row[field] as string) : '');
    const values: Record<string, string> =
      manifest.task === 'mcq'
        ? {
            question: text('question'),
            choices: formatChoices([
              text('answer'),
              ...Object.values((row.distractors ?? {}) as Record<string, string | string[]>).flat(),
            ]),
          }
        : manifest.task === 'classification'
          ? { text: text('text'), labels: (manifest.labels ?? []).join(', ') }
          : manifest.task === 'summarization'
            ? { document: text('document') }
            : { question: text('question') };
    prompt += render(manifest.prompt, values).length;
    if (manifest.task === 'qa')
      judge += render(JUDGE_PROMPT, {
        question: text('question'),
        reference_answer: text('reference_answer'),
        candidate_answer: '',
      }).length;
  }
  return {
    name: `${manifest.name}@${manifest.version}`,
    task: manifest.task,
    items: rows.length,
    promptChars: prompt / rows.length,
    judgeChars: judge / rows.length,
  };
}

/** The slice of the Price List API client `--refresh-prices` uses (tests pass a fake). */
export interface PricingApi {
  send(command: GetProductsCommand): Promise<GetProductsCommandOutput>;
}

/** What a refresh did: the table with fresh figures, and what it could and could not refresh. */
export interface Refreshed {
  readonly table: PriceTable;
  readonly refreshed: readonly string[];
  readonly kept: readonly string[];
}

/**
 * Asks the AWS Price List API for the on-demand hourly price of each EC2 and SageMaker hosting
 * instance type; everything else keeps the bundled figure. A missing credential rejects (the
 * caller falls back to the bundled table and says so); an item without exactly one hourly
 * price is kept, with the reason.
 */
export async function refreshInstancePrices(
  table: PriceTable,
  region: string,
  wanted: { readonly ec2?: readonly string[]; readonly sagemaker?: readonly string[] },
  pricing: PricingApi,
  today: string = new Date().toISOString().slice(0, 10),
): Promise<Refreshed> {
  const prices = structuredClone(table.regions[region]);
  if (!prices) return { table, refreshed: [], kept: [`no region ${region} in the bundled table`] };
  const refreshed: string[] = [];
  const kept: string[] = [];
  const lookups = [
    ...(wanted.ec2 ?? []).map((type) => ({
      section: 'ec2OnDemandHourly' as const,
      type,
      serviceCode: 'AmazonEC2',
      filters: {
        instanceType: type,
        regionCode: region,
        operatingSystem: 'Linux',
        tenancy: 'Shared',
        preInstalledSw: 'NA',
        capacitystatus: 'Used',
        licenseModel: 'No License required',
      },
    })),
    ...(wanted.sagemaker ?? []).map((type) => ({
      section: 'sagemakerHostingHourly' as const,
      type,
      serviceCode: 'AmazonSageMaker',
      filters: { instanceType: `${type}-Hosting`, regionCode: region },
    })),
  ];
  for (const lookup of lookups) {
    const response = await pricing.send(
      new GetProductsCommand({
        ServiceCode: lookup.serviceCode,
        Filters: Object.entries(lookup.filters).map(([Field, Value]) => ({ Type: 'TERM_MATCH', Field, Value })),
        MaxResults: 100,
      }),
    );
    // PriceList holds one JSON document (a string) per product.
    const products = (Array.isArray(response.PriceList) ? response.PriceList : []) as readonly unknown[];
    const hourly = [...new Set(products.flatMap(onDemandHourlyUsd))];
    const name = `${lookup.section} ${lookup.type}`;
    if (hourly.length !== 1) {
      kept.push(
        `${name}: the Price List API returned ${hourly.length === 0 ? 'no on-demand hourly price' : `${hourly.length} different hourly prices (${hourly.join(', ')})`}; kept the bundled figure`,
      );
      continue;
    }
    const price: Price = {
      usd: hourly[0]!,
      verified: true,
      by: 'price-list-api',
      source: `AWS Price List API GetProducts ${lookup.serviceCode} (${Object.entries(lookup.filters)
        .map(([k, v]) => `${k}=${v}`)
        .join(', ')}), ${today}`,
    };
    prices[lookup.section][lookup.type] = price;
    refreshed.push(`${name}: $${price.usd}/h`);
  }
  return { table: { ...table, regions: { ...table.regions, [region]: prices } }, refreshed, kept };
}

/** The USD prices per hour of a Price List product's on-demand terms. */
function onDemandHourlyUsd(item: unknown): number[] {
  const product = (typeof item === 'string' ? JSON.parse(item) : item) as {
    terms?: {
      OnDemand?: Record<
        string,
        { priceDimensions?: Record<string, { unit?: string; pricePerUnit?: { USD?: string } }> }
      >;
    };
  };
  const out: number[] = [];
  for (const term of Object.values(product.terms?.OnDemand ?? {}))
    for (const dimension of Object.values(term.priceDimensions ?? {})) {
      const value = Number(dimension.pricePerUnit?.USD);
      if (/^h(ou)?rs?$/i.test(dimension.unit ?? '') && Number.isFinite(value) && value > 0) out.push(value);
    }
  return out;
}

/** Whether `err` says the SDK found no credentials (nothing was asked of AWS). */
export function isMissingCredentials(err: unknown): boolean {
  const e = err as { name?: string; message?: string; cause?: { name?: string } };
  return (
    e?.name === 'CredentialsProviderError' ||
    e?.cause?.name === 'CredentialsProviderError' ||
    /could not load credentials/i.test(e?.message ?? '')
  );
}
