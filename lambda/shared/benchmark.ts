/**
 * Benchmark manifest and items, loaded with the rules of `dapt_eval.benchmark`: a bad row is
 * quarantined with its 1-based line and the rule it broke (never dropped, never fatal); a bad
 * benchmark as a whole (empty file, no valid row, hash mismatch, bad manifest) throws
 * `BenchmarkError` naming the file and the rule.
 */
import { z } from 'zod';
import { sha256Hex } from './canonical-json';
import { clozeProblems, type PromptSpec, type Task, templateProblems } from './prompts';
import { isBlank } from './pytext';

/** The benchmark as a whole is unusable. */
export class BenchmarkError extends Error {
  override readonly name = 'BenchmarkError';
}

const promptSchema = z.strictObject({ id: z.string().min(1), version: z.string().min(1), template: z.string().min(1) });

/** `benchmark.json` (unknown keys rejected, like the pydantic `Manifest`). */
export const manifestSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9._-]+$/, 'must match ^[A-Za-z0-9._-]+$'),
  version: z.string().min(1),
  task: z.enum(['qa', 'mcq', 'classification', 'summarization']),
  prompt: promptSchema,
  format_spread: z.array(promptSchema).default([]),
  /** mcq only: the prompt of the Python runner's `cloze` mode; the fan-out does not offer that mode. */
  cloze_prompt: promptSchema.nullable().optional(),
  labels: z.array(z.string()).nullable().optional(),
  items_file: z.string().min(1).default('items.jsonl'),
  items_sha256: z.string().default(''),
  created_by: z.string().default(''),
  notes: z.string().default(''),
});
export type Manifest = z.infer<typeof manifestSchema>;

/** One valid row; fields depend on the task (see `ROW_FIELDS`). */
export type Row = Readonly<Record<string, unknown>> & { readonly id: string };

/** A rejected row, as written to `quarantine.jsonl`. */
export interface Quarantined {
  readonly line: number;
  readonly reason: string;
  readonly raw: string;
}

/** Valid rows in file order and every quarantined row. */
export interface LoadResult {
  readonly rows: Row[];
  readonly quarantined: Quarantined[];
}

/** Parses and cross-checks `benchmark.json`, reporting every problem together. */
export function parseManifest(text: string, where: string): Manifest {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new BenchmarkError(`manifest ${where} is not valid JSON: ${(err as Error).message}`);
  }
  const parsed = manifestSchema.safeParse(data);
  if (!parsed.success) throw new BenchmarkError(`manifest ${where} is invalid: ${describeIssues(parsed.error.issues)}`);
  const problems = manifestProblems(parsed.data, where);
  if (problems.length > 0) throw new BenchmarkError(problems.join('; '));
  return parsed.data;
}

/** Rules spanning fields: labels iff classification, template fields, unique prompt ids. */
export function manifestProblems(manifest: Manifest, where: string): string[] {
  const problems: string[] = [];
  const isClassification = manifest.task === 'classification';
  const labels = manifest.labels ?? [];
  if (isClassification && labels.length < MIN_LABELS) {
    problems.push(`${where}: 'labels' must list at least ${MIN_LABELS} labels for task 'classification'`);
  }
  if (isClassification && new Set(labels).size !== labels.length)
    problems.push(`${where}: 'labels' has duplicates: ${JSON.stringify(labels)}`);
  if (!isClassification && manifest.labels != null) {
    problems.push(`${where}: 'labels' is only allowed for task 'classification', not '${manifest.task}'`);
  }
  const prompts: PromptSpec[] = [manifest.prompt, ...manifest.format_spread];
  for (const prompt of prompts) problems.push(...templateProblems(prompt, manifest.task, where));
  if (manifest.cloze_prompt != null) {
    if (manifest.task !== 'mcq')
      problems.push(`${where}: 'cloze_prompt' is only allowed for task 'mcq', not '${manifest.task}'`);
    problems.push(...clozeProblems(manifest.cloze_prompt, where));
    prompts.push(manifest.cloze_prompt);
  }
  const ids = prompts.map((p) => p.id);
  if (new Set(ids).size !== ids.length) {
    problems.push(
      `${where}: prompt ids must be unique across 'prompt', 'format_spread' and 'cloze_prompt': ${JSON.stringify(ids)}`,
    );
  }
  return problems;
}

/** Refuses items that are not the ones the manifest (and its version) describes. */
export function verifyItemsHash(items: Uint8Array, expected: string, where: string): void {
  const actual = sha256Hex(items);
  if (actual !== expected) {
    throw new BenchmarkError(
      `items file ${where} does not match its manifest: items_sha256 in manifest is '${expected}', file hashes to '${actual}'. ` +
        "Run `dapt-eval build` and bump 'version' if the items changed on purpose.",
    );
  }
}

/** Parses JSONL rows for `task`, quarantining bad JSON, schema errors, labels outside the set and duplicate ids. */
export function loadRows(text: string, task: Task, labels: readonly string[] | null, where: string): LoadResult {
  if (isBlank(text)) throw new BenchmarkError(`items file ${where} is empty: a benchmark needs at least one row`);
  const rows: Row[] = [];
  const quarantined: Quarantined[] = [];
  const firstSeen = new Map<string, number>();
  jsonlLines(text.startsWith(UTF8_BOM) ? text.slice(UTF8_BOM.length) : text).forEach((raw, index) => {
    const line = index + 1;
    let reason = rowProblem(raw, task, labels);
    if (reason === null) {
      const id = (JSON.parse(raw) as Row).id;
      const first = firstSeen.get(id);
      if (first !== undefined) reason = `duplicate id '${id}' (first seen on line ${first})`;
      else {
        firstSeen.set(id, line);
        rows.push(JSON.parse(raw) as Row);
      }
    }
    if (reason !== null) quarantined.push({ line, reason, raw });
  });
  if (rows.length === 0) {
    const first = quarantined[0];
    throw new BenchmarkError(
      `items file ${where} has no valid rows: all ${quarantined.length} quarantined; first reason: line ${first?.line}: ${first?.reason}`,
    );
  }
  return { rows, quarantined };
}

/**
 * The lines of a JSONL text (`dapt_eval.benchmark.jsonl_lines`): split on "\n" only; a "\r"
 * just before it belongs to the break. Not Python's `splitlines`, which also breaks on U+2028,
 * U+2029, U+0085, \v, \f and \x1c-\x1e: they may stand raw inside JSON strings.
 */
export function jsonlLines(text: string): string[] {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.map((line) => (line.endsWith('\r') ? line.slice(0, -1) : line));
}

/** `quarantine.jsonl` exactly as Python's `json.dumps(..., ensure_ascii=False)` writes it. */
export function quarantineJsonl(rows: readonly Quarantined[]): string {
  return rows
    .map((q) => `{"line": ${q.line}, "reason": ${JSON.stringify(q.reason)}, "raw": ${JSON.stringify(q.raw)}}\n`)
    .join('');
}

function rowProblem(raw: string, task: Task, labels: readonly string[] | null): string | null {
  if (isBlank(raw)) return 'blank line';
  let data: unknown;
  try {
    data = JSON.parse(raw);
  } catch (err) {
    return `invalid JSON: ${(err as Error).message}`;
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    return `row must be a JSON object, got ${Array.isArray(data) ? 'list' : data === null ? 'NoneType' : pyType(data)}`;
  }
  const problems = objectProblems(data as Record<string, unknown>, ROW_FIELDS[task], '');
  if (problems.length > 0) return problems.join('; ');
  const label = (data as Record<string, unknown>).label;
  if (task === 'classification' && labels && !labels.includes(label as string)) {
    return `label: '${String(label)}' is not in the manifest label set [${labels.map((l) => `'${l}'`).join(', ')}]`;
  }
  return null;
}

type FieldKind = 'str' | 'str_list' | 'distractors';
interface FieldRule {
  readonly name: string;
  readonly kind: FieldKind;
  readonly optional?: boolean;
}

function objectProblems(data: Record<string, unknown>, fields: readonly FieldRule[], prefix: string): string[] {
  const problems: string[] = [];
  for (const field of fields) {
    const where = `${prefix}${field.name}`;
    if (!(field.name in data)) {
      if (!field.optional) problems.push(`${where}: field required`);
      continue;
    }
    problems.push(...valueProblems(data[field.name], field.kind, where));
  }
  for (const key of Object.keys(data)) {
    if (!fields.some((f) => f.name === key)) problems.push(`${prefix}${key}: unknown field`);
  }
  return problems;
}

function valueProblems(value: unknown, kind: FieldKind, where: string): string[] {
  if (kind === 'str') {
    if (typeof value !== 'string') return [`${where}: Input should be a valid string`];
    return isBlank(value) ? [`${where}: Value error, must not be empty or whitespace only`] : [];
  }
  if (kind === 'str_list') {
    if (!Array.isArray(value)) return [`${where}: Input should be a valid list`];
    return value.flatMap((v, i) => valueProblems(v, 'str', `${where}.${i}`));
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return [`${where}: Input should be a valid dictionary or instance of Distractors`];
  }
  const problems = objectProblems(value as Record<string, unknown>, DISTRACTOR_FIELDS, `${where}.`);
  const wrong = (value as Record<string, unknown>).wrong;
  if (Array.isArray(wrong) && wrong.length < 2)
    problems.push(`${where}.wrong: List should have at least 2 items after validation, not ${wrong.length}`);
  if (Array.isArray(wrong) && wrong.length > 2)
    problems.push(`${where}.wrong: List should have at most 2 items after validation, not ${wrong.length}`);
  return problems;
}

function pyType(value: unknown): string {
  if (typeof value === 'string') return 'str';
  if (typeof value === 'boolean') return 'bool';
  if (typeof value === 'number') return Number.isInteger(value) ? 'int' : 'float';
  return typeof value;
}

function describeIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues.map((i) => `${i.path.join('.') || 'manifest'}: ${i.message}`).join('; ');
}

const DISTRACTOR_FIELDS: readonly FieldRule[] = [
  { name: 'near_miss', kind: 'str' },
  { name: 'wrong', kind: 'str_list' },
];

/** Row fields per task, in the Python schema's order (so reasons list problems in the same order). */
export const ROW_FIELDS: Readonly<Record<Task, readonly FieldRule[]>> = {
  qa: [
    { name: 'id', kind: 'str' },
    { name: 'question', kind: 'str' },
    { name: 'reference_answer', kind: 'str' },
    { name: 'source_ids', kind: 'str_list', optional: true },
  ],
  mcq: [
    { name: 'id', kind: 'str' },
    { name: 'question', kind: 'str' },
    { name: 'answer', kind: 'str' },
    { name: 'distractors', kind: 'distractors' },
    { name: 'source_ids', kind: 'str_list', optional: true },
  ],
  classification: [
    { name: 'id', kind: 'str' },
    { name: 'text', kind: 'str' },
    { name: 'label', kind: 'str' },
  ],
  summarization: [
    { name: 'id', kind: 'str' },
    { name: 'document', kind: 'str' },
    { name: 'reference_summary', kind: 'str' },
  ],
};

const MIN_LABELS = 2;
/** Dropped from the start of the items text, as `TextDecoder` and the Python loader drop it. */
const UTF8_BOM = '\ufeff';
