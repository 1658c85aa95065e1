/**
 * Reading the trainer's log stream: the per-step CloudWatch EMF lines written by
 * containers/trainer/src/dapt_trainer/metrics.py (`step`, `loss`, `lr`, `grad_norm`,
 * `tokens_per_s`, `step_time_s`, `mfu`, ... with `Experiment`/`Stage` dimensions), held-out
 * records (`heldout_loss/<source>`) and the recipe's `{"event": ..., "stage": ...}` lines.
 */
import { progressBar } from './eval-lib';

/** One optimizer step's metrics. */
export interface StepLine {
  readonly kind: 'step';
  readonly stage?: string;
  readonly step: number;
  readonly loss: number;
  readonly lr?: number;
  readonly gradNorm?: number;
  readonly tokensPerS?: number;
  readonly mfu?: number;
}

/** Held-out loss per source at a step. */
export interface HeldoutLine {
  readonly kind: 'heldout';
  readonly stage?: string;
  readonly step: number;
  readonly losses: Readonly<Record<string, number>>;
}

/** A recipe event (`data`, `resumed`, `interrupted`, `done`, ...). */
export interface EventLine {
  readonly kind: 'event';
  readonly event: string;
  readonly stage?: string;
  readonly fields: Readonly<Record<string, unknown>>;
}

export type TrainerLine = StepLine | HeldoutLine | EventLine;

/** Parses one log line; null for anything that is not a trainer JSON record (NCCL, warnings, ...). */
export function parseTrainerLine(line: string): TrainerLine | null {
  const text = line.trim();
  if (!text.startsWith('{')) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return null;
  const record = raw as Record<string, unknown>;
  const stage = str(record.Stage) ?? str(record.stage);
  const withStage = stage === undefined ? {} : { stage };
  if (typeof record.event === 'string') {
    const { event, ...fields } = record;
    delete fields.stage;
    return { kind: 'event', event, ...withStage, fields };
  }
  const step = num(record.step);
  if (step === undefined) return null;
  const loss = num(record.loss);
  if (loss !== undefined) {
    return {
      kind: 'step',
      ...withStage,
      step,
      loss,
      ...optional('lr', num(record.lr)),
      ...optional('gradNorm', num(record.grad_norm)),
      ...optional('tokensPerS', num(record.tokens_per_s)),
      ...optional('mfu', num(record.mfu)),
    };
  }
  const losses: Record<string, number> = {};
  for (const [key, value] of Object.entries(record)) {
    if (key.startsWith(HELDOUT_PREFIX) && typeof value === 'number') losses[key.slice(HELDOUT_PREFIX.length)] = value;
  }
  return Object.keys(losses).length > 0 ? { kind: 'heldout', ...withStage, step, losses } : null;
}

/**
 * `dapt  [#######.......]  50.0%  step 500/1000  loss 2.3456  lr 2.00e-05  12,345 tok/s  MFU 41.2%`;
 * without a known total, the bar is left out.
 */
export function renderStep(line: StepLine, totalSteps?: number): string {
  const parts = [line.stage ?? '(stage?)'];
  if (totalSteps !== undefined && totalSteps > 0)
    parts.push(progressBar(line.step, totalSteps), `step ${line.step}/${totalSteps}`);
  else parts.push(`step ${line.step}`);
  parts.push(`loss ${line.loss.toFixed(4)}`);
  if (line.lr !== undefined) parts.push(`lr ${line.lr.toExponential(2)}`);
  if (line.tokensPerS !== undefined) parts.push(`${Math.round(line.tokensPerS).toLocaleString('en-US')} tok/s`);
  if (line.mfu !== undefined) parts.push(`MFU ${(line.mfu * 100).toFixed(1)}%`);
  return parts.join('  ');
}

/** One line for a held-out record or an event. */
export function renderOther(line: HeldoutLine | EventLine): string {
  if (line.kind === 'heldout') {
    const losses = Object.entries(line.losses).map(([source, loss]) => `${source} ${loss.toFixed(4)}`);
    return `${line.stage ?? '(stage?)'}  held-out loss at step ${line.step}: ${losses.join(', ')}`;
  }
  return `${line.stage ?? ''}${line.stage ? '  ' : ''}event ${line.event}: ${JSON.stringify(line.fields)}`;
}

/**
 * Renders the trainer lines of a batch of log messages (other lines are dropped). With
 * `latestStepOnly`, a run of step lines of one stage shows only its last one, so a poll every few
 * seconds prints one progress line instead of every step since the last poll.
 */
export function renderLogLines(
  messages: readonly string[],
  stageSteps: Readonly<Record<string, number>>,
  latestStepOnly = false,
): string[] {
  const out: string[] = [];
  let pendingStep: StepLine | null = null;
  const flush = (): void => {
    if (pendingStep)
      out.push(renderStep(pendingStep, pendingStep.stage === undefined ? undefined : stageSteps[pendingStep.stage]));
    pendingStep = null;
  };
  for (const message of messages) {
    const line = parseTrainerLine(message);
    if (line === null) continue;
    if (line.kind === 'step') {
      if (!latestStepOnly || (pendingStep !== null && pendingStep.stage !== line.stage)) flush();
      pendingStep = line;
      if (!latestStepOnly) flush();
      continue;
    }
    flush();
    out.push(renderOther(line));
  }
  flush();
  return out;
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

function num(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

function optional<K extends string>(key: K, value: number | undefined): Partial<Record<K, number>> {
  return value === undefined ? {} : ({ [key]: value } as Record<K, number>);
}

const HELDOUT_PREFIX = 'heldout_loss/';
