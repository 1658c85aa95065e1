/**
 * Evaluation results that stay true when items change, replies misbehave or answers attack the
 * judge (issue 15), checked on the pure parts of the fan-out: no moto, no Python.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { manifestSchema, type Row } from '../../lambda/shared/benchmark';
import { type RunContext, unitKey } from '../../lambda/shared/evaluate';
import { planRun } from '../../lambda/shared/plan';
import { parseRunSpec } from '../../lambda/shared/spec';

const MODEL = { provider: 'simulated' as const, model_id: 'tiny', revision: 'r1' };
const CLASSIFY_CTX: RunContext = {
  run_id: 'run-1',
  benchmark: 'bench',
  benchmark_version: '1.0.0',
  task: 'classification',
  prompt: { id: 'classify', version: '1', template: 'Labels: {labels}\nText: {text}\nLabel:' },
  labels: ['billing', 'outage'],
  mode: 'label',
  decoding: { temperature: 0, max_tokens: 256, top_p: 1, seed: 0, stop: [] },
};

test('an edited item gets a new cache key in the plan, so its stale record is not reused', () => {
  const row: Row = { id: 'c0', text: 'my invoice is wrong', label: 'billing' };
  const edited: Row = { ...row, label: 'outage' };
  const spec = parseRunSpec({ benchmark: { name: 'bench', version: '1.0.0' }, models: [MODEL] }, 'spec');
  const manifest = manifestSchema.parse({
    name: 'bench',
    version: '1.0.0',
    task: 'classification',
    prompt: CLASSIFY_CTX.prompt,
    labels: CLASSIFY_CTX.labels,
  });
  const before = planRun('run-1', spec, manifest, [row]).cacheKeys;
  const after = planRun('run-1', spec, manifest, [edited]).cacheKeys;
  assert.notDeepEqual(after, before);
  // key order in the file does not matter: the row is hashed as canonical JSON
  const reordered: Row = { label: 'billing', text: 'my invoice is wrong', id: 'c0' };
  assert.equal(unitKey(CLASSIFY_CTX, reordered, MODEL, null), unitKey(CLASSIFY_CTX, row, MODEL, null));
});
