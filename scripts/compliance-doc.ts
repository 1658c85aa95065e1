/**
 * Writes (`--write`) or checks (`--check`) docs/compliance.md against the code's acknowledgments.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { environmentLabel, renderComplianceDoc } from '../lib/compliance/doc';
import { ENVIRONMENTS, synthesizeEnvironment } from '../lib/compliance/gates';

export const COMPLIANCE_DOC = path.join(__dirname, '..', 'docs', 'compliance.md');

export function generateComplianceDoc(): string {
  return renderComplianceDoc(
    ENVIRONMENTS.map((selection) => {
      const result = synthesizeEnvironment(selection, path.join(os.tmpdir(), `dapt-compliance-${selection.stage}`));
      return {
        environment: environmentLabel(selection),
        acknowledgments: result.acknowledgments,
      };
    }),
  );
}

if (require.main === module) {
  const mode = process.argv[2];
  const generated = generateComplianceDoc();
  if (mode === '--write') {
    writeFileSync(COMPLIANCE_DOC, generated);
    console.log(`wrote ${path.relative(process.cwd(), COMPLIANCE_DOC)}`);
  } else if (mode === '--check') {
    if (readFileSync(COMPLIANCE_DOC, 'utf8') !== generated) {
      console.error(`${COMPLIANCE_DOC} is out of date: run 'npm run compliance:doc'`);
      process.exit(1);
    }
    console.log('docs/compliance.md is up to date');
  } else {
    console.error('usage: tsx scripts/compliance-doc.ts --write|--check');
    process.exit(2);
  }
}
