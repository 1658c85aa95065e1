/**
 * The logical ids of stateful resources are pinned. CloudFormation replaces a resource whose
 * logical id changes: a new bucket, table, key or VPC beside (or instead of) the old one, data
 * left behind, and a failed update wherever the resource has a fixed name. Refactoring constructs
 * must not move them; see docs/architecture.md, "Stacks and constructs".
 *
 * When a change is meant to replace such a resource, regenerate the pin and say why in the commit:
 *   UPDATE_LOGICAL_IDS=1 node --import tsx --test test/stacks/logical-ids.test.ts
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import type { Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { buildPlatform, buildRun, createApp } from '../../lib/app';
import { EXPERIMENT, PRODUCTION } from '../helpers';

/** Resource types that hold data or identity a replacement would lose or break. */
const STATEFUL_TYPES = [
  'AWS::KMS::Key',
  'AWS::S3::Bucket',
  'AWS::DynamoDB::Table',
  'AWS::Logs::LogGroup',
  'AWS::Glue::Database',
  'AWS::Glue::Table',
  'AWS::Athena::WorkGroup',
  'AWS::CloudTrail::Trail',
  'AWS::EC2::VPC',
  'AWS::EC2::Subnet',
  'AWS::StepFunctions::StateMachine',
  'AWS::SQS::Queue',
  'AWS::SNS::Topic',
  'AWS::SageMaker::Endpoint',
  'AWS::SageMaker::InferenceComponent',
];

const PIN_FILE = path.join(__dirname, 'stateful-logical-ids.json');

function statefulIds(): Record<string, Record<string, string[]>> {
  const tmp = (): string => mkdtempSync(path.join(os.tmpdir(), 'dapt-ids-'));
  const stacks: Stack[] = [];
  for (const selection of [PRODUCTION, EXPERIMENT]) {
    const platform = buildPlatform(createApp({ outdir: tmp() }), selection, { complianceChecks: false });
    stacks.push(platform.network, platform.dataLake, platform.evaluation, platform.training);
    if (platform.audit) stacks.push(platform.audit);
    if (platform.serving) stacks.push(platform.serving);
  }
  stacks.push(buildRun(createApp({ outdir: tmp() }), { ...PRODUCTION, run: 'demo' }, { complianceChecks: false }));
  const ids: Record<string, Record<string, string[]>> = {};
  for (const stack of stacks) {
    const template = Template.fromStack(stack);
    const byType: Record<string, string[]> = {};
    for (const type of STATEFUL_TYPES) {
      const found = Object.keys(template.findResources(type)).sort();
      if (found.length > 0) byType[type] = found;
    }
    ids[stack.stackName] = byType;
  }
  return ids;
}

test('stateful resources keep their logical ids (a change would make CloudFormation replace them)', () => {
  const actual = statefulIds();
  if (process.env.UPDATE_LOGICAL_IDS === '1') {
    writeFileSync(PIN_FILE, JSON.stringify(actual, null, 2) + '\n');
    return;
  }
  const pinned = JSON.parse(readFileSync(PIN_FILE, 'utf8')) as typeof actual;
  const moved: string[] = [];
  for (const stack of new Set([...Object.keys(pinned), ...Object.keys(actual)])) {
    for (const type of STATEFUL_TYPES) {
      const before = new Set(pinned[stack]?.[type] ?? []);
      const after = new Set(actual[stack]?.[type] ?? []);
      for (const id of before) if (!after.has(id)) moved.push(`${stack}: ${type} ${id} is gone`);
      for (const id of after) if (!before.has(id)) moved.push(`${stack}: ${type} ${id} is new`);
    }
  }
  assert.deepEqual(
    moved,
    [],
    `stateful logical ids changed (a deployed stack would replace these resources):\n  ${moved.join('\n  ')}\n` +
      'If a new resource or a replacement is intended, run UPDATE_LOGICAL_IDS=1 node --import tsx --test test/stacks/logical-ids.test.ts and say why in the commit.',
  );
});
