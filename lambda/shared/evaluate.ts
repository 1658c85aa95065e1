/**
 * Evaluating one unit (item x model) exactly as `dapt_eval.runner` does: render the task's fixed
 * prompt, call the provider through the retry layer, score strictly, and build the record.
 * Provider failures after retries become `errored` records carrying the message.
 */
import { cacheKey, type Decoding, describeModel, itemSha256, type JudgeRef, type ModelRef } from './cache-key';
import type { Row } from './benchmark';
import {
  CHOICE_LETTERS,
  encloseCandidate,
  formatChoices,
  JUDGE_PROMPT,
  type PromptSpec,
  render,
  shuffleChoices,
  type Task,
} from './prompts';
import type { Generation, Oracle, Provider } from './providers/types';
import { pyRepr, pyReprList, pySlice } from './pytext';
import { type ItemResult, type JudgeRecord, RESULT_SCHEMA_VERSION, type Status } from './records';
import { callWithRetry, ProviderError, RetriesExhaustedError, type RetryPolicy } from './retry';
import { rougeL } from './rouge';
import { parseLabel, parseLetter, parseVerdict, sameText, StrictJsonError, type VerdictLabel } from './scoring';
import { QA_WRONG_ANSWER, SUMMARY_FALLBACK_CHARS } from './constants';

/** Everything about a run a worker needs besides the units (embedded in every shard file). */
export interface RunContext {
  readonly run_id: string;
  readonly benchmark: string;
  readonly benchmark_version: string;
  readonly task: Task;
  readonly prompt: PromptSpec;
  readonly labels: readonly string[] | null;
  readonly mode: string;
  readonly decoding: Decoding;
}

/** A provider call made under the worker's concurrency limits (the engine supplies it). */
export type Call = (provider: Provider, prompt: string, decoding: Decoding, oracle: Oracle) => Promise<Generation>;

/** What a unit needs to be evaluated. */
export interface UnitEnv {
  readonly ctx: RunContext;
  readonly model: Provider;
  readonly judge: Provider | null;
  readonly retry: RetryPolicy;
  readonly call: Call;
}

interface Outcome {
  readonly status: Status;
  readonly prediction?: string | null;
  readonly correct?: boolean | null;
  readonly score?: number | null;
  readonly judge?: JudgeRecord | null;
  readonly error?: string | null;
  readonly latency_ms?: number | null;
  readonly usage?: Record<string, number>;
  readonly details?: Record<string, unknown>;
  readonly attempts?: number;
}

/** The judge's `{model, prompt_version}` as recorded in results and keys. */
export function judgeRef(judge: ModelRef): JudgeRef {
  return { model: describeModel(judge), prompt_version: `${JUDGE_PROMPT.id}@${JUDGE_PROMPT.version}` };
}

/** The unit's cache key (judge only for qa, like Python's runner); the item's content is in it. */
export function unitKey(ctx: RunContext, item: Row, model: ModelRef, judge: ModelRef | null): string {
  return cacheKey({
    benchmark: ctx.benchmark,
    benchmark_version: ctx.benchmark_version,
    item_id: item.id,
    item_sha256: itemSha256(item),
    prompt_id: ctx.prompt.id,
    prompt_version: ctx.prompt.version,
    model,
    decoding: ctx.decoding,
    mode: ctx.mode,
    judge: ctx.task === 'qa' && judge ? judgeRef(judge) : null,
  });
}

/** Evaluates one unit into its record. */
export async function evaluateUnit(env: UnitEnv, item: Row, key: string): Promise<ItemResult> {
  let outcome: Outcome;
  try {
    outcome = await dispatch(env, item);
  } catch (err) {
    if (!(err instanceof ProviderError)) throw err;
    outcome = {
      status: 'errored',
      error: err.message,
      attempts: err instanceof RetriesExhaustedError ? err.attempts : 0,
    };
  }
  const { ctx } = env;
  return {
    schema_version: RESULT_SCHEMA_VERSION,
    run_id: ctx.run_id,
    benchmark: ctx.benchmark,
    benchmark_version: ctx.benchmark_version,
    item_id: item.id,
    task: ctx.task,
    model: env.model.identity,
    decoding: ctx.decoding,
    prompt_id: ctx.prompt.id,
    prompt_version: ctx.prompt.version,
    mode: ctx.mode,
    status: outcome.status,
    prediction: outcome.prediction ?? null,
    correct: outcome.correct ?? null,
    score: outcome.score ?? null,
    judge: outcome.judge ?? null,
    error: outcome.error ?? null,
    cache_key: key,
    latency_ms: outcome.latency_ms ?? null,
    usage: outcome.usage ?? {},
    details: outcome.details ?? {},
    attempts: outcome.attempts ?? 0,
  };
}

function dispatch(env: UnitEnv, item: Row): Promise<Outcome> {
  switch (env.ctx.task) {
    case 'mcq':
      return evaluateMcq(env, item);
    case 'classification':
      return evaluateClassification(env, item);
    case 'summarization':
      return evaluateSummarization(env, item);
    case 'qa':
      return evaluateQa(env, item);
  }
}

async function generate(env: UnitEnv, prompt: string, oracle: Oracle): Promise<Outcome & { prediction: string }> {
  const attempted = await callWithRetry(() => env.call(env.model, prompt, env.ctx.decoding, oracle), env.retry);
  const g = attempted.value;
  return {
    status: 'ok',
    prediction: g.text,
    latency_ms: g.latencyMs,
    usage: { input_tokens: g.usage.input_tokens, output_tokens: g.usage.output_tokens },
    attempts: attempted.attempts,
  };
}

async function evaluateMcq(env: UnitEnv, item: Row): Promise<Outcome> {
  const distractors = item.distractors as { near_miss: string; wrong: string[] };
  const seed = env.ctx.decoding.seed;
  const shuffled = shuffleChoices(item.id, [item.answer as string, distractors.near_miss, ...distractors.wrong], seed);
  const text = render(env.ctx.prompt, { question: item.question as string, choices: formatChoices(shuffled.choices) });
  const answer = shuffled.answerLetter;
  const details = { permutation: shuffled.permutation, answer_letter: answer, shuffle_seed: seed };
  const wrong = [...CHOICE_LETTERS.slice(0, shuffled.choices.length)].filter((c) => c !== answer);
  const base = await generate(env, text, { correct: answer, wrong });
  const letter = parseLetter(base.prediction);
  if (letter === null) {
    return {
      ...base,
      status: 'unparseable',
      error: `reply is not a single letter A-D: ${pyRepr(pySlice(base.prediction, 80))}`,
      details,
    };
  }
  return { ...base, correct: letter === answer, details: { ...details, parsed_letter: letter } };
}

async function evaluateClassification(env: UnitEnv, item: Row): Promise<Outcome> {
  const labels = env.ctx.labels ?? [];
  const gold = item.label as string;
  const text = render(env.ctx.prompt, { text: item.text as string, labels: labels.join(', ') });
  const base = await generate(env, text, { correct: gold, wrong: labels.filter((l) => l !== gold) });
  const label = parseLabel(base.prediction, labels);
  if (label === null) {
    return {
      ...base,
      status: 'unparseable',
      error: `reply is not one of the labels ${pyReprList(labels)}: ${pyRepr(pySlice(base.prediction, 80))}`,
    };
  }
  return { ...base, correct: label === gold, details: { parsed_label: label, gold_label: gold } };
}

async function evaluateSummarization(env: UnitEnv, item: Row): Promise<Outcome> {
  const reference = item.reference_summary as string;
  const document = item.document as string;
  const text = render(env.ctx.prompt, { document });
  const base = await generate(env, text, { correct: reference, wrong: [pySlice(document, SUMMARY_FALLBACK_CHARS)] });
  return { ...base, score: rougeL(reference, base.prediction) };
}

async function evaluateQa(env: UnitEnv, item: Row): Promise<Outcome> {
  const judge = env.judge;
  if (!judge) throw new Error("task 'qa' is scored by a judge: the run has no judge provider");
  const question = item.question as string;
  const reference = item.reference_answer as string;
  const base = await generate(env, render(env.ctx.prompt, { question }), {
    correct: reference,
    wrong: [QA_WRONG_ANSWER],
  });
  const simulated: VerdictLabel = sameText(base.prediction, reference) ? 'correct' : 'incorrect';
  const enclosed = encloseCandidate(base.prediction);
  const seen = { candidate_chars: enclosed.chars, candidate_truncated: enclosed.truncated };
  const ref = judgeRef(judge.identity);
  const prompt = render(JUDGE_PROMPT, { question, reference_answer: reference, candidate_answer: enclosed.text });
  let reply: string;
  try {
    reply = (
      await callWithRetry(() => env.call(judge, prompt, DEFAULT_JUDGE_DECODING, verdictOracle(simulated)), env.retry)
    ).value.text;
  } catch (err) {
    if (!(err instanceof ProviderError)) throw err;
    return {
      ...base,
      status: 'errored',
      judge: { ...ref, verdict: null, reason: null, raw_reply: null, ...seen },
      error: `judge: ${err.message}`,
    };
  }
  try {
    const verdict = parseVerdict(reply, base.prediction);
    return {
      ...base,
      correct: verdict.verdict === 'correct',
      judge: { ...ref, verdict: verdict.verdict, reason: verdict.reason, raw_reply: reply, ...seen },
    };
  } catch (err) {
    if (!(err instanceof StrictJsonError)) throw err;
    return {
      ...base,
      status: 'unparseable',
      judge: { ...ref, verdict: null, reason: null, raw_reply: reply, ...seen },
      error: `judge: ${err.message}`,
    };
  }
}

/** Simulated-judge oracle: the expected verdict as JSON, the opposite as the wrong answer. */
function verdictOracle(expected: VerdictLabel): Oracle {
  const opposite: VerdictLabel = expected === 'correct' ? 'incorrect' : 'correct';
  return {
    correct: `{"verdict": "${expected}", "reason": "simulated"}`,
    wrong: [`{"verdict": "${opposite}", "reason": "simulated"}`],
  };
}

/** Valid modes per task; the first is the default. MCQ `loglik` is not offered by the fan-out (see lambda/README.md). */
export const TASK_MODES: Readonly<Record<Task, readonly string[]>> = {
  qa: ['judge'],
  mcq: ['letter'],
  classification: ['label'],
  summarization: ['rouge_l'],
};

/** `judge.DEFAULT_JUDGE_PARAMS`. */
export const DEFAULT_JUDGE_DECODING: Decoding = { temperature: 0, max_tokens: 256, top_p: 1, seed: 0, stop: [] };
