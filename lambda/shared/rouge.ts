/**
 * ROUGE-L F1 with the Unicode tokenizer of `dapt_eval.metrics` (rouge-score's LCS, no stemming).
 * Parity with Python is tested in test/lambda/parity.test.ts.
 */
import { casefold, isWordChar, nfkc } from './unicode-table';

/**
 * NFKC, case-folded; words = runs of letters/digits/`_`/combining marks; each CJK char a token.
 * The Unicode data is the shared table's (Unicode 14.0.0), not Node's ICU.
 */
export function tokenize(text: string): string[] {
  const tokens: string[] = [];
  let word = '';
  for (const ch of casefold(nfkc(text))) {
    if (isCjk(ch)) {
      if (word) tokens.push(word);
      word = '';
      tokens.push(ch);
    } else if (isWordChar(ch)) {
      word += ch;
    } else if (word) {
      tokens.push(word);
      word = '';
    }
  }
  if (word) tokens.push(word);
  return tokens;
}

/** ROUGE-L F-measure of `prediction` against `reference` (0 when either has no tokens). */
export function rougeL(reference: string, prediction: string): number {
  const target = tokenize(reference);
  const predicted = tokenize(prediction);
  if (target.length === 0 || predicted.length === 0) return 0;
  const lcs = lcsLength(target, predicted);
  const precision = lcs / predicted.length;
  const recall = lcs / target.length;
  return precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
}

function lcsLength(a: readonly string[], b: readonly string[]): number {
  let previous = new Array<number>(b.length + 1).fill(0);
  for (let i = 1; i <= a.length; i++) {
    const current = new Array<number>(b.length + 1).fill(0);
    for (let j = 1; j <= b.length; j++) {
      current[j] = a[i - 1] === b[j - 1] ? (previous[j - 1] ?? 0) + 1 : Math.max(previous[j] ?? 0, current[j - 1] ?? 0);
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

function isCjk(ch: string): boolean {
  const code = ch.codePointAt(0) ?? 0;
  return CJK_RANGES.some(([low, high]) => low <= code && code <= high);
}

/** `dapt_eval.metrics.CJK_RANGES`: planes 2 and 3 whole, whatever extensions a version has assigned. */
const CJK_RANGES: ReadonlyArray<readonly [number, number]> = [
  [0x3040, 0x30ff],
  [0x3400, 0x4dbf],
  [0x4e00, 0x9fff],
  [0xf900, 0xfaff],
  [0xff66, 0xff9f],
  [0x20000, 0x2fffd],
  [0x30000, 0x3fffd],
];
