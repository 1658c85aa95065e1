/**
 * The run spec: which benchmark, which models (and judge), decoding, sharding and concurrency.
 * Validated with zod by the CLI before upload and again by the Plan Lambda; every problem is
 * reported together, each naming its field.
 */
import { z } from 'zod';
import { assertCanonicalizable } from './canonical-json';
import { EVAL_PREFIXES } from './layout';
import { DEFAULT_FLOOR } from './limiter';
import { MAX_THROTTLED_ATTEMPTS } from './retry';

export const PROVIDER_KINDS = ['bedrock', 'sagemaker', 'openai', 'simulated'] as const;
export type ProviderKind = (typeof PROVIDER_KINDS)[number];

const rate = z.number().min(0).max(1);

/** Behaviour of the deterministic `simulated` provider (mirrors Python's `OfflineBehaviour`, plus latency). */
export const simulatedSchema = z.strictObject({
  correct_rate: rate.default(1),
  unparseable_rate: rate.default(0),
  error_rate: rate.default(0),
  throttle_rate: rate.default(0),
  latency_ms: z.number().min(0).max(60_000).default(0),
});
export type SimulatedBehaviour = z.infer<typeof simulatedSchema>;

const providerFields = {
  provider: z.enum(PROVIDER_KINDS),
  model_id: z.string().min(1),
  revision: z.string().min(1).default(DEFAULT_REVISION()),
  region: z.string().min(1).optional(),
  endpoint_name: z.string().min(1).optional(),
  /** An inference component of the endpoint (a base model or a LoRA adapter); provider 'sagemaker' only. */
  inference_component_name: z.string().min(1).optional(),
  base_url: z.url().optional(),
  simulated: simulatedSchema.optional(),
};

/** Settings each provider kind needs, and settings only one kind may have. */
function checkProviderSettings(
  spec: {
    provider: ProviderKind;
    endpoint_name?: string | undefined;
    inference_component_name?: string | undefined;
    base_url?: string | undefined;
    simulated?: unknown;
  },
  ctx: z.RefinementCtx,
): void {
  if (spec.provider === 'sagemaker' && !spec.endpoint_name) {
    ctx.addIssue({ code: 'custom', path: ['endpoint_name'], message: "provider 'sagemaker' needs 'endpoint_name'" });
  }
  if (spec.provider === 'openai' && !spec.base_url) {
    ctx.addIssue({
      code: 'custom',
      path: ['base_url'],
      message: "provider 'openai' needs 'base_url' (an http(s) URL reachable from the eval subnets)",
    });
  }
  if (spec.inference_component_name && spec.provider !== 'sagemaker') {
    ctx.addIssue({
      code: 'custom',
      path: ['inference_component_name'],
      message: `only allowed for provider 'sagemaker', not '${spec.provider}'`,
    });
  }
  if (spec.simulated && spec.provider !== 'simulated') {
    ctx.addIssue({
      code: 'custom',
      path: ['simulated'],
      message: `only allowed for provider 'simulated', not '${spec.provider}'`,
    });
  }
}

/** One model endpoint. */
export const providerSpecSchema = z.strictObject(providerFields).superRefine(checkProviderSettings);
export type ProviderSpec = z.infer<typeof providerSpecSchema>;

/**
 * The judge of a qa run: a provider, and the calibration report that makes it trusted (the JSON
 * `dapt-eval calibrate-judge --out` writes, uploaded to the eval bucket).
 */
export const judgeSpecSchema = z
  .strictObject({
    ...providerFields,
    /** S3 key of the calibration report in the eval bucket. @default - none: the run is refused unless `allow_uncalibrated` */
    calibration_report: z
      .string()
      .refine((key) => CALIBRATION_REPORT_PREFIXES().some((prefix) => key.startsWith(prefix)) && !key.endsWith('/'), {
        message: `must be an object key in the eval bucket under ${CALIBRATION_REPORT_PREFIXES()
          .map((p) => `'${p}'`)
          .join(
            ' or ',
          )} (what the Plan Lambda may read), e.g. 'benchmarks/help-qa/1.0.0/judge-calibration.json'; not an s3:// URI`,
      })
      .optional(),
    /** Run with a judge whose report is missing, is for another judge, or says `trusted: false`; run.json records `judge_calibrated: false`. @default false */
    allow_uncalibrated: z.boolean().optional(),
  })
  .superRefine(checkProviderSettings);
export type JudgeSpec = z.infer<typeof judgeSpecSchema>;

/** The provider part of a judge spec (what shards carry and workers build). */
export function judgeProvider(judge: JudgeSpec): ProviderSpec {
  const judgeOnly = new Set<string>(['calibration_report', 'allow_uncalibrated']);
  return Object.fromEntries(Object.entries(judge).filter(([key]) => !judgeOnly.has(key))) as ProviderSpec;
}

const decodingSchema = z
  .strictObject({
    temperature: z.number().min(0).max(2).default(0),
    max_tokens: z.int().min(1).default(256),
    top_p: z.number().gt(0).max(1).default(1),
    seed: z.int().min(0).default(0),
    stop: z.array(z.string()).default([]),
  })
  .superRefine((d, ctx) => {
    try {
      assertCanonicalizable(d);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
    }
  });

/** The run spec uploaded to `runs/<run_id>/spec.json`. */
export const runSpecSchema = z.strictObject({
  run_id: z
    .string()
    .regex(
      /^[A-Za-z0-9_-]{1,80}$/,
      'must be 1-80 characters of A-Z a-z 0-9 _ - (it names the Step Functions execution)',
    )
    .optional(),
  benchmark: z.strictObject({
    name: z.string().regex(/^[A-Za-z0-9._-]+$/, 'must match ^[A-Za-z0-9._-]+$'),
    version: z.string().regex(/^[A-Za-z0-9._-]+$/, 'must match ^[A-Za-z0-9._-]+$'),
  }),
  models: z.array(providerSpecSchema).min(1),
  judge: judgeSpecSchema.optional(),
  mode: z.enum(['judge', 'letter', 'label', 'rouge_l']).optional(),
  decoding: decodingSchema.default({ temperature: 0, max_tokens: 256, top_p: 1, seed: 0, stop: [] }),
  shard_size: z.int().min(1).max(MAX_SHARD_SIZE()).default(100),
  worker_concurrency: z.int().min(1).max(256).default(16),
  provider_concurrency: z.partialRecord(z.enum(PROVIDER_KINDS), z.int().min(1)).default({}),
  /** Fewest calls per provider kind a worker keeps in flight while the provider throttles (its adaptive limit's floor). */
  min_provider_concurrency: z.int().min(1).default(DEFAULT_FLOOR),
  retry: z
    .strictObject({
      max_attempts: z.int().min(1).max(10).default(5),
      base_delay_ms: z.number().min(0).default(500),
      max_delay_ms: z.number().min(0).default(30_000),
      max_throttled_attempts: z.int().min(1).max(100).default(MAX_THROTTLED_ATTEMPTS),
    })
    .default({
      max_attempts: 5,
      base_delay_ms: 500,
      max_delay_ms: 30_000,
      max_throttled_attempts: MAX_THROTTLED_ATTEMPTS,
    }),
});
export type RunSpec = z.infer<typeof runSpecSchema>;

/** The spec is invalid; `problems` lists every issue as `field: message`. */
export class SpecError extends Error {
  override readonly name = 'SpecError';
  constructor(
    readonly problems: readonly string[],
    where: string,
  ) {
    super(`run spec ${where} is invalid (${problems.length} problem(s)): ${problems.join('; ')}`);
  }
}

/** Parses a spec object, throwing one SpecError that lists every problem. */
export function parseRunSpec(data: unknown, where: string): RunSpec {
  const parsed = runSpecSchema.safeParse(data);
  if (!parsed.success) {
    throw new SpecError(
      parsed.error.issues.map((i) => `${i.path.map(String).join('.') || 'spec'}: ${i.message}`),
      where,
    );
  }
  return parsed.data;
}

/** Concurrency limit of a provider kind: the spec's, else the default. */
export function providerLimit(spec: RunSpec, kind: ProviderKind): number {
  return spec.provider_concurrency[kind] ?? DEFAULT_PROVIDER_CONCURRENCY[kind];
}

/**
 * Default in-flight call limits per provider kind across the whole run. Bedrock's on-demand
 * quotas are per model and account (requests/tokens per minute); 32 in flight keeps a typical
 * account below them. A SageMaker endpoint's limit is its instances x batch size.
 */
export const DEFAULT_PROVIDER_CONCURRENCY: Readonly<Record<ProviderKind, number>> = {
  bedrock: 32,
  sagemaker: 16,
  openai: 16,
  simulated: 1024,
};

// Functions rather than consts: the schema above is built before a `const` at the bottom exists.
function DEFAULT_REVISION(): string {
  return 'unpinned';
}
function MAX_SHARD_SIZE(): number {
  return 10_000;
}
/**
 * Prefixes of the eval bucket the Plan Lambda may read (`ReadBenchmarksAndSpecs` in
 * lib/stacks/eval-stack.ts); a calibration report elsewhere would fail with AccessDenied.
 */
function CALIBRATION_REPORT_PREFIXES(): readonly string[] {
  return [EVAL_PREFIXES.benchmarks, EVAL_PREFIXES.runs];
}
