/**
 * The compliance rule packs every synth runs, and the audit trail of acknowledgments.
 */
import { type Stage, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks, HIPAASecurityChecks, NIST80053R5Checks } from 'cdk-nag';
import type { IConstruct } from 'constructs';

/** The packs, by the plugin names cdk-nag reports them under. */
export const RULE_PACKS = ['AwsSolutions', 'NIST.800.53.R5', 'HIPAA.Security'] as const;

/**
 * Attaches the three packs to an app or a stage (a stage's stacks are checked by its own plugins
 * only, so a pipeline's stage gets them too); a finding that is not acknowledged fails synthesis.
 */
export function attachComplianceChecks(app: Stage): void {
  Validations.of(app).addPlugins(
    new AwsSolutionsChecks(app, { verbose: true }),
    new NIST80053R5Checks(app, { verbose: true }),
    new HIPAASecurityChecks(app, { verbose: true }),
  );
}

/** One acknowledged rule on one construct. */
export interface AcknowledgmentRecord {
  readonly path: string;
  readonly ruleId: string;
  readonly reason: string;
}

/** Every acknowledgment in the tree under `root`, sorted by path then rule. */
export function collectAcknowledgments(root: IConstruct): AcknowledgmentRecord[] {
  const records: AcknowledgmentRecord[] = [];
  for (const construct of root.node.findAll()) {
    for (const entry of construct.node.metadata) {
      if (entry.type !== Validations.ACKNOWLEDGED_RULES_METADATA_KEY) continue;
      for (const ack of asAcknowledgments(entry.data)) {
        // aws-cdk-lib acknowledges some findings of its own CloudFormation-Validate plugin; only ours are listed.
        if (!RULE_PACKS.some((pack) => ack.id.startsWith(`${pack}::`))) continue;
        records.push({ path: construct.node.path, ruleId: ack.id, reason: ack.reason });
      }
    }
  }
  return records.sort((a, b) => a.path.localeCompare(b.path) || a.ruleId.localeCompare(b.ruleId));
}

/** cdk records each acknowledgment as `{ "<qualified rule id>": "<reason>" }`. */
function asAcknowledgments(data: unknown): { id: string; reason: string }[] {
  if (typeof data !== 'object' || data === null) return [];
  return Object.entries(data as Record<string, unknown>)
    .filter((entry): entry is [string, string] => typeof entry[1] === 'string')
    .map(([id, reason]) => ({ id, reason }));
}
