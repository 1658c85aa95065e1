/**
 * The Unicode definition tokenization and case-folding follow in both runtimes:
 * `containers/eval/src/dapt_eval/unicode_table.json` (Unicode 14.0.0, Python 3.11's data; how it
 * is made and regenerated: `dapt_eval.unicode_table`). Node's own ICU is newer (`\p{L}`,
 * `toLowerCase` and `normalize` know characters Python does not), so the operations scores depend
 * on read the table instead. esbuild inlines the JSON into the Lambda bundles.
 */
import table from '../../containers/eval/src/dapt_eval/unicode_table.json';

/** The Unicode version the table holds. */
export const UNICODE_VERSION: string = table.unicode_version;

/**
 * NFKC as the table's version defines it: code points it has not assigned are kept as they are
 * (that version's NFKC leaves them alone and they block composition), the runs between them go
 * through Node's NFKC, which the normalization stability policy makes the same for them.
 */
export function nfkc(text: string): string {
  if (!UNASSIGNED.test(text)) return text.normalize('NFKC');
  return text.replace(ASSIGNED_RUN, (run) => run.normalize('NFKC'));
}

/** Python `str.casefold()` (full case folding) as the table's version defines it. */
export function casefold(text: string): string {
  return text.replace(FOLDED, (ch) => CASEFOLD.get(ch.codePointAt(0) ?? 0) ?? ch);
}

/** A letter, number, `_` or combining mark (Python `isalnum()`, `_`, category M) in the table's version. */
export function isWordChar(ch: string): boolean {
  return WORD_CHAR.test(ch);
}

/** Python `str.isprintable()` in the table's version: what `repr` leaves unescaped. */
export function isPrintable(ch: string): boolean {
  return PRINTABLE.test(ch);
}

function charClass(ranges: ReadonlyArray<readonly number[]>): string {
  return ranges.map(([low, high]) => `\\u{${(low ?? 0).toString(16)}}-\\u{${(high ?? 0).toString(16)}}`).join('');
}

function complement(ranges: ReadonlyArray<readonly number[]>): number[][] {
  const out: number[][] = [];
  let start = 0;
  for (const [low = 0, high = 0] of ranges) {
    if (start < low) out.push([start, low - 1]);
    start = high + 1;
  }
  if (start <= MAX_CODE_POINT) out.push([start, MAX_CODE_POINT]);
  return out;
}

const MAX_CODE_POINT = 0x10ffff;
const UNASSIGNED = new RegExp(`[${charClass(complement(table.assigned))}]`, 'u');
const ASSIGNED_RUN = new RegExp(`[${charClass(table.assigned)}]+`, 'gu');
const WORD_CHAR = new RegExp(`^[${charClass(table.word)}]$`, 'u');
const PRINTABLE = new RegExp(`^[${charClass(table.printable)}]$`, 'u');
const CASEFOLD = new Map<number, string>(Object.entries(table.casefold).map(([code, fold]) => [Number(code), fold]));
/** The code points `CASEFOLD` maps, as one class: `replace` then leaves the rest untouched. */
const FOLDED = new RegExp(`[${charClass([...CASEFOLD.keys()].map((code) => [code, code]))}]`, 'gu');
