import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { acknowledge } from '../lib/compliance/acknowledge';
import { environmentLabel, renderComplianceDoc } from '../lib/compliance/doc';
import { ENVIRONMENTS, runCfnLint, synthesizeEnvironment, type SynthResult } from '../lib/compliance/gates';
import { createApp } from '../lib/app';
import { collectAcknowledgments } from '../lib/compliance/checks';
import { ManagedRole } from '../lib/constructs/managed-role';

const outdir = (name: string): string => path.join(os.tmpdir(), `dapt-compliance-test-${process.pid}-${name}`);
const results: SynthResult[] = ENVIRONMENTS.map((s, i) => synthesizeEnvironment(s, outdir(`${s.stage}-${i}`)));

for (const result of results) {
  const label = environmentLabel(result.config);

  test(`${label}: zero unacknowledged findings in AwsSolutions, NIST 800-53 R5 and HIPAA Security`, () => {
    assert.deepEqual(
      result.findings.map((f) => `${f.pack} ${f.rule} at ${f.path}`),
      [],
    );
    assert.ok(result.stacks.length >= 1, 'no stack synthesized');
  });

  test(`${label}: cfn-lint reports zero errors`, () => {
    const matches = runCfnLint(
      result.stacks.map((s) => s.template),
      result.config.region,
    );
    assert.deepEqual(
      matches.filter((m) => m.level === 'Error').map((m) => `${m.rule} ${m.file}: ${m.message}`),
      [],
    );
  });

  test(`${label}: every acknowledgment is on a resource inside a stack, with a reason`, () => {
    const stackNames = new Set(result.stacks.map((s) => s.name));
    for (const ack of result.acknowledgments) {
      assert.ok(
        !stackNames.has(ack.path) && ack.path.includes('/'),
        `${ack.ruleId} acknowledged on a whole stack: ${ack.path}`,
      );
      assert.ok(ack.reason.length >= 30, `${ack.path} ${ack.ruleId}: reason too short`);
    }
  });
}

// aws-cdk-lib's validation report lists every finding an acknowledgment suppressed, and which one.
test('every acknowledgment still covers a real finding (none outlives its reason)', () => {
  for (const result of results) {
    assert.ok(
      result.suppressed.length > 0,
      `${environmentLabel(result.config)}: the report lists no suppressed finding`,
    );
    for (const ack of result.acknowledgments) {
      const covered = result.suppressed.some((s) => s.ruleId === ack.ruleId && s.acknowledgedAt === ack.path);
      assert.ok(covered, `acknowledgment ${ack.ruleId} at ${ack.path} covers no finding; remove it`);
    }
  }
});

test('docs/compliance.md lists exactly the acknowledgments in the code', () => {
  const expected = renderComplianceDoc(
    results.map((r, i) => ({ environment: environmentLabel(ENVIRONMENTS[i]!), acknowledgments: r.acknowledgments })),
  );
  const committed = readFileSync(path.join(__dirname, '..', 'docs', 'compliance.md'), 'utf8');
  assert.equal(committed, expected, "docs/compliance.md is out of date: run 'npm run compliance:doc'");
});

test('acknowledge refuses a whole stack, a vague reason and an unknown rule id', () => {
  const app = createApp();
  const stack = new Stack(app, 'S');
  const bucket = new s3.Bucket(stack, 'B');
  const reason = 'A reason long enough to explain why the rule does not apply.';
  assert.throws(() => acknowledge(stack, ['AwsSolutions-S1'], reason), /a whole stack is too wide/);
  assert.throws(() => acknowledge(bucket, ['AwsSolutions-S1'], 'because'), /shorter than 30 characters/);
  assert.throws(
    () => acknowledge(bucket, ['S3-Logging'], reason),
    /is not a rule of the AwsSolutions, NIST.800.53.R5 or HIPAA.Security packs/,
  );
  assert.doesNotThrow(() => acknowledge(bucket, ['AwsSolutions-IAM5[Action::s3:*]'], reason));
});

test('a role whose policy grants an unexplained wildcard fails the synth', () => {
  const stack = new Stack(createApp(), 'S');
  const statements = [
    new iam.PolicyStatement({ actions: ['s3:GetObject'], resources: ['arn:aws:s3:::bucket/runs/*'] }),
  ];
  const principal = new iam.ServicePrincipal('ecs-tasks.amazonaws.com');
  assert.throws(
    () => new ManagedRole(stack, 'Unexplained', { assumedBy: principal, description: 'test role', statements }),
    /grants wildcard Resource::arn:aws:s3:::bucket\/runs\/\* that no expected pattern explains/,
  );
  const explained = new ManagedRole(stack, 'Explained', {
    assumedBy: principal,
    description: 'test role',
    statements,
    wildcards: [{ pattern: /\/runs\/\*$/, reason: 'Run outputs are keyed per run; reads stop at the runs/ prefix.' }],
  });
  assert.deepEqual(
    collectAcknowledgments(stack).map((a) => [a.path, a.ruleId]),
    [[explained.policy.node.path, 'AwsSolutions::AwsSolutions-IAM5[Resource::arn:aws:s3:::bucket/runs/*]']],
  );
});
