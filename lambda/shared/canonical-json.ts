/**
 * Canonical JSON and content hashes, byte-compatible with `dapt_eval.hashing` (Python).
 *
 * A file-format contract (containers/eval/README.md, "cache_key"): object keys sorted by code
 * point, no whitespace, non-ASCII unescaped, integral numbers without a fraction, other floats
 * only in [1e-4, 1e16) where Python and JavaScript print the same shortest round-trip form.
 */
import { createHash } from 'node:crypto';

/** A value that cannot be hashed identically by the Python and TypeScript runners. */
export class CanonicalJsonError extends Error {
  override readonly name = 'CanonicalJsonError';
}

/** Checks every number of `value` against the portable range; throws naming the JSON path. */
export function assertCanonicalizable(value: unknown, path = '$'): void {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return;
  if (typeof value === 'number') {
    checkNumber(value, path);
    return;
  }
  if (Array.isArray(value)) {
    value.forEach((v, i) => assertCanonicalizable(v, `${path}[${i}]`));
    return;
  }
  if (typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) assertCanonicalizable(v, `${path}.${k}`);
    return;
  }
  throw new CanonicalJsonError(`${path}: value ${String(value)} of type ${typeof value} is not JSON`);
}

/** Sorted keys (by UTF-16 code unit, which equals code point order for BMP keys), no whitespace. */
export function canonicalJson(value: unknown): string {
  assertCanonicalizable(value);
  return canon(value);
}

/** Hex SHA-256 of the UTF-8 bytes of `text`. */
export function sha256Hex(text: string | Uint8Array): string {
  return createHash('sha256').update(text).digest('hex');
}

function canon(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canon).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const record = v as Record<string, unknown>;
    const keys = Object.keys(record).sort(compareCodePoints);
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canon(record[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** Python sorts str keys by code point; JS `sort()` by UTF-16 unit. They differ only above U+FFFF. */
function compareCodePoints(a: string, b: string): number {
  const x = Array.from(a, (c) => c.codePointAt(0) ?? 0);
  const y = Array.from(b, (c) => c.codePointAt(0) ?? 0);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return (x[i] ?? 0) - (y[i] ?? 0);
  }
  return x.length - y.length;
}

function checkNumber(value: number, path: string): void {
  if (!Number.isFinite(value)) throw new CanonicalJsonError(`${path}: ${value} is not a finite number`);
  if (Number.isInteger(value)) {
    if (Math.abs(value) > Number.MAX_SAFE_INTEGER) {
      throw new CanonicalJsonError(`${path}: integer ${value} exceeds JavaScript's safe integer range (2^53-1)`);
    }
    return;
  }
  const magnitude = Math.abs(value);
  if (magnitude < MIN_PORTABLE_FLOAT || magnitude >= MAX_PORTABLE_FLOAT) {
    throw new CanonicalJsonError(
      `${path}: float ${value} is outside [1e-4, 1e16); Python and JavaScript print it differently, so it cannot be part of a content hash`,
    );
  }
}

const MIN_PORTABLE_FLOAT = 1e-4;
const MAX_PORTABLE_FLOAT = 1e16;
