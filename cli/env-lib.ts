/**
 * The pure and AWS-facing parts of `dapt env` (cli/env.ts): which stacks and expiries a selection
 * names, and writing the `expires-at` override the sweeper reads (lambda/sweeper/decide.ts).
 */
import type { CloudFormationClient } from '@aws-sdk/client-cloudformation';
import { PutParameterCommand, type SSMClient } from '@aws-sdk/client-ssm';
import { type Expiry, unitExpiries } from '../lambda/sweeper/decide';
import { findParameters, findStacks } from '../lambda/sweeper/find';
import { sweptStackPrefix } from '../lib/config/lifecycle';
import { lifecycleParameterName, parameterRoot } from '../lib/config/parameter-names';
import { type Environment, envId } from './eval-lib';

/** The clients `dapt env` uses (tests: moto). */
export interface EnvClients {
  readonly cloudformation: CloudFormationClient;
  readonly ssm: SSMClient;
}

/** A selection plus, optionally, one run stack on it. */
export interface LifecycleSelection extends Environment {
  readonly run?: string;
}

/** The expiries of the environments and run stacks the selection names (an experiment: its environment and runs). */
export async function selectedExpiries(clients: EnvClients, selection: LifecycleSelection): Promise<Expiry[]> {
  const id = envId(selection);
  const stacks = await findStacks(clients.cloudformation, sweptStackPrefix(selection.prefix, selection.stage));
  const parameters = new Map(
    (await findParameters(clients.ssm, selection.prefix, selection.stage)).map((p) => [p.name, p]),
  );
  return unitExpiries(selection.prefix, stacks, parameters).filter(
    (e) =>
      e.unit.envId === id &&
      (selection.run === undefined
        ? selection.stage === 'experiment' || e.unit.run !== undefined
        : e.unit.run === selection.run),
  );
}

/** One line per unit: its expiry and how long is left, or why it has none. */
export function describeExpiry(expiry: Expiry, now: Date, schedule?: string): string {
  const stacks = `${expiry.stacks.length} stack(s)`;
  if (!expiry.expiresAt)
    return `${expiry.unit.label} (${stacks}): no ttl tag (deployed before the lifecycle); redeploy to set one`;
  const source = expiry.overridden
    ? 'set by dapt env'
    : `deployed ${expiry.deployedAt.toISOString()} + ${expiry.ttlHours} h`;
  const left = expiry.expiresAt.getTime() - now.getTime();
  const when =
    left > 0
      ? `in ${formatDuration(left)}`
      : `expired ${formatDuration(-left)} ago: the next sweep${schedule ? ` (${schedule})` : ''} deletes it`;
  return `${expiry.unit.label} (${stacks}): expires ${expiry.expiresAt.toISOString()} (${source}), ${when}`;
}

/** `2 d 3 h`, `5 h 12 min`, `40 min`. */
export function formatDuration(ms: number): string {
  const minutes = Math.floor(ms / 60_000);
  const days = Math.floor(minutes / 1440);
  const hours = Math.floor((minutes % 1440) / 60);
  if (days > 0) return `${days} d ${hours} h`;
  if (hours > 0) return `${hours} h ${minutes % 60} min`;
  return `${minutes} min`;
}

/** Why `extend --hours` is refused, or undefined: a whole number of hours from now, at most `maxTtlHours`. */
export function extensionProblem(hours: number, maxTtlHours: number): string | undefined {
  if (!Number.isInteger(hours) || hours < 1) return `--hours = ${hours}: must be a whole number of hours, at least 1`;
  if (hours > maxTtlHours) {
    return `--hours = ${hours}: must be at most lifecycle.maxTtlHours (${maxTtlHours} hours from now) of the stage config; a longer-lived experiment needs a config change, reviewed like any other`;
  }
  return undefined;
}

/** Writes the override the sweeper prefers to the ttl (it is newer than the latest deploy). */
export async function writeExpiry(ssm: SSMClient, selection: LifecycleSelection, expiresAt: Date): Promise<string> {
  const name = lifecycleParameterName(parameterRoot(selection.prefix, envId(selection)), 'expires-at', selection.run);
  await ssm.send(
    new PutParameterCommand({
      Name: name,
      Value: expiresAt.toISOString(),
      Type: 'String',
      Overwrite: true,
      Description: 'Expiry set by dapt env extend|expire-now; a later deploy supersedes it',
    }),
  );
  return name;
}
