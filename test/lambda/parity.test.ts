/**
 * Cross-language parity: the TypeScript fan-out must compute what `dapt_eval` (Python) computes
 * for cache keys, tokens, ROUGE-L, MCQ shuffles, prompt rendering, reply parsing and the
 * simulated provider. Python is run from the project venv as the reference.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type CacheKeyInput, cacheKey, itemSha256 } from '../../lambda/shared/cache-key';
import { CanonicalJsonError, canonicalJson } from '../../lambda/shared/canonical-json';
import { formatChoices, JUDGE_PROMPT, render, shuffleChoices } from '../../lambda/shared/prompts';
import { SimulatedProvider } from '../../lambda/shared/providers/simulated';
import { rougeL, tokenize } from '../../lambda/shared/rouge';
import { casefold, isWordChar, nfkc, UNICODE_VERSION } from '../../lambda/shared/unicode-table';
import { parseLabel, parseLetter, parseVerdict } from '../../lambda/shared/scoring';
import { python } from './helpers';

const GOLDEN_ROW = {
  id: 'm1',
  question: 'Which?',
  answer: 'A1',
  distractors: { near_miss: 'A2', wrong: ['A3', 'A4'] },
};
const GOLDEN: CacheKeyInput = {
  benchmark: 'bench',
  benchmark_version: '1.0.0',
  item_id: 'm1',
  item_sha256: itemSha256(GOLDEN_ROW),
  prompt_id: 'mcq-letter',
  prompt_version: '1',
  model: { provider: 'offline', model_id: 'tiny', revision: 'r1' },
  decoding: { temperature: 0, max_tokens: 256, top_p: 1, seed: 0, stop: [] },
  mode: 'letter',
  judge: null,
};

test('cache_key matches the golden vector of containers/eval/README.md', () => {
  assert.equal(
    canonicalJson({
      benchmark: { name: 'bench', version: '1.0.0' },
      item_id: 'm1',
      item_sha256: '75c6c1f0662edb1be5310c26edf883de0589e4031e47046ce19547fa387f512a',
      prompt: { id: 'mcq-letter', version: '1' },
      model: { provider: 'offline', model_id: 'tiny', revision: 'r1' },
      decoding: { temperature: 0, max_tokens: 256, top_p: 1, seed: 0, stop: [] },
      mode: 'letter',
      judge: null,
    }),
    '{"benchmark":{"name":"bench","version":"1.0.0"},"decoding":{"max_tokens":256,"seed":0,"stop":[],"temperature":0,"top_p":1},"item_id":"m1","item_sha256":"75c6c1f0662edb1be5310c26edf883de0589e4031e47046ce19547fa387f512a","judge":null,"mode":"letter","model":{"model_id":"tiny","provider":"offline","revision":"r1"},"prompt":{"id":"mcq-letter","version":"1"}}',
  );
  assert.equal(itemSha256(GOLDEN_ROW), '75c6c1f0662edb1be5310c26edf883de0589e4031e47046ce19547fa387f512a');
  assert.equal(cacheKey(GOLDEN), '9fc755f1a49817561e401d5cf1b8f50f836035771135f46430c278b829cc41bc');
});

test('canonical JSON rejects numbers that Python and JavaScript print differently', () => {
  assert.throws(() => canonicalJson({ t: 1e-5 }), CanonicalJsonError);
  assert.throws(
    () => canonicalJson({ t: 1.5e16 }),
    /\$\.t: integer 15000000000000000 exceeds JavaScript's safe integer range/,
  );
  assert.throws(() => canonicalJson({ t: Number.NaN }), /\$\.t: NaN is not a finite number/);
  assert.equal(canonicalJson({ b: 1.0, a: 0.7 }), '{"a":0.7,"b":1}');
});

test('cache_key equals Python for random payloads and rows with non-ASCII text and floats', () => {
  const rng = mulberry32(20240607);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)] as T;
  const word = (): string => Array.from({ length: 1 + Math.floor(rng() * 6) }, () => pick(ALPHABET)).join('');
  const rows = Array.from({ length: 60 }, (_, i) => ({
    id: word(),
    [pick(['question', 'text', 'document'])]: `${word()} ${word()}\u2028${word()}`,
    ...(i % 2 === 0 ? { label: word() } : { distractors: { near_miss: word(), wrong: [word(), word()] } }),
  }));
  const payloads: CacheKeyInput[] = rows.map((row, i) => ({
    benchmark: `b-${word()}`,
    benchmark_version: `${i}.${Math.floor(rng() * 9)}`,
    item_id: row.id,
    item_sha256: itemSha256(row),
    prompt_id: word(),
    prompt_version: String(Math.floor(rng() * 5)),
    model: { provider: pick(['offline', 'bedrock', 'openai', 'sagemaker']), model_id: word(), revision: word() },
    decoding: {
      temperature: i % 3 === 0 ? 0 : Number((rng() * 2).toPrecision(1 + (i % 17))),
      max_tokens: 1 + Math.floor(rng() * 4096),
      top_p: i % 4 === 0 ? 1 : Math.max(1e-4, Number(rng().toPrecision(1 + (i % 16)))),
      seed: Math.floor(rng() * 2 ** 31),
      stop: i % 2 === 0 ? [] : [word(), '\n\n', '"\\'],
    },
    mode: pick(['judge', 'letter', 'label', 'rouge_l']),
    judge: i % 2 === 0 ? null : { model: `bedrock:${word()}@unpinned`, prompt_version: 'judge-reference-guided@1' },
  }));
  const expected = python<string[]>(
    `import json, sys
from dapt_eval.hashing import item_sha256
from dapt_eval.results import cache_key, ModelRef
out = []
v = json.load(sys.stdin)
for row, p in zip(v["rows"], v["payloads"]):
    p["model"] = ModelRef(**p["model"])
    p["item_sha256"] = item_sha256(row)
    out.append(cache_key(**p))
print(json.dumps(out))`,
    { rows, payloads },
  );
  assert.deepEqual(payloads.map(cacheKey), expected);
});

test("NFKC, casefold and word characters follow Python's own Unicode data for every code point", () => {
  // Python's native functions, not the shared table: the table is what both runtimes read, this
  // checks that reading it gives what Python 3.11 itself does (13,569 code points tokenized
  // differently when Node used its own ICU).
  const reference = python<{
    version: string;
    nfkc: Record<string, string>;
    folds: Record<string, string>;
    word: number[];
  }>(
    `import json, unicodedata
nfkc, folds, word = {}, {}, []
for c in range(0x110000):
    if 0xD800 <= c <= 0xDFFF:
        continue
    ch = chr(c)
    n, f = unicodedata.normalize("NFKC", ch), ch.casefold()
    if n != ch:
        nfkc[c] = n
    if f != ch:
        folds[c] = f
    if ch.isalnum() or ch == "_" or unicodedata.category(ch).startswith("M"):
        word.append(c)
print(json.dumps({"version": unicodedata.unidata_version, "nfkc": nfkc, "folds": folds, "word": word}))`,
    null,
  );
  assert.equal(reference.version, UNICODE_VERSION);
  const chars: string[] = [];
  for (let c = 0; c <= 0x10ffff; c++) if (c < 0xd800 || c > 0xdfff) chars.push(String.fromCodePoint(c));
  const code = (ch: string): number => ch.codePointAt(0) ?? 0;
  // Whole in one string, one code point a line: "\n" neither composes nor lets marks reorder
  // across it, so this is each code point's NFKC, and the split-at-unassigned path runs too.
  const nfkcWhole = nfkc(chars.join('\n')) === chars.map((ch) => reference.nfkc[code(ch)] ?? ch).join('\n');
  const foldWhole = casefold(chars.join('')) === chars.map((ch) => reference.folds[code(ch)] ?? ch).join('');
  const words = new Set(reference.word);
  const mismatches = chars.filter(
    (ch) =>
      isWordChar(ch) !== words.has(code(ch)) ||
      (!nfkcWhole && nfkc(ch) !== (reference.nfkc[code(ch)] ?? ch)) ||
      (!foldWhole && casefold(ch) !== (reference.folds[code(ch)] ?? ch)),
  );
  assert.deepEqual(
    mismatches.slice(0, 20).map((ch) => `U+${code(ch).toString(16)}`),
    [],
  );
  assert.ok(nfkcWhole && foldWhole, 'NFKC or casefold of the whole text differs from code point by code point');
  assert.equal(casefold('ΣΟΦΟΣ Straße İı'), 'σοφοσ strasse i̇ı');
});

test('tokenizer and ROUGE-L equal the Python implementation (shared vectors)', () => {
  const expected = python<{ tokens: string[][]; rouge: number[] }>(
    `import json, sys
from dapt_eval.metrics import UnicodeTokenizer, rouge_l
v = json.load(sys.stdin)
t = UnicodeTokenizer()
print(json.dumps({"tokens": [t.tokenize(s) for s in v["texts"]], "rouge": [rouge_l(a, b) for a, b in v["pairs"]]}))`,
    { texts: ROUGE_TEXTS, pairs: ROUGE_PAIRS },
  );
  assert.deepEqual(ROUGE_TEXTS.map(tokenize), expected.tokens);
  assert.deepEqual(
    ROUGE_PAIRS.map(([a, b]) => rougeL(a, b)),
    expected.rouge,
  );
});

test('MCQ shuffles, rendered prompts and reply parsing equal Python', () => {
  const items = Array.from({ length: 12 }, (_, i) => ({
    id: `m${i}-é`,
    question: `Which plan {includes} SSO? ${i}`,
    answer: 'Business',
    distractors: { near_miss: 'Pro', wrong: ['Free', 'Starter'] },
  }));
  const replies = [
    'B',
    ' (c). ',
    'Answer: d',
    'answer： A)',
    'AB',
    'The answer is B',
    'b:',
    'E',
    '(A',
    'Billing.',
    ' billing..',
    'STRASSE',
    'probably billing',
    '{"verdict": "correct", "reason": "same"}',
    '```json\n{"verdict": "incorrect", "reason": "x"}\n```',
    '{"verdict": "correct"}',
    '{"verdict": "maybe", "reason": "x"}',
    'Sure! {"verdict": "correct", "reason": "x"}',
    '{"verdict": "correct", "reason": "x", "score": 1}',
    '[1]',
  ];
  const labels = ['billing', 'straße', 'refund'];
  const expected = python<{
    perms: number[][];
    prompts: string[];
    letters: (string | null)[];
    labels: (string | null)[];
    verdicts: (string | null)[];
    judge: string;
  }>(
    `import json, sys
from dapt_eval.mcq import shuffle_choices, parse_letter
from dapt_eval.prompts import DEFAULT_PROMPTS, render, format_choices
from dapt_eval.runner import parse_label
from dapt_eval.judge import parse_verdict, VerdictParseError, JUDGE_PROMPT
from dapt_eval.schemas import McqItem, Task
v = json.load(sys.stdin)
perms, prompts = [], []
for raw in v["items"]:
    item = McqItem.model_validate(raw)
    s = shuffle_choices(item, 7)
    perms.append(s.permutation)
    prompts.append(render(DEFAULT_PROMPTS[Task.MCQ], {"question": item.question, "choices": format_choices(s.choices)}))
def verdict(r):
    try:
        return parse_verdict(r).verdict
    except VerdictParseError:
        return None
print(json.dumps({"perms": perms, "prompts": prompts, "letters": [parse_letter(r) for r in v["replies"]],
  "labels": [parse_label(r, v["labels"]) for r in v["replies"]], "verdicts": [verdict(r) for r in v["replies"]],
  "judge": render(JUDGE_PROMPT, {"question": "q?", "reference_answer": "r", "candidate_answer": "c"})}))`,
    { items, replies, labels },
  );
  const mcqPrompt = {
    id: 'mcq-letter',
    version: '1',
    template: 'Choose the correct answer. Reply with the letter only.\n\nQuestion: {question}\n{choices}\nAnswer:',
  };
  const shuffles = items.map((it) =>
    shuffleChoices(it.id, [it.answer, it.distractors.near_miss, ...it.distractors.wrong], 7),
  );
  assert.deepEqual(
    shuffles.map((s) => s.permutation),
    expected.perms,
  );
  assert.deepEqual(
    items.map((it, i) =>
      render(mcqPrompt, { question: it.question, choices: formatChoices(shuffles[i]?.choices ?? []) }),
    ),
    expected.prompts,
  );
  assert.deepEqual(replies.map(parseLetter), expected.letters);
  assert.deepEqual(
    replies.map((r) => parseLabel(r, labels)),
    expected.labels,
  );
  assert.deepEqual(
    replies.map((r) => {
      try {
        return parseVerdict(r).verdict;
      } catch {
        return null;
      }
    }),
    expected.verdicts,
  );
  assert.equal(render(JUDGE_PROMPT, { question: 'q?', reference_answer: 'r', candidate_answer: 'c' }), expected.judge);
});

test('the simulated provider answers like the Python offline provider for the same prompt and seed', async () => {
  const behaviour = { correct_rate: 0.6, unparseable_rate: 0.2, error_rate: 0, throttle_rate: 0, latency_ms: 0 };
  const prompts = Array.from({ length: 40 }, (_, i) => `prompt ${i} — ünïcödé 問題`);
  const expected = python<string[]>(
    `import json, sys
from dapt_eval.providers.offline import OfflineProvider, OfflineBehaviour
from dapt_eval.providers.base import DecodingParams, Oracle
p = OfflineProvider("m", "1", OfflineBehaviour(correct_rate=0.6, unparseable_rate=0.2))
print(json.dumps([p.generate(s, DecodingParams(seed=3), Oracle("right", ("w1", "w2", "w3"))).text for s in json.load(sys.stdin)]))`,
    prompts,
  );
  const provider = new SimulatedProvider('m', '1', behaviour);
  const decoding = { temperature: 0, max_tokens: 256, top_p: 1, seed: 3, stop: [] };
  const actual = await Promise.all(
    prompts.map(
      async (p) => (await provider.generate(p, decoding, { correct: 'right', wrong: ['w1', 'w2', 'w3'] })).text,
    ),
  );
  assert.deepEqual(actual, expected);
});

const ALPHABET = [
  'a',
  'Z',
  '9',
  ' ',
  'é',
  'ß',
  '日',
  '本',
  'ש',
  'ָ',
  '🙂',
  '"',
  '\\',
  '\n',
  '\u2028',
  'Ω',
  'ﬁ',
  '_',
  '-',
  '/',
];

const ROUGE_TEXTS = [
  'The quick brown fox jumps over the lazy dog.',
  'ﬁnancial ＡＢＣ straße İstanbul',
  'שָׁלוֹם עוֹלָם',
  'データベースを再起動してください。日本語のテキスト',
  'नमस्ते दुनिया',
  'snake_case and 3.14 and x²',
  '   ',
  'ΣΟΦΟΣ ΛΟΓΟΣ σοφός',
  'emoji 🙂 stays out; tab\tand\u2028line',
];
const ROUGE_PAIRS: Array<[string, string]> = [
  ['the cat sat on the mat', 'the cat lay on the mat'],
  ['Restart the database, then clear the cache.', 'Clear the cache and restart the database'],
  ['データベースを再起動', 'データベースを停止'],
  ['שָׁלוֹם עוֹלָם', 'שלום עולם'],
  ['', 'anything'],
  ['Billing is monthly.', ''],
  ['ﬁnal STRASSE', 'final straße'],
  ['a b c d e f g', 'g f e d c b a'],
  [
    'Invoices are emailed on the first day of each month to the account owner.',
    'The account owner gets invoices by email on the first of the month.',
  ],
];

function mulberry32(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
