/**
 * The main job at this stage: synthesize every environment with all compliance checks, lint
 * the templates with cfn-lint, and print a summary of stacks, resources and findings.
 * Exits non-zero if any environment has an unacknowledged finding or a cfn-lint error.
 */
import * as path from 'node:path';
import { ENVIRONMENTS, runCfnLint, synthesizeEnvironment } from '../lib/compliance/gates';

const OUT_ROOT = path.join(__dirname, '..', 'cdk.out');

let failed = false;
const rows: string[][] = [
  ['environment', 'stack', 'resources', 'termination protection', 'nag findings', 'acknowledged', 'cfn-lint E/W'],
];
for (const selection of ENVIRONMENTS) {
  const label = [selection.stage, selection.experiment, selection.run && `run-${selection.run}`]
    .filter(Boolean)
    .join('/');
  const result = synthesizeEnvironment(selection, path.join(OUT_ROOT, label.replace(/\//g, '-')));
  const lint = runCfnLint(
    result.stacks.map((s) => s.template),
    result.config.region,
  );
  for (const stack of result.stacks) {
    const findings = result.findings.filter((f) => f.path.startsWith(`${stack.path}/`));
    const acks = result.acknowledgments.filter((a) => a.path.startsWith(`${stack.path}/`));
    const stackLint = lint.filter((m) => path.resolve(m.file) === path.resolve(stack.template));
    const errors = stackLint.filter((m) => m.level === 'Error').length;
    const warnings = stackLint.filter((m) => m.level === 'Warning').length;
    rows.push([
      label,
      stack.name,
      String(stack.resources),
      stack.terminationProtection ? 'yes' : 'no',
      String(findings.length),
      String(acks.length),
      `${errors}/${warnings}`,
    ]);
    if (findings.length > 0 || errors > 0) failed = true;
  }
  for (const f of result.findings) console.error(`FINDING ${label} ${f.pack} ${f.rule} at ${f.path}: ${f.description}`);
  for (const m of lint.filter((x) => x.level === 'Error'))
    console.error(`CFN-LINT ERROR ${m.rule} ${m.file}: ${m.message}`);
}

const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
for (const [i, row] of rows.entries()) {
  console.log(row.map((cell, j) => cell.padEnd(widths[j]!)).join('  '));
  if (i === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
}
console.log(
  `\nRule packs: AwsSolutions, NIST.800.53.R5, HIPAA.Security. Templates in ${path.relative(process.cwd(), OUT_ROOT)}/.`,
);
console.log(
  failed
    ? 'FAILED: unacknowledged findings or cfn-lint errors above.'
    : 'OK: 0 unacknowledged findings, 0 cfn-lint errors.',
);
process.exit(failed ? 1 : 0);
