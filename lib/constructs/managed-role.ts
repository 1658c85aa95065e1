import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { acknowledgeWildcards, type ExpectedWildcard } from '../compliance/acknowledge';

export interface ManagedRoleProps {
  /** Who may assume the role. */
  readonly assumedBy: iam.IPrincipal;
  /** One sentence on what the role is for; also the policy's description. */
  readonly description: string;
  /** Everything the role may do. */
  readonly statements: readonly iam.PolicyStatement[];
  /**
   * The wildcards the statements are expected to grant, each with its reason; any other wildcard
   * fails the synth.
   * @default - none: the statements must name every action and resource
   */
  readonly wildcards?: readonly ExpectedWildcard[];
}

/**
 * An IAM role whose permissions live in one customer-managed policy (no inline policies, no AWS
 * managed policies), with every wildcard it grants explained or refused.
 */
export class ManagedRole extends Construct {
  readonly role: iam.Role;
  readonly policy: iam.ManagedPolicy;

  constructor(scope: Construct, id: string, props: ManagedRoleProps) {
    super(scope, id);
    this.role = new iam.Role(this, 'Role', { assumedBy: props.assumedBy, description: props.description });
    this.policy = new iam.ManagedPolicy(this, 'Policy', {
      description: props.description,
      roles: [this.role],
      statements: [...props.statements],
    });
    acknowledgeWildcards(this.policy, props.wildcards ?? []);
  }
}
