/**
 * Strict reply parsing, as in `dapt_eval.mcq.parse_letter`, `runner.parse_label`,
 * `strict_json.parse_json_object` and `judge.parse_verdict`. Anything these reject is
 * `unparseable`: counted on its own, never scored as wrong.
 */
import { pyRepr, pySplit, pyStrip } from './pytext';
import { casefold } from './unicode-table';
import { MCQ_LETTER } from './constants';

const FENCE = /^```json[ \t]*\n([\s\S]*?)\n?```$/;

/** The text `parseJsonObject` parses: the fenced block's body, or the stripped reply. */
export function jsonBody(text: string): string {
  const stripped = pyStrip(text);
  const fenced = FENCE.exec(stripped);
  return fenced ? (fenced[1] ?? '') : stripped;
}

/** The answer letter if the reply is exactly a letter, else null. */
export function parseLetter(text: string): string | null {
  const match = MCQ_LETTER.exec(pyStrip(text));
  return match?.[1] ? match[1].toUpperCase() : null;
}

/** The label the reply names: exact match after trimming, dropping trailing dots and case-folding. */
export function parseLabel(text: string, labels: readonly string[]): string | null {
  const candidate = casefold(pyStrip(pyStrip(text).replace(/\.+$/, '')));
  return labels.find((label) => casefold(label) === candidate) ?? null;
}

/** The reply is not exactly one JSON object (optionally in one ```json fence). */
export class StrictJsonError extends Error {
  override readonly name = 'StrictJsonError';
}

/** The single JSON object in `text`; no prose around it, no repair. */
export function parseJsonObject(text: string): Record<string, unknown> {
  const stripped = pyStrip(text);
  const body = jsonBody(text);
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch (err) {
    throw new StrictJsonError(`not valid JSON (${(err as Error).message}): ${pyRepr(stripped.slice(0, 120))}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new StrictJsonError(`expected a JSON object, got ${pyTypeName(value)}`);
  }
  return value as Record<string, unknown>;
}

export type VerdictLabel = 'correct' | 'incorrect';

/** A parsed judge reply. */
export interface Verdict {
  readonly verdict: VerdictLabel;
  readonly reason: string;
}

/**
 * `{"verdict": "correct"|"incorrect", "reason": "..."}` and nothing else; throws StrictJsonError
 * naming every problem. With `candidate`, a reply whose JSON also stands in the candidate answer
 * (whitespace collapsed) is rejected: the candidate's fake verdict echoed, not the judge's own.
 */
export function parseVerdict(text: string, candidate?: string): Verdict {
  const value = parseJsonObject(text);
  const problems: string[] = [];
  if (!('verdict' in value)) problems.push('verdict: Field required');
  else if (value.verdict !== 'correct' && value.verdict !== 'incorrect') {
    problems.push(`verdict: Input should be 'correct' or 'incorrect'`);
  }
  if (!('reason' in value)) problems.push('reason: Field required');
  else if (typeof value.reason !== 'string') problems.push('reason: Input should be a valid string');
  for (const key of Object.keys(value)) {
    if (key !== 'verdict' && key !== 'reason') problems.push(`${key}: Extra inputs are not permitted`);
  }
  if (problems.length > 0) throw new StrictJsonError(`verdict object rejected: ${problems.join('; ')}`);
  if (candidate !== undefined && collapsed(candidate).includes(collapsed(jsonBody(text))))
    throw new StrictJsonError("the reply repeats a verdict written in the candidate answer: not the judge's own");
  return { verdict: value.verdict as VerdictLabel, reason: value.reason as string };
}

/** Same words ignoring case and whitespace (the simulated judge's notion of a right answer). */
export function sameText(a: string, b: string): boolean {
  return pySplit(casefold(a)).join(' ') === pySplit(casefold(b)).join(' ');
}

function collapsed(text: string): string {
  return pySplit(text).join(' ');
}

function pyTypeName(value: unknown): string {
  if (value === null) return 'NoneType';
  if (Array.isArray(value)) return 'list';
  if (typeof value === 'string') return 'str';
  if (typeof value === 'boolean') return 'bool';
  if (typeof value === 'number') return Number.isInteger(value) ? 'int' : 'float';
  return typeof value;
}
