import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  ACCOUNT_LEVEL_RULES,
  NAG_PACK_RULES,
  NAG_RULE_TO_CONFIG_RULE,
  conformancePackTemplate,
} from '../../lib/compliance/conformance-packs';
import { CONFORMANCE_PACKS } from '../../lib/config/schema';

/** The rule names the installed cdk-nag pack applies, read from its source (cdk-nag exports no list). */
function installedPackRules(file: string): string[] {
  const source = readFileSync(require.resolve(`cdk-nag/lib/packs/${file}`), 'utf8');
  const names = [...source.matchAll(/rule: [a-z0-9_]+\.([A-Za-z0-9]+)/g)].map((m) => m[1]!);
  assert.ok(names.length > 50, `found only ${names.length} rules in cdk-nag's ${file}: has its format changed?`);
  return [...new Set(names)].sort();
}

const PACK_FILES = { 'NIST.800.53.R5': 'nist-800-53-r5.js', 'HIPAA.Security': 'hipaa-security.js' } as const;

test('each conformance pack lists exactly the rules of the installed cdk-nag pack of the same name', () => {
  for (const pack of CONFORMANCE_PACKS) {
    assert.deepEqual([...NAG_PACK_RULES[pack]].sort(), installedPackRules(PACK_FILES[pack]), pack);
  }
});

test('every cdk-nag rule of both packs maps to an AWS Config managed rule identifier', () => {
  for (const pack of CONFORMANCE_PACKS) {
    for (const name of NAG_PACK_RULES[pack]) {
      const managed = NAG_RULE_TO_CONFIG_RULE[name];
      assert.ok(managed, `${pack} rule ${name} has no managed rule`);
      assert.match(managed.identifier, /^[A-Z0-9]+(_[A-Z0-9]+)+$/, name);
    }
  }
});

test('a pack template holds one Config rule per managed rule plus the account-level rules, under the TemplateBody limit', () => {
  for (const pack of CONFORMANCE_PACKS) {
    const body = conformancePackTemplate(pack);
    // AWS Config's TemplateBody takes at most 51,200 bytes.
    assert.ok(Buffer.byteLength(body) < 51_200, `${pack}: ${Buffer.byteLength(body)} bytes`);
    const identifiers = [...body.matchAll(/SourceIdentifier: ([A-Z0-9_]+)/g)].map((m) => m[1]);
    const expected = new Set([
      ...NAG_PACK_RULES[pack].map((name) => NAG_RULE_TO_CONFIG_RULE[name]!.identifier),
      ...ACCOUNT_LEVEL_RULES.map((r) => r.identifier),
    ]);
    assert.deepEqual(new Set(identifiers), expected, pack);
    assert.equal(identifiers.length, expected.size, `${pack}: a managed rule appears twice`);
    assert.equal((body.match(/Type: AWS::Config::ConfigRule/g) ?? []).length, expected.size);
    // The rule cdk-nag checks with five named ports gets the same five.
    assert.match(body, /SourceIdentifier: RESTRICTED_INCOMING_TRAFFIC\n {6}InputParameters:\n {8}blockedPort1: '20'/);
  }
});

test('a cdk-nag rule without a managed rule fails with its name', () => {
  assert.throws(
    () => conformancePackTemplate('NIST.800.53.R5', ['S3DefaultEncryptionKMS', 'SomeNewRule']),
    /no AWS Config managed rule .*: SomeNewRule$/,
  );
});
