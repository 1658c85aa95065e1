import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';

const LIB = path.join(__dirname, '..', '..', 'lib');

/** Every `readonly` member of every exported `*Props` interface under lib/, with the comment before it. */
function propsMembers(): { where: string; member: string; optional: boolean; doc: string }[] {
  const files = readdirSync(LIB, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
  const members = [];
  for (const file of files) {
    const lines = readFileSync(path.join(LIB, file), 'utf8').split('\n');
    let inside = false;
    for (const [i, line] of lines.entries()) {
      if (/^export interface \w+Props\b/.test(line)) inside = true;
      else if (inside && line.startsWith('}')) inside = false;
      const match = inside ? /^ {2}readonly (\w+)(\?)?:/.exec(line) : null;
      if (!match) continue;
      let doc = '';
      if (lines[i - 1]?.trim().endsWith('*/')) {
        let start = i - 1;
        while (start > 0 && !lines[start]!.includes('/**')) start -= 1;
        doc = lines.slice(start, i).join('\n');
      }
      members.push({ where: `lib/${file}:${i + 1}`, member: match[1]!, optional: match[2] === '?', doc });
    }
  }
  return members;
}

test('every construct and stack prop says what it is, and every optional one its @default', () => {
  const members = propsMembers();
  assert.ok(members.length > 100, `found only ${members.length} props: is the parser still reading lib/?`);
  const undocumented = members.filter((m) => m.doc === '').map((m) => `${m.where} ${m.member}`);
  const noDefault = members
    .filter((m) => m.optional && !m.doc.includes('@default'))
    .map((m) => `${m.where} ${m.member}`);
  assert.deepEqual(undocumented, [], 'props without a JSDoc sentence');
  assert.deepEqual(noDefault, [], 'optional props without @default');
});
