import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { ConfigError, DEFAULT_CONFIG_DIR, loadConfig, parseConfig } from '../../lib/config/load';
import { resolveTtlHours } from '../../lib/config/lifecycle';
import { ExperimentNameSchema, NAME_RULE_FILE } from '../../lib/config/schema';

const production = (): Record<string, unknown> =>
  JSON.parse(readFileSync(path.join(DEFAULT_CONFIG_DIR, 'production.json'), 'utf8')) as Record<string, unknown>;

function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err.problems;
  }
  assert.fail('expected a ConfigError');
}

test('the committed stage files are valid', () => {
  const prod = loadConfig({ stage: 'production' });
  assert.equal(prod.envId, 'prod');
  assert.equal(prod.ssmRoot, '/dapt/prod');
  assert.deepEqual(prod.behaviour, { destroyOnDelete: false, terminationProtection: true });
  const exp = loadConfig({ stage: 'experiment', experiment: 'lora-r256' });
  assert.equal(exp.envId, 'exp-lora-r256');
  assert.equal(exp.experiment, 'lora-r256');
  assert.deepEqual(exp.behaviour, { destroyOnDelete: true, terminationProtection: false });
});

test('a bad config lists every problem with field, value and rule', () => {
  const raw = production();
  raw.region = 'mars-1';
  (raw.network as Record<string, unknown>).maxAzs = 9;
  (raw.training as Record<string, unknown>).availabilityZone = 'us-east-1';
  (raw.dataLake as Record<string, unknown>).abortIncompleteUploadDays = 0;
  (raw.audit as Record<string, unknown>).cloudTrail = false;
  (raw.serving as Record<string, unknown>).adapters = [
    { name: 'support', artifact: 'runs/x/sft/final/adapter.tar.gz' },
  ];
  raw.logRetentionDays = 8;
  raw.colour = 'blue';
  const problems = problemsOf(() => parseConfig(raw, 'config/production.json'));
  const expected = [
    /^region = "mars-1": must be an AWS region/,
    /^network\.maxAzs = 9: must be at most 6$/,
    /^training\.availabilityZone = "us-east-1": must be an availability zone name/,
    /^dataLake\.abortIncompleteUploadDays = 0: must be at least 1 day$/,
    /^audit\.cloudTrail = false: must be true in production/,
    /^serving\.adapters = .*: must be empty in production: adapters reach production only as Approved model packages/,
    /^logRetentionDays = 8: must be one of CloudWatch Logs' retention periods/,
    /^colour: unknown key/,
  ];
  for (const pattern of expected) {
    assert.ok(
      problems.some((p) => pattern.test(p)),
      `no problem matches ${pattern}; got:\n${problems.join('\n')}`,
    );
  }
  assert.equal(problems.length, expected.length, problems.join('\n'));
});

test('a missing field is reported as missing', () => {
  const raw = production();
  delete raw.tags;
  const problems = problemsOf(() => parseConfig(raw, 'x.json'));
  assert.deepEqual(problems.length, 1);
  assert.match(problems[0]!, /^tags = \(missing\): /);
});

test('subnet masks must fit inside the VPC', () => {
  const raw = production();
  (raw.network as Record<string, unknown>).cidr = '10.40.0.0/20';
  (raw.network as Record<string, unknown>).trainingSubnetMask = 20;
  const problems = problemsOf(() => parseConfig(raw, 'x.json'));
  assert.deepEqual(problems, ["network.trainingSubnetMask = 20: must be longer than the VPC's /20"]);
});

test('experiment and run names follow the rule the trainer reads too (names.json)', () => {
  const rule = JSON.parse(readFileSync(NAME_RULE_FILE, 'utf8')) as { pattern: string };
  for (const name of ['dapt7b-r2', 'a', 'lora-r256'])
    assert.ok(new RegExp(rule.pattern).test(name) && ExperimentNameSchema.safeParse(name).success, name);
  for (const name of ['My_Run', 'run-', 'a--b', '1run']) assert.ok(!ExperimentNameSchema.safeParse(name).success, name);
});

test('the stage selection is validated before any file is read', () => {
  assert.match(problemsOf(() => loadConfig({}))[0]!, /stage is not set: pass -c stage=<experiment\|production>/);
  assert.match(
    problemsOf(() => loadConfig({ stage: 'staging' }))[0]!,
    /stage = "staging": must be one of experiment, production/,
  );
  assert.match(problemsOf(() => loadConfig({ stage: 'experiment' }))[0]!, /experiment is not set/);
  assert.match(
    problemsOf(() => loadConfig({ stage: 'experiment', experiment: 'My_Run' }))[0]!,
    /experiment = "My_Run": must be 1-20 lowercase/,
  );
  assert.match(problemsOf(() => loadConfig({ stage: 'experiment', experiment: 'run-' }))[0]!, /not ending with a dash/);
  assert.match(problemsOf(() => loadConfig({ stage: 'experiment', experiment: 'a--b' }))[0]!, /single dashes/);
  assert.match(problemsOf(() => loadConfig({ stage: 'experiment', experiment: 'x'.repeat(21) }))[0]!, /1-20 lowercase/);
  assert.match(
    problemsOf(() => loadConfig({ stage: 'production', experiment: 'x' }))[0]!,
    /production is not an experiment/,
  );
});

test('a stage file must declare the stage it is named for, and unreadable files are named', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dapt-config-'));
  writeFileSync(path.join(dir, 'production.json'), JSON.stringify({ ...production(), stage: 'experiment' }));
  assert.match(
    problemsOf(() => loadConfig({ stage: 'production', configDir: dir }))[0]!,
    /stage = "experiment": must be "production"/,
  );
  writeFileSync(path.join(dir, 'production.json'), '{ not json');
  assert.match(
    problemsOf(() => loadConfig({ stage: 'production', configDir: dir }))[0]!,
    /cannot read or parse the file/,
  );
});

test('the account comes from the file, else from the CLI default', () => {
  assert.equal(loadConfig({ stage: 'production', defaultAccount: '111122223333' }).account, '111122223333');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dapt-config-'));
  writeFileSync(path.join(dir, 'production.json'), JSON.stringify({ ...production(), account: '444455556666' }));
  assert.equal(
    loadConfig({ stage: 'production', configDir: dir, defaultAccount: '111122223333' }).account,
    '444455556666',
  );
  writeFileSync(path.join(dir, 'production.json'), JSON.stringify({ ...production(), account: '12345' }));
  assert.match(
    problemsOf(() => loadConfig({ stage: 'production', configDir: dir }))[0]!,
    /^account = "12345": must be a 12-digit AWS account id$/,
  );
});

test('lifecycle: defaultTtlHours may not exceed maxTtlHours, and a deploy ttl above the limit names it', () => {
  const raw = production();
  raw.lifecycle = { ...(raw.lifecycle as Record<string, unknown>), defaultTtlHours: 900, maxTtlHours: 720 };
  assert.deepEqual(
    problemsOf(() => parseConfig(raw, 'config/production.json')),
    [
      'lifecycle.defaultTtlHours = 900: must be at most lifecycle.maxTtlHours (720): a deploy without -c ttl would be refused',
    ],
  );
  const lifecycle = { defaultTtlHours: 72, maxTtlHours: 336 };
  assert.deepEqual(resolveTtlHours(lifecycle, undefined), { hours: 72 });
  assert.deepEqual(resolveTtlHours(lifecycle, '12'), { hours: 12 });
  assert.match(
    (resolveTtlHours(lifecycle, '400') as { problem: string }).problem,
    /at most lifecycle\.maxTtlHours \(336 hours\)/,
  );
  assert.match((resolveTtlHours(lifecycle, '1.5') as { problem: string }).problem, /whole number of hours/);
});
