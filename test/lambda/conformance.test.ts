/**
 * The conformance corpus (`containers/eval/conformance/*.json`): vectors that this suite and the
 * Python suite (`containers/eval/tests/test_conformance.py`) both run, so the two runtimes cannot
 * drift apart where the parity tests do not look.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { loadRows } from '../../lambda/shared/benchmark';
import { ROOT } from './helpers';

const CORPUS = path.join(ROOT, 'containers', 'eval', 'conformance');

function vectors<T>(name: string): T {
  return JSON.parse(readFileSync(path.join(CORPUS, name), 'utf8')) as T;
}

interface LoaderCase {
  readonly name: string;
  readonly text: string;
  readonly rows: readonly string[];
  readonly quarantined_lines: readonly number[];
}
const LOADERS = vectors<{ labels: string[]; cases: LoaderCase[] }>('loaders.json');

for (const c of LOADERS.cases) {
  test(`JSONL loader follows the corpus: ${c.name}`, () => {
    // Through the bytes, as the Plan Lambda reads the items file.
    const text = new TextDecoder('utf-8', { fatal: true }).decode(new TextEncoder().encode(c.text));
    const load = loadRows(text, 'classification', LOADERS.labels, 'items.jsonl');
    assert.deepEqual(
      load.rows.map((r) => r.id),
      c.rows,
    );
    assert.deepEqual(
      load.quarantined.map((q) => q.line),
      c.quarantined_lines,
    );
  });
}

test('loadRows drops a BOM left in the text it is given, like the Python loader', () => {
  const row = JSON.stringify({ id: 'c0', text: 't', label: 'billing' });
  assert.deepEqual(
    loadRows(`\ufeff${row}\n`, 'classification', LOADERS.labels, 'items.jsonl').rows.map((r) => r.id),
    ['c0'],
  );
});
