/**
 * The one way this project acknowledges a compliance finding.
 *
 * It wraps `Validations.of(x).acknowledge` and enforces the house rules: an acknowledgment is
 * scoped to a resource (never a whole stack or app), names one rule (or one finding of it), and
 * carries a reason a reviewer can check. `docs/compliance.md` is generated from these.
 */
import { App, Stack, Stage, Validations } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';

/** Rule ids of the packs we run, optionally narrowed to one finding: `AwsSolutions-IAM5[Action::s3:*]`. */
const RULE_ID = /^(AwsSolutions|NIST\.800\.53\.R5|HIPAA\.Security)-[A-Za-z0-9]+(\[.+\])?$/;

/** A reason shorter than this cannot say why the finding does not apply. */
export const MIN_REASON_LENGTH = 30;

/** Set to '1' to make `acknowledge` a no-op, to prove each acknowledgment still covers a finding. */
export const IGNORE_ACKNOWLEDGMENTS_ENV = 'DAPT_NAG_IGNORE_ACKNOWLEDGMENTS';

/** Acknowledges `ruleIds` on `scope` (a resource or a construct holding resources) for `reason`. */
export function acknowledge(scope: IConstruct, ruleIds: readonly string[], reason: string): void {
  const where = scope.node.path || '(app)';
  const wide = scope instanceof App ? 'app' : scope instanceof Stage ? 'stage' : scope instanceof Stack ? 'stack' : undefined;
  if (wide) {
    throw new Error(`acknowledge at '${where}': a whole ${wide} is too wide; acknowledge on the resource the finding is about`);
  }
  if (reason.trim().length < MIN_REASON_LENGTH) {
    throw new Error(
      `acknowledge at '${where}': reason ${JSON.stringify(reason)} is shorter than ${MIN_REASON_LENGTH} characters; say why the rule does not apply`,
    );
  }
  for (const id of ruleIds) {
    if (!RULE_ID.test(id)) {
      throw new Error(`acknowledge at '${where}': rule id ${JSON.stringify(id)} is not a rule of the AwsSolutions, NIST.800.53.R5 or HIPAA.Security packs`);
    }
  }
  if (process.env[IGNORE_ACKNOWLEDGMENTS_ENV] === '1') return;
  // Qualified as '<pack>::<rule>', the form cdk-nag's reports print, so the audit trail names the pack.
  for (const id of ruleIds) Validations.of(scope).acknowledge({ id: `${id.split('-')[0]}::${id}`, reason });
}
