/**
 * The lifecycle of experiment environments and run stacks: `npx dapt env <command>` (`--help` on each).
 *
 *   dapt env expiry                      each environment / run stack, its expiry and the time left
 *   dapt env extend --hours N            expire N hours from now (at most lifecycle.maxTtlHours)
 *   dapt env expire-now                  expire now: the next sweep deletes it
 *
 * The expiry lives in no template: the sweeper computes it from the stacks' latest deploy and
 * their `dapt:ttl-hours` tag, unless `extend` or `expire-now` wrote an `expires-at` parameter after
 * that deploy (lambda/sweeper/decide.ts). Production itself never expires: there these commands
 * take `--run`.
 */
import { CloudFormationClient } from '@aws-sdk/client-cloudformation';
import { SSMClient } from '@aws-sdk/client-ssm';
import { Command } from 'commander';
import { loadConfig } from '../lib/config/load';
import {
  describeExpiry,
  type EnvClients,
  extensionProblem,
  type LifecycleSelection,
  selectedExpiries,
  writeExpiry,
} from './env-lib';
import { envId, environmentOptions } from './eval-lib';

export interface EnvIo {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
  /** @default - the regional AWS endpoints with the default credential chain */
  readonly envClients?: (region: string) => EnvClients;
  /** @default - the clock */
  readonly now?: () => Date;
}

interface EnvValues {
  stage: 'production' | 'experiment';
  experiment?: string;
  run?: string;
  region: string;
  prefix: string;
  hours?: string;
}

/** The `env` command group. */
export function envCommand(io: EnvIo): Command {
  const group = new Command('env').description(
    'Expiry of experiment environments and run stacks: show, extend, expire now (the sweeper deletes what expired)',
  );
  const common = (command: Command): Command =>
    environmentOptions(command, 'experiment').option(
      '--run <name>',
      'one run stack (-c run=NAME) instead of the whole environment; required in production',
    );
  common(group.command('expiry').description('Each environment or run stack, its expiry and how long is left')).action(
    async (values: EnvValues) => expiry(values, io),
  );
  common(group.command('extend').description('Expire N hours from now (at most lifecycle.maxTtlHours)'))
    .requiredOption('--hours <n>', 'hours from now')
    .action(async (values: EnvValues) => extend(values, io));
  common(group.command('expire-now').description('Expire now: the next sweep deletes it')).action(
    async (values: EnvValues) => expireNow(values, io),
  );
  return group;
}

function selectionOf(values: EnvValues): LifecycleSelection {
  return {
    stage: values.stage,
    ...(values.experiment ? { experiment: values.experiment } : {}),
    ...(values.run ? { run: values.run } : {}),
    prefix: values.prefix,
    region: values.region,
  };
}

function clientsOf(io: EnvIo, region: string): EnvClients {
  return (
    io.envClients?.(region) ?? { cloudformation: new CloudFormationClient({ region }), ssm: new SSMClient({ region }) }
  );
}

async function expiry(values: EnvValues, io: EnvIo): Promise<void> {
  const selection = selectionOf(values);
  const now = io.now?.() ?? new Date();
  const expiries = await selectedExpiries(clientsOf(io, selection.region), selection);
  if (expiries.length === 0) {
    io.out(`nothing deployed for this selection in ${selection.region} (no stacks with lifecycle tags)`);
    return;
  }
  const schedule = loadConfig({ stage: selection.stage, experiment: selection.experiment }).lifecycle.sweepSchedule;
  for (const e of expiries) io.out(describeExpiry(e, now, schedule));
}

async function extend(values: EnvValues, io: EnvIo): Promise<void> {
  const selection = requireTarget(values);
  const config = loadConfig({ stage: selection.stage, experiment: selection.experiment });
  const hours = Number(values.hours);
  const problem = extensionProblem(hours, config.lifecycle.maxTtlHours);
  if (problem) throw new Error(problem);
  const clients = clientsOf(io, selection.region);
  await requireDeployed(clients, selection);
  const now = io.now?.() ?? new Date();
  const expiresAt = new Date(now.getTime() + hours * HOUR_MS);
  const name = await writeExpiry(clients.ssm, selection, expiresAt);
  io.out(`${describeTarget(selection)} now expires ${expiresAt.toISOString()} (in ${hours} h; ${name})`);
  io.out(`a warning goes out ${config.lifecycle.warningHours} h before; a later deploy restarts its ttl instead`);
}

async function expireNow(values: EnvValues, io: EnvIo): Promise<void> {
  const selection = requireTarget(values);
  const config = loadConfig({ stage: selection.stage, experiment: selection.experiment });
  const clients = clientsOf(io, selection.region);
  await requireDeployed(clients, selection);
  const now = io.now?.() ?? new Date();
  const name = await writeExpiry(clients.ssm, selection, now);
  io.out(`${describeTarget(selection)} expired at ${now.toISOString()} (${name})`);
  io.out(
    `the next sweep (${config.lifecycle.sweepSchedule}) deletes it, run stacks first, then serving/eval/training, the data lake, the network`,
  );
}

/** Production's platform never expires: only a run stack may be extended or expired there. */
function requireTarget(values: EnvValues): LifecycleSelection {
  const selection = selectionOf(values);
  if (selection.stage === 'production' && selection.run === undefined) {
    throw new Error('production itself never expires; name a run stack with --run NAME');
  }
  return selection;
}

async function requireDeployed(clients: EnvClients, selection: LifecycleSelection): Promise<void> {
  const expiries = await selectedExpiries(clients, selection);
  const target = expiries.find((e) => e.unit.run === selection.run);
  if (!target) {
    throw new Error(`${describeTarget(selection)} is not deployed in ${selection.region}: nothing to extend or expire`);
  }
}

function describeTarget(selection: LifecycleSelection): string {
  const env = envId(selection);
  return selection.run ? `run stack ${selection.prefix}-${env}-run-${selection.run}` : `experiment environment ${env}`;
}

const HOUR_MS = 3_600_000;
