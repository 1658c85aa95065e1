/**
 * The bundled price table (`lib/cost/prices.json`): dated, every figure with its source, and
 * validated here so that a malformed table fails naming the field. `dapt cost` reads prices
 * only through `priceOf`, whose error names the missing item and what the table has.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';

/** The table bundled with the platform. */
export const DEFAULT_PRICES_FILE = path.join(__dirname, 'prices.json');

/** One price, in USD per the unit its field names, and where it came from. */
export const PriceSchema = z
  .strictObject({
    /** The figure, in US dollars per the unit the field name says. */
    usd: z.number().nonnegative('must be a price >= 0'),
    /** A retrievable page states this figure (for this region). */
    verified: z.boolean(),
    /** Who states it: AWS's own page, a third-party page quoting AWS, public code, or nobody. */
    by: z.enum(['aws', 'third-party', 'public-code', 'none', 'price-list-api']),
    /** The page (address) or a description of where the figure comes from. */
    source: z.string().min(1, 'must say where the figure comes from'),
    /** Tier, scope or caveat; required when the figure is not verified. */
    note: z.string().min(1).optional(),
  })
  .refine((p) => p.verified || p.note !== undefined, {
    message: 'an unverified price needs a note saying where the figure comes from',
    path: ['note'],
  })
  .refine((p) => !p.verified || p.by !== 'none', {
    message: "a verified price cannot have by: 'none'",
    path: ['by'],
  });
export type Price = z.infer<typeof PriceSchema>;

const instanceType = z.string().regex(/^[a-z0-9-]+\.[a-z0-9]+$/, 'must be an EC2 instance type such as p5.48xlarge');
const mlInstanceType = z
  .string()
  .regex(/^ml\.[a-z0-9-]+\.[a-z0-9]+$/, 'must be a SageMaker instance type such as ml.g6e.2xlarge');
const bedrockModelId = z.string().regex(/^[a-z0-9-]+\.[A-Za-z0-9.:_-]+$/, 'must be a Bedrock model id');

/** Every price of one region. */
export const RegionPricesSchema = z.strictObject({
  /** EC2 Linux on-demand, per instance-hour (the training nodes). */
  ec2OnDemandHourly: z.record(instanceType, PriceSchema),
  /** SageMaker real-time inference (hosting), per instance-hour. */
  sagemakerHostingHourly: z.record(mlInstanceType, PriceSchema),
  /** Fargate Linux/x86 (data preparation, tokenize): per vCPU-hour and per GB-hour of memory. */
  fargate: z.strictObject({ vcpuHour: PriceSchema, gbHour: PriceSchema }),
  /** Interface VPC endpoints: per endpoint per AZ-hour, and per GB processed. */
  interfaceEndpoint: z.strictObject({ azHour: PriceSchema, gbProcessed: PriceSchema }),
  /** KMS: per customer-managed key-month, and per 10,000 requests. */
  kms: z.strictObject({ keyMonth: PriceSchema, per10kRequests: PriceSchema }),
  /** CloudTrail: per 100,000 data events (management events: first copy free). */
  cloudTrail: z.strictObject({ dataEventsPer100k: PriceSchema }),
  /** CloudWatch Logs (standard class): per GB ingested and per GB-month stored. */
  cloudWatchLogs: z.strictObject({ ingestGb: PriceSchema, storageGbMonth: PriceSchema }),
  /** S3 Standard storage per GB-month. */
  s3: z.strictObject({ standardGbMonth: PriceSchema }),
  /** Step Functions Standard workflows per 1,000 state transitions. */
  stepFunctions: z.strictObject({ per1kTransitions: PriceSchema }),
  /** Lambda duration per GB-second (Arm and x86) and per million requests. */
  lambda: z.strictObject({ arm64GbSecond: PriceSchema, x86GbSecond: PriceSchema, per1mRequests: PriceSchema }),
  /** Bedrock on-demand, per 1,000 input and output tokens, by model id. */
  bedrockPer1kTokens: z.record(bedrockModelId, z.strictObject({ input: PriceSchema, output: PriceSchema })),
});
export type RegionPrices = z.infer<typeof RegionPricesSchema>;

/** The whole table. */
export const PriceTableSchema = z.strictObject({
  currency: z.literal('USD'),
  /** Where the figures come from, as a whole (each price names its own source too). */
  source: z.string().min(1, 'must say where the figures come from'),
  /** When the figures were collected (YYYY-MM-DD). */
  retrieved: z.iso.date('must be a date YYYY-MM-DD'),
  /** Hours in a billing month, for monthly figures (AWS's calculator uses 730). */
  hoursPerMonth: z.number().min(672).max(744),
  regions: z.record(
    z.string().regex(/^[a-z]{2}(-gov)?-[a-z]+-\d$/, 'must be an AWS region such as us-east-1'),
    RegionPricesSchema,
  ),
});
export type PriceTable = z.infer<typeof PriceTableSchema>;

/** The table is unreadable or malformed, or lacks a price an estimate needs. */
export class PriceTableError extends Error {
  override readonly name = 'PriceTableError';
}

/** Validates a parsed table; the error lists every problem as `path: rule`. */
export function parsePriceTable(raw: unknown, source: string): PriceTable {
  const parsed = PriceTableSchema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((i) => {
    // A bad record key reports its own rule inside (`issues`), not in the message.
    const message = i.code === 'invalid_key' ? i.issues.map((inner) => inner.message).join('; ') : i.message;
    return `${i.path.map(String).join('.') || '(root)'}: ${message}`;
  });
  throw new PriceTableError(
    `price table ${source} is invalid (${problems.length} problem(s)):\n${problems.map((p) => `  - ${p}`).join('\n')}`,
  );
}

/** Reads and validates a price table file. */
export function loadPriceTable(file: string = DEFAULT_PRICES_FILE): PriceTable {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new PriceTableError(`price table ${file}: cannot read or parse it: ${(err as Error).message}`);
  }
  return parsePriceTable(raw, path.relative(process.cwd(), file) || file);
}

/** Sections of a region whose prices are keyed by an item (instance type, model id). */
export type KeyedSection = 'ec2OnDemandHourly' | 'sagemakerHostingHourly';

/** A price used by an estimate, with the name it is shown under. */
export interface UsedPrice extends Price {
  /** `us-east-1 ec2OnDemandHourly p5.48xlarge`, for the list of prices an estimate used. */
  readonly ref: string;
}

/** The prices of `region`, or an error naming the regions the table has. */
export function regionPrices(table: PriceTable, region: string): RegionPrices {
  const prices = table.regions[region];
  if (!prices)
    throw new PriceTableError(
      `no prices for region ${region} in the price table (it has ${Object.keys(table.regions).join(', ')}); add the region to lib/cost/prices.json or use --refresh-prices`,
    );
  return prices;
}

/** The price of an instance type, or an error naming the ones the table has. */
export function instancePrice(table: PriceTable, region: string, section: KeyedSection, item: string): UsedPrice {
  const prices = regionPrices(table, region)[section];
  const price = prices[item];
  if (!price)
    throw new PriceTableError(
      `no ${section} price for '${item}' in ${region} (the table has ${Object.keys(prices).join(', ') || 'none'}); add it to lib/cost/prices.json or use --refresh-prices`,
    );
  return { ...price, ref: `${region} ${section} ${item}` };
}

/** The input and output token prices of a Bedrock model, or an error naming the models priced. */
export function bedrockPrices(
  table: PriceTable,
  region: string,
  modelId: string,
): { input: UsedPrice; output: UsedPrice } {
  const models = regionPrices(table, region).bedrockPer1kTokens;
  const price = models[modelId];
  if (!price)
    throw new PriceTableError(
      `no Bedrock price for model '${modelId}' in ${region} (the table has ${Object.keys(models).join(', ') || 'none'}); add it to lib/cost/prices.json`,
    );
  return {
    input: { ...price.input, ref: `${region} bedrock ${modelId} input` },
    output: { ...price.output, ref: `${region} bedrock ${modelId} output` },
  };
}

/** A fixed-shape price, e.g. `servicePrice(table, 'us-east-1', 'kms', 'keyMonth')`. */
export function servicePrice<
  S extends Exclude<keyof RegionPrices, KeyedSection | 'bedrockPer1kTokens'>,
  K extends keyof RegionPrices[S],
>(table: PriceTable, region: string, section: S, key: K): UsedPrice {
  const price = regionPrices(table, region)[section][key] as Price;
  return { ...price, ref: `${region} ${section} ${String(key)}` };
}
