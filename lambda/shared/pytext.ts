/**
 * Python `str` behaviours the evaluation core relies on, reproduced exactly in TypeScript:
 * `strip`/`split` (Python's whitespace set), code-point slicing and `repr` (`casefold` is in
 * `unicode-table.ts`, which follows Python's Unicode version). Scores and parse decisions depend
 * on them, so "close enough" would make the two runners disagree on the same reply.
 */
import { isPrintable } from './unicode-table';

/** Characters for which Python's `str.isspace()` is true. */
const PY_WHITESPACE = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const LEADING_WS = new RegExp(`^[${PY_WHITESPACE}]+`, 'u');
const TRAILING_WS = new RegExp(`[${PY_WHITESPACE}]+$`, 'u');
const WS_RUN = new RegExp(`[${PY_WHITESPACE}]+`, 'u');

/** `str.strip()`. */
export function pyStrip(text: string): string {
  return text.replace(LEADING_WS, '').replace(TRAILING_WS, '');
}

/** `str.split()` without arguments: split on whitespace runs, no empty strings. */
export function pySplit(text: string): string[] {
  const stripped = pyStrip(text);
  return stripped === '' ? [] : stripped.split(WS_RUN);
}

/** `str.isspace()`-only or empty: what the Python schemas call blank. */
export function isBlank(text: string): boolean {
  return pyStrip(text) === '';
}

/** `text[:n]` (Python slices by code point, JavaScript by UTF-16 unit). */
export function pySlice(text: string, n: number): string {
  return Array.from(text).slice(0, n).join('');
}

/**
 * `repr(text)` for a str: the form Python error messages embed (`{raw[:80]!r}`). What is
 * printable is Python 3.11's Unicode data (the shared table), not Node's newer ICU.
 */
export function pyRepr(text: string): string {
  const quote = text.includes("'") && !text.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of text) {
    const code = ch.codePointAt(0) ?? 0;
    if (ch === quote || ch === '\\') out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (isPrintable(ch)) out += ch;
    else if (code <= 0xff) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else if (code <= 0xffff) out += `\\u${code.toString(16).padStart(4, '0')}`;
    else out += `\\U${code.toString(16).padStart(8, '0')}`;
  }
  return out + quote;
}

/** `repr(list_of_str)`, e.g. `['billing', 'refund']`. */
export function pyReprList(items: readonly string[]): string {
  return `[${items.map(pyRepr).join(', ')}]`;
}
