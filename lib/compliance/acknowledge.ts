/**
 * The one way this project acknowledges a compliance finding.
 *
 * It wraps `Validations.of(x).acknowledge` and enforces the house rules: an acknowledgment is
 * scoped to a resource (never a whole stack or app), names one rule (or one finding of it), and
 * carries a reason a reviewer can check. `docs/compliance.md` is generated from these.
 */
import { App, Stack, Stage, Validations } from 'aws-cdk-lib';
import type * as iam from 'aws-cdk-lib/aws-iam';
import type { IConstruct } from 'constructs';

/** Rule ids of the packs we run, optionally narrowed to one finding: `AwsSolutions-IAM5[Action::s3:*]`. */
const RULE_ID = /^(AwsSolutions|NIST\.800\.53\.R5|HIPAA\.Security)-[A-Za-z0-9]+(\[.+\])?$/;

/** A reason shorter than this cannot say why the finding does not apply. */
export const MIN_REASON_LENGTH = 30;

/** Acknowledges `ruleIds` on `scope` (a resource or a construct holding resources) for `reason`. */
export function acknowledge(scope: IConstruct, ruleIds: readonly string[], reason: string): void {
  const where = scope.node.path || '(app)';
  const wide =
    scope instanceof App ? 'app' : scope instanceof Stage ? 'stage' : scope instanceof Stack ? 'stack' : undefined;
  if (wide) {
    throw new Error(
      `acknowledge at '${where}': a whole ${wide} is too wide; acknowledge on the resource the finding is about`,
    );
  }
  if (reason.trim().length < MIN_REASON_LENGTH) {
    throw new Error(
      `acknowledge at '${where}': reason ${JSON.stringify(reason)} is shorter than ${MIN_REASON_LENGTH} characters; say why the rule does not apply`,
    );
  }
  for (const id of ruleIds) {
    if (!RULE_ID.test(id)) {
      throw new Error(
        `acknowledge at '${where}': rule id ${JSON.stringify(id)} is not a rule of the AwsSolutions, NIST.800.53.R5 or HIPAA.Security packs`,
      );
    }
  }
  // Qualified as '<pack>::<rule>', the form cdk-nag's reports print, so the audit trail names the pack.
  for (const id of ruleIds) Validations.of(scope).acknowledge({ id: `${id.split('-')[0]}::${id}`, reason });
}

/** A wildcard a policy is expected to grant, and why it is acceptable. */
export interface ExpectedWildcard {
  /** Matched against the resource or action as cdk-nag prints it, e.g. `arn:aws:s3:::<Bucket>/runs/*`. */
  readonly pattern: RegExp;
  readonly reason: string;
}

/**
 * Acknowledges AwsSolutions-IAM5 for each wildcard resource or action `policy` grants, one finding
 * at a time, and fails synthesis if the policy grants a wildcard none of `expected` explains: a new
 * broad permission must be explained, never waved through.
 */
export function acknowledgeWildcards(
  policy: iam.Policy | iam.ManagedPolicy,
  expected: readonly ExpectedWildcard[],
): void {
  const document = Stack.of(policy).resolve(policy.document.toJSON()) as
    { Statement?: { Action?: unknown; Resource?: unknown }[] } | undefined;
  const findings = new Map<string, string>();
  for (const statement of document?.Statement ?? []) {
    const wildcards = [
      ...[statement.Resource ?? []].flat().map((r) => `Resource::${renderForNag(r)}`),
      ...[statement.Action ?? []].flat().map((a) => `Action::${renderForNag(a)}`),
    ].filter((w) => w.includes('*'));
    for (const wildcard of wildcards) {
      const subject = wildcard.slice(wildcard.indexOf('::') + 2);
      const match = expected.find((e) => e.pattern.test(subject));
      if (!match) {
        throw new Error(
          `policy at '${policy.node.path}' grants wildcard ${wildcard} that no expected pattern explains; narrow it or add an ExpectedWildcard with a reason`,
        );
      }
      findings.set(wildcard, match.reason);
    }
  }
  for (const [wildcard, reason] of findings) acknowledge(policy, [`AwsSolutions-IAM5[${wildcard}]`], reason);
}

/** Prints a resolved CloudFormation value the way cdk-nag prints it inside finding ids. */
export function renderForNag(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value !== null && typeof value === 'object') {
    const object = value as Record<string, unknown>;
    if (typeof object.Ref === 'string') return `<${object.Ref}>`;
    const getAtt = object['Fn::GetAtt'];
    if (Array.isArray(getAtt)) return `<${getAtt.join('.')}>`;
    const join = object['Fn::Join'];
    if (Array.isArray(join) && typeof join[0] === 'string' && Array.isArray(join[1])) {
      return (join[1] as unknown[]).map(renderForNag).join(join[0]);
    }
  }
  return JSON.stringify(value);
}
