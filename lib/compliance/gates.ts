/**
 * The gates every environment must pass: synthesis with the three cdk-nag packs and zero
 * unacknowledged findings, and AWS's template linter cfn-lint with zero errors.
 * Used by the main job (`scripts/synth-all.ts`) and by the tests.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { type App, Stack, Stage } from 'aws-cdk-lib';
import { buildEnvironment, buildRun, createApp } from '../app';
import type { ResolvedConfig, StageSelection } from '../config/load';
import { type AcknowledgmentRecord, collectAcknowledgments } from './checks';

/** An unacknowledged cdk-nag finding. */
export interface Finding {
  readonly pack: string;
  readonly rule: string;
  readonly path: string;
  readonly description: string;
}

/** A finding an acknowledgment covered: which acknowledgment (its construct path and qualified rule id) and where. */
export interface Suppression {
  /** The acknowledgment's qualified rule id, as recorded: `AwsSolutions::AwsSolutions-IAM5[Resource::*]`. */
  readonly ruleId: string;
  /** The construct the acknowledgment is on. */
  readonly acknowledgedAt: string;
  /** The resource the finding is about (the acknowledgment's construct or one inside it). */
  readonly path: string;
}

export interface StackSummary {
  readonly name: string;
  /** Construct path: findings and acknowledgments are reported under it. */
  readonly path: string;
  readonly template: string;
  readonly resources: number;
  readonly terminationProtection: boolean;
}

export interface SynthResult {
  readonly app: App;
  readonly config: ResolvedConfig;
  readonly outdir: string;
  readonly stacks: readonly StackSummary[];
  readonly findings: readonly Finding[];
  readonly acknowledgments: readonly AcknowledgmentRecord[];
  /** Every finding an acknowledgment covered, from the validation reports (the app's and each stage's). */
  readonly suppressed: readonly Suppression[];
}

/**
 * Synthesizes one environment into `outdir`; findings are returned, not thrown. With `quiet`,
 * the validation report aws-cdk-lib prints on failure is not echoed (the findings are returned).
 */
export function synthesizeEnvironment(
  selection: StageSelection,
  outdir: string,
  options: { quiet?: boolean } = {},
): SynthResult {
  rmSync(outdir, { recursive: true, force: true });
  const app = createApp({ outdir });
  const config =
    selection.run !== undefined
      ? buildRun(app, { ...selection, run: selection.run }).config
      : buildEnvironment(app, selection).config;
  let findings: Finding[] = [];
  const consoleError = console.error;
  if (options.quiet) console.error = () => undefined;
  try {
    app.synth();
  } catch (err) {
    const report = path.join(outdir, 'validation-report.json');
    if (!existsSync(report)) throw err;
    findings = readFindings(report);
    if (findings.length === 0) throw err;
  } finally {
    console.error = consoleError;
  }
  // Every stack, those of a pipeline's stage included (their templates are in the stage's own assembly).
  const stacks = app.node
    .findAll()
    .filter((c): c is Stack => c instanceof Stack && c.nestedStackParent === undefined)
    .map((stack) => {
      const template = path.join(Stage.of(stack)?.outdir ?? outdir, stack.templateFile);
      const resources = existsSync(template)
        ? Object.keys((JSON.parse(readFileSync(template, 'utf8')) as { Resources?: object }).Resources ?? {}).length
        : 0;
      return {
        name: stack.stackName,
        path: stack.node.path,
        template,
        resources,
        terminationProtection: stack.terminationProtection,
      };
    });
  return {
    app,
    config,
    outdir,
    stacks,
    findings,
    acknowledgments: collectAcknowledgments(app),
    suppressed: readSuppressions(outdir),
  };
}

interface ValidationReport {
  pluginReports: {
    pluginName: string;
    violations: { ruleName: string; description: string; violatingConstructs: { constructPath: string }[] }[];
    suppressedViolations?: {
      acknowledgedId: string;
      acknowledgedAt: string;
      violatingConstructs: { constructPath: string }[];
    }[];
  }[];
}

/** aws-cdk-lib writes a validation report into every assembly it validates (the app's, and a pipeline stage's). */
function readSuppressions(dir: string): Suppression[] {
  const found: Suppression[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) found.push(...readSuppressions(file));
    else if (entry.name === 'validation-report.json') {
      const report = JSON.parse(readFileSync(file, 'utf8')) as ValidationReport;
      for (const plugin of report.pluginReports)
        for (const s of plugin.suppressedViolations ?? [])
          for (const c of s.violatingConstructs)
            found.push({ ruleId: s.acknowledgedId, acknowledgedAt: s.acknowledgedAt, path: c.constructPath });
    }
  }
  return found;
}

function readFindings(reportFile: string): Finding[] {
  const report = JSON.parse(readFileSync(reportFile, 'utf8')) as ValidationReport;
  return report.pluginReports.flatMap((plugin) =>
    plugin.violations.flatMap((violation) =>
      violation.violatingConstructs.map((c) => ({
        pack: plugin.pluginName,
        rule: violation.ruleName,
        path: c.constructPath,
        description: violation.description.split(' - (Control IDs')[0] ?? violation.description,
      })),
    ),
  );
}

/** One cfn-lint match. */
export interface LintMatch {
  readonly level: 'Error' | 'Warning' | 'Informational';
  readonly rule: string;
  readonly message: string;
  readonly file: string;
}

/** Where the project's Python tools are installed (`make` creates it). */
export const VENV_BIN = path.join(__dirname, '..', '..', '.venv', 'bin');

/** Runs cfn-lint on `templates` for `region`; throws if cfn-lint is not installed. */
export function runCfnLint(templates: readonly string[], region: string): LintMatch[] {
  const cfnLint = path.join(VENV_BIN, 'cfn-lint');
  if (!existsSync(cfnLint)) {
    throw new Error(`cfn-lint is not installed at ${cfnLint}; run 'make test' (or 'make install') first`);
  }
  let stdout: string;
  try {
    stdout = execFileSync(cfnLint, ['--format', 'json', '--regions', region, '--', ...templates], { encoding: 'utf8' });
  } catch (err) {
    // cfn-lint exits non-zero whenever it finds something; its JSON is still on stdout.
    const out = (err as { stdout?: string }).stdout;
    if (out === undefined || out.trim() === '') throw err;
    stdout = out;
  }
  const matches = JSON.parse(stdout || '[]') as {
    Level: LintMatch['level'];
    Rule: { Id: string };
    Message: string;
    Filename: string;
  }[];
  return matches.map((m) => ({ level: m.Level, rule: m.Rule.Id, message: m.Message, file: m.Filename }));
}

/** What the main job and the tests synthesize: production, one example experiment, one example run on production. */
export const ENVIRONMENTS: readonly StageSelection[] = [
  { stage: 'production' },
  { stage: 'experiment', experiment: 'demo' },
  { stage: 'production', run: 'demo' },
];
