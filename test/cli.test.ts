import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';

const ROOT = path.join(__dirname, '..');
const CDK = path.join(ROOT, 'node_modules', '.bin', 'cdk');

function cdkSynth(...context: string[]): { status: number | null; output: string; outdir: string } {
  const outdir = mkdtempSync(path.join(os.tmpdir(), 'dapt-cli-'));
  const args = ['synth', '--quiet', '--no-notices', '-o', outdir, ...context.flatMap((c) => ['-c', c])];
  const result = spawnSync(CDK, args, {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, CDK_DISABLE_VERSION_CHECK: '1' },
  });
  return { status: result.status, output: `${result.stdout}${result.stderr}`, outdir };
}

test('the cdk CLI synthesizes an experiment through bin/app.ts', () => {
  const { status, output, outdir } = cdkSynth('stage=experiment', 'experiment=cli');
  assert.equal(status, 0, output);
  for (const stack of [
    'dapt-exp-cli-network',
    'dapt-exp-cli-data-lake',
    'dapt-exp-cli-eval',
    'dapt-exp-cli-training',
  ]) {
    assert.ok(existsSync(path.join(outdir, `${stack}.template.json`)), `${stack} not synthesized:\n${output}`);
  }
});

test('the cdk CLI rejects a bad selection with a message naming the field', () => {
  const { status, output } = cdkSynth('stage=experiment', 'experiment=Not_Valid');
  assert.notEqual(status, 0);
  assert.match(output, /experiment = "Not_Valid": must be 1-20 lowercase letters/);
});

test('the cdk CLI synthesizes one run stack with -c run=NAME', () => {
  const { status, output, outdir } = cdkSynth('stage=production', 'run=clirun');
  assert.equal(status, 0, output);
  assert.ok(existsSync(path.join(outdir, 'dapt-prod-run-clirun.template.json')), output);
  assert.ok(!existsSync(path.join(outdir, 'dapt-prod-network.template.json')), 'a run synthesizes only its own stack');
});
