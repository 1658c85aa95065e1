/**
 * Will a training job fit? Node counts against the deployed stack, and a first-order GPU memory
 * estimate per stage against a P5 node (8 x H100 80 GB), before any GPU is paid for.
 *
 * The estimate counts what the trainer keeps per GPU besides activations: weights, gradients,
 * optimizer state and the unsharded gradients a sharded LoRA run holds between micro batches. It
 * mirrors containers/trainer/src/dapt_trainer/memory.py, which is tested against the trainer's
 * measured allocations; both must give containers/trainer/conformance/memory.json. Activations
 * depend on sequence length, micro batch and activation checkpointing; hence the margin: a stage
 * is refused above DEFAULT_MEMORY_LIMIT of GPU memory.
 */
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';

/** The slice of a validated trainer config (dapt_trainer.config.ExperimentConfig) the CLI uses. */
export const TrainerConfigSchema = z.object({
  experiment: z.string(),
  token_cache: z.string().nullable().optional(),
  compute: z.object({ activation_checkpointing: z.boolean(), precision: z.enum(['bf16', 'fp32']) }),
  stages: z
    .array(
      z.object({
        name: z.string(),
        steps: z.number().int(),
        grad_accum_steps: z.number().int(),
        model: z.object({ path: z.string().nullable(), from_stage: z.string().nullable() }),
        method: z.object({
          name: z.enum(['full', 'lora']),
          lora: z.object({ rank: z.number().int(), target_modules: z.array(z.string()) }),
        }),
      }),
    )
    .min(1),
});
export type TrainerConfig = z.infer<typeof TrainerConfigSchema>;

/** What the deployed training stack allows (from SSM). */
export interface StackLimits {
  readonly maxNodes: number;
  readonly multiNodeJobDefinition: string;
  readonly capacityMode: string;
}

/** Problems with the requested node count; empty when the job can be placed. */
export function nodeProblems(nodes: number, limits: StackLimits, queue: 'gpu' | 'cpu'): string[] {
  const problems: string[] = [];
  if (!Number.isInteger(nodes) || nodes < 1) return [`--nodes = ${nodes}: must be a whole number >= 1`];
  if (queue === 'cpu' && nodes > 1)
    problems.push(`--nodes = ${nodes} with --queue cpu: the CPU queue runs on Fargate, which has no multi-node jobs`);
  if (nodes > limits.maxNodes)
    problems.push(
      `--nodes = ${nodes}: the stack allows at most max-nodes = ${limits.maxNodes} (training.maxNodes in the stage config)`,
    );
  if (nodes > 1 && limits.multiNodeJobDefinition === 'none') {
    problems.push(
      `--nodes = ${nodes}: this stack has no multi-node job definition (job-definitions/multi-node = 'none' because training.maxNodes is 1); use --nodes 1 or raise training.maxNodes and redeploy`,
    );
  }
  if (nodes > 1 && limits.capacityMode === 'spot') {
    problems.push(
      `--nodes = ${nodes} with capacity-mode = spot: Spot is for single-node jobs only (one reclaimed node stops every node of a multi-node job); use --nodes 1 or on-demand/reserved capacity`,
    );
  }
  return problems;
}

/** The dimensions of a LLaMA-family Hugging Face `config.json` the parameter count needs. */
export interface LlamaDimensions {
  readonly hidden: number;
  readonly layers: number;
  readonly vocab: number;
  readonly intermediate: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly tiedEmbeddings: boolean;
}

const HfConfigSchema = z.object({
  hidden_size: z.number().int().positive(),
  num_hidden_layers: z.number().int().positive(),
  vocab_size: z.number().int().positive(),
  intermediate_size: z.number().int().positive(),
  num_attention_heads: z.number().int().positive(),
  num_key_value_heads: z.number().int().positive().optional(),
  head_dim: z.number().int().positive().optional(),
  tie_word_embeddings: z.boolean().optional(),
});

/** Reads the dimensions from a parsed `config.json`; throws naming the missing keys. */
export function llamaDimensions(raw: unknown, source: string): LlamaDimensions {
  const parsed = HfConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const keys = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new Error(`${source}: not a LLaMA-style config (${keys})`);
  }
  const c = parsed.data;
  return {
    hidden: c.hidden_size,
    layers: c.num_hidden_layers,
    vocab: c.vocab_size,
    intermediate: c.intermediate_size,
    heads: c.num_attention_heads,
    kvHeads: c.num_key_value_heads ?? c.num_attention_heads,
    headDim: c.head_dim ?? c.hidden_size / c.num_attention_heads,
    tiedEmbeddings: c.tie_word_embeddings ?? false,
  };
}

/** How the parameter count is computed, printed with the estimate. */
export const LLAMA_PARAMETER_FORMULA =
  'N = V*h*(2 if untied else 1) + L*(2*h*q + 2*h*kv + 3*h*I + 2*h) + h, q = heads*head_dim, kv = kv_heads*head_dim';

/** Parameters of a LLaMA decoder: embeddings (+ untied LM head), attention with GQA, SwiGLU MLP, RMSNorms. */
export function llamaParameterCount(d: LlamaDimensions): number {
  const q = d.heads * d.headDim;
  const kv = d.kvHeads * d.headDim;
  const perLayer = 2 * d.hidden * q + 2 * d.hidden * kv + 3 * d.hidden * d.intermediate + 2 * d.hidden;
  return d.vocab * d.hidden * (d.tiedEmbeddings ? 1 : 2) + d.layers * perLayer + d.hidden;
}

/** LoRA adapter parameters: rank * (in + out) for each targeted projection of each layer. */
export function loraParameterCount(d: LlamaDimensions, rank: number, targets: readonly string[]): number {
  const q = d.heads * d.headDim;
  const kv = d.kvHeads * d.headDim;
  const shapes: Record<string, [number, number]> = {
    q_proj: [d.hidden, q],
    k_proj: [d.hidden, kv],
    v_proj: [d.hidden, kv],
    o_proj: [q, d.hidden],
    gate_proj: [d.hidden, d.intermediate],
    up_proj: [d.hidden, d.intermediate],
    down_proj: [d.intermediate, d.hidden],
  };
  let perLayer = 0;
  for (const target of targets) {
    const shape = shapes[target];
    if (shape) perLayer += rank * (shape[0] + shape[1]);
  }
  return d.layers * perLayer;
}

/** Bytes per GPU by what they hold (dapt_trainer.memory.MemoryBytes). */
export interface MemoryBreakdown {
  readonly weights: number;
  readonly gradients: number;
  readonly optimizer: number;
  /** Unsharded gradients held between micro batches (sharded LoRA with accumulation). */
  readonly accumulation: number;
}

/** What the trainer's memory depends on besides the parameter counts. */
export interface TrainingShape {
  /** compute.precision: a LoRA run's frozen base is bf16 (2 bytes) under bf16, else fp32. */
  readonly precision: 'bf16' | 'fp32';
  /** The stage's grad_accum_steps: above 1, a sharded LoRA run holds unsharded adapter gradients. */
  readonly gradAccumSteps: number;
}

/** The estimate of one stage. */
export interface MemoryEstimate {
  readonly stage: string;
  readonly method: 'full' | 'lora';
  readonly parameters: number;
  readonly trainableParameters: number;
  readonly gpus: number;
  readonly breakdown: MemoryBreakdown;
  readonly bytesPerGpu: number;
  readonly gpuBytes: number;
  readonly fits: boolean;
  /** One line: the numbers and the rule. */
  readonly summary: string;
}

/**
 * Per GPU, sharded over all GPUs of the job by FSDP2 (dapt_trainer/memory.py). Full fine-tuning:
 * fp32 master weights (4) + fp32 gradients (4, reduce-scattered every micro batch) + fp32 AdamW
 * moments (8) = 16 bytes/param / GPUs. LoRA: the frozen base (2 bytes/param in bf16, 4 in fp32) /
 * GPUs, 16 bytes per adapter parameter / GPUs, and on more than one GPU with gradient accumulation
 * the adapters' unsharded fp32 gradients (4 bytes each, on every GPU).
 */
export function memoryBreakdown(
  method: 'full' | 'lora',
  parameters: number,
  adapterParameters: number,
  gpus: number,
  shape: TrainingShape,
): MemoryBreakdown {
  if (method === 'full')
    return {
      weights: (MASTER_BYTES * parameters) / gpus,
      gradients: (GRADIENT_BYTES * parameters) / gpus,
      optimizer: (ADAM_BYTES * parameters) / gpus,
      accumulation: 0,
    };
  const frozen = shape.precision === 'bf16' ? FROZEN_BF16_BYTES : MASTER_BYTES;
  const deferred = gpus > 1 && shape.gradAccumSteps > 1;
  return {
    weights: (frozen * parameters + MASTER_BYTES * adapterParameters) / gpus,
    gradients: (GRADIENT_BYTES * adapterParameters) / gpus,
    optimizer: (ADAM_BYTES * adapterParameters) / gpus,
    accumulation: deferred ? GRADIENT_BYTES * adapterParameters : 0,
  };
}

/** The breakdown of a stage against the node's GPU memory, with a one-line summary. */
export function estimateMemory(
  stage: string,
  method: 'full' | 'lora',
  parameters: number,
  adapterParameters: number,
  nodes: number,
  shape: TrainingShape = DEFAULT_TRAINING_SHAPE,
  node: GpuNode = P5_GPU_NODE,
): MemoryEstimate {
  const gpus = nodes * node.gpusPerNode;
  const trainable = method === 'full' ? parameters : adapterParameters;
  const breakdown = memoryBreakdown(method, parameters, adapterParameters, gpus, shape);
  const bytesPerGpu = breakdown.weights + breakdown.gradients + breakdown.optimizer + breakdown.accumulation;
  const limit = node.gpuBytes * DEFAULT_MEMORY_LIMIT;
  const frozen = shape.precision === 'bf16' ? FROZEN_BF16_BYTES : MASTER_BYTES;
  const rule =
    method === 'full'
      ? `${FULL_BYTES_PER_PARAM} B/param x ${billions(parameters)}B params / ${gpus} GPUs`
      : `(${frozen} B/param x ${billions(parameters)}B frozen + ${FULL_BYTES_PER_PARAM} B/param x ${billions(adapterParameters)}B adapter) / ${gpus} GPUs` +
        (breakdown.accumulation > 0
          ? ` + ${GRADIENT_BYTES} B/param x ${billions(adapterParameters)}B unsharded adapter gradients (grad_accum_steps ${shape.gradAccumSteps})`
          : '');
  const summary = `stage '${stage}' (${method}): ${rule} = ${gb(bytesPerGpu)} GB per GPU (limit ${gb(limit)} GB = ${DEFAULT_MEMORY_LIMIT * 100}% of ${gb(node.gpuBytes)} GB; activations not counted)`;
  return {
    stage,
    method,
    parameters,
    trainableParameters: trainable,
    gpus,
    breakdown,
    bytesPerGpu,
    gpuBytes: node.gpuBytes,
    fits: bytesPerGpu <= limit,
    summary,
  };
}

/** What to try when a stage does not fit. */
export function fitAdvice(estimate: MemoryEstimate, activationCheckpointing: boolean): string {
  const options = [
    ...(estimate.method === 'full' ? ['method.name: lora (2 B/param for the frozen base under bf16)'] : []),
    `more nodes (--nodes ${Math.ceil((estimate.bytesPerGpu / (estimate.gpuBytes * DEFAULT_MEMORY_LIMIT)) * (estimate.gpus / P5_GPU_NODE.gpusPerNode))} would shard it under the limit)`,
    ...(activationCheckpointing ? [] : ['compute.activation_checkpointing: true']),
  ];
  return `does not fit: ${estimate.summary}; try ${options.join(', or ')}`;
}

/** The outcome of estimating every stage: estimates, notices (skipped stages) and problems. */
export interface FitReport {
  readonly estimates: MemoryEstimate[];
  readonly notices: string[];
  readonly problems: string[];
}

/**
 * Estimates each stage whose model is a local Hugging Face folder (a `from_stage` model has its
 * origin's size); S3 models are skipped with a notice, since reading them would mean a download.
 * Relative model paths are resolved from `baseDir` (the config file's folder, then the cwd).
 */
export function estimateStages(
  config: TrainerConfig,
  nodes: number,
  baseDir: string,
  queue: 'gpu' | 'cpu' = 'gpu',
): FitReport {
  const estimates: MemoryEstimate[] = [];
  const notices: string[] = [];
  const problems: string[] = [];
  if (queue === 'cpu') return { estimates, notices: ['memory estimate skipped: the CPU queue has no GPUs'], problems };
  const dimensions = new Map<string, LlamaDimensions | null>();
  for (const [i, stage] of config.stages.entries()) {
    let dims: LlamaDimensions | null = null;
    if (stage.model.from_stage !== null) {
      dims = dimensions.get(stage.model.from_stage) ?? null;
      if (dims === null)
        notices.push(
          `stages.${i} '${stage.name}': memory estimate skipped (its model, stage '${stage.model.from_stage}', has no size)`,
        );
    } else if (stage.model.path !== null && stage.model.path.startsWith('s3://')) {
      notices.push(
        `stages.${i} '${stage.name}': memory estimate skipped (model.path = ${stage.model.path} is on S3; only a local config.json is read)`,
      );
    } else if (stage.model.path !== null) {
      const file = resolveConfigJson(stage.model.path, baseDir);
      if (file === null) {
        notices.push(
          `stages.${i} '${stage.name}': memory estimate skipped (no config.json under model.path = ${stage.model.path})`,
        );
      } else {
        try {
          dims = llamaDimensions(JSON.parse(readFileSync(file, 'utf8')), file);
        } catch (err) {
          notices.push(`stages.${i} '${stage.name}': memory estimate skipped (${(err as Error).message})`);
        }
      }
    }
    dimensions.set(stage.name, dims);
    if (dims === null) continue;
    const parameters = llamaParameterCount(dims);
    const adapter =
      stage.method.name === 'lora'
        ? loraParameterCount(dims, stage.method.lora.rank, stage.method.lora.target_modules)
        : 0;
    const estimate = estimateMemory(stage.name, stage.method.name, parameters, adapter, nodes, {
      precision: config.compute.precision,
      gradAccumSteps: stage.grad_accum_steps,
    });
    estimates.push(estimate);
    if (!estimate.fits) problems.push(`stages.${i} ${fitAdvice(estimate, config.compute.activation_checkpointing)}`);
  }
  return { estimates, notices, problems };
}

function resolveConfigJson(modelPath: string, baseDir: string): string | null {
  for (const candidate of [path.resolve(baseDir, modelPath, 'config.json'), path.resolve(modelPath, 'config.json')]) {
    if (existsSync(candidate)) return candidate;
  }
  return null;
}

function billions(n: number): string {
  return (n / 1e9).toFixed(n >= 1e9 ? 2 : 4);
}

function gb(bytes: number): string {
  return (bytes / 1e9).toFixed(1);
}

/** A GPU node: how many GPUs, and the memory of one (decimal bytes, as GPUs are sold). */
export interface GpuNode {
  readonly gpusPerNode: number;
  readonly gpuBytes: number;
}

/** p5.48xlarge (and p5e/p5en, counted at the smallest): 8 x H100 80 GB. Mirrors P5_NODE in lib/stacks/training-stack.ts. */
export const P5_GPU_NODE: GpuNode = { gpusPerNode: 8, gpuBytes: 80e9 };
/** A trained weight in fp32 (also a frozen one when precision is fp32). */
export const MASTER_BYTES = 4;
/** Its gradient, kept and reduced in fp32. */
export const GRADIENT_BYTES = 4;
/** AdamW's first and second moments in fp32. */
export const ADAM_BYTES = 8;
/** fp32 master weight + fp32 gradient + fp32 Adam moments. */
export const FULL_BYTES_PER_PARAM = MASTER_BYTES + GRADIENT_BYTES + ADAM_BYTES;
/** A frozen weight of a LoRA run under bf16. */
export const FROZEN_BF16_BYTES = 2;
/** The trainer's defaults (compute.precision bf16, grad_accum_steps 1). */
export const DEFAULT_TRAINING_SHAPE: TrainingShape = { precision: 'bf16', gradAccumSteps: 1 };
/** Share of GPU memory the estimate may use; the rest is left for activations and the allocator. */
export const DEFAULT_MEMORY_LIMIT = 0.9;
