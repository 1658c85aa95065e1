/**
 * What one sweep does, decided from what it found: a pure function of the stacks (names, tags,
 * deploy times, status), the lifecycle parameters (overrides and warning markers) and `now`.
 * `index.ts` gathers the input and carries out the actions; this file makes no AWS call.
 *
 * The unit that expires is an experiment environment (its stacks share the `dapt:environment`
 * tag) or one run stack (`dapt:run`). Its expiry is its latest deploy (`LastUpdatedTime ??
 * CreationTime` over its stacks) plus the `dapt:ttl-hours` tag of the stack deployed last, unless
 * an `expires-at` parameter was written after that deploy: then the parameter wins, earlier or
 * later. A deploy therefore restarts the clock and supersedes an older `dapt env extend`.
 */
import { ENVIRONMENT_TAG, RUN_TAG, sweptStackPrefix, TTL_TAG } from '../../lib/config/lifecycle';
import { lifecycleParameterName, parameterRoot, platformParameterName } from '../../lib/config/parameter-names';

/** A stack as ListStacks and DescribeStacks report it. */
export interface FoundStack {
  readonly name: string;
  /** CloudFormation's StackStatus, e.g. `UPDATE_COMPLETE`, `DELETE_FAILED`. */
  readonly status: string;
  readonly statusReason?: string;
  readonly createdAt: Date;
  readonly updatedAt?: Date;
  readonly tags: Readonly<Record<string, string>>;
}

/** A lifecycle parameter (`.../expires-at` or `.../warned`) with its value and when it was written. */
export interface FoundParameter {
  readonly name: string;
  readonly value: string;
  readonly modifiedAt: Date;
}

export interface SweepInput {
  readonly prefix: string;
  /** The stage this sweeper serves: every experiment stack, or production's run stacks only. */
  readonly stage: 'experiment' | 'production';
  /** Hours before the expiry the warning goes out (`lifecycle.warningHours`). */
  readonly warningHours: number;
  /** Every stack whose name the stage may sweep, except those already DELETE_COMPLETE. */
  readonly stacks: readonly FoundStack[];
  /** Every lifecycle parameter found under `/<prefix>/`. */
  readonly parameters: readonly FoundParameter[];
  readonly now: Date;
}

/** An environment (`run` absent) or one run stack of an environment. */
export interface Unit {
  readonly envId: string;
  readonly run?: string;
  /** For messages: `experiment environment exp-alice` or `run stack dapt-prod-run-sft`. */
  readonly label: string;
}

/** What must happen before CloudFormation can delete a stack (things it did not create, or cannot stop). */
export type Preparation =
  | { readonly kind: 'none' }
  /** Inference components on the stack's endpoint that the stack does not own (`dapt serve deploy`). */
  | { readonly kind: 'remove-inference-components'; readonly endpointParameter: string }
  /** Unfinished Batch jobs: on the stack's own queues (training), or of the stack's job definitions on the environment's queues (run). */
  | { readonly kind: 'terminate-batch-jobs'; readonly queueParameters: readonly string[] }
  /** Running executions of the stack's state machines. */
  | { readonly kind: 'stop-executions' };

export type SweepAction =
  | { readonly kind: 'warn'; readonly unit: Unit; readonly expiresAt: string; readonly marker: string }
  | {
      readonly kind: 'announce-deletion';
      readonly unit: Unit;
      readonly expiresAt: string;
      readonly stacks: readonly string[];
      readonly marker: string;
    }
  | { readonly kind: 'delete-stack'; readonly unit: Unit; readonly stack: string; readonly prepare: Preparation }
  | { readonly kind: 'report-failed'; readonly unit: Unit; readonly stack: string; readonly reason: string }
  | { readonly kind: 'delete-parameters'; readonly unit: Unit; readonly names: readonly string[] };

/** When a unit expires, and why; `undefined` expiry: it has no ttl tag and no override. */
export interface Expiry {
  readonly unit: Unit;
  readonly deployedAt: Date;
  readonly ttlHours?: number;
  readonly expiresAt?: Date;
  /** The expiry comes from an `expires-at` parameter written after the latest deploy. */
  readonly overridden: boolean;
  readonly stacks: readonly FoundStack[];
}

/** The actions of one sweep, in the order to carry them out. */
export function decideSweep(input: SweepInput): SweepAction[] {
  const stacks = input.stacks.filter((s) => s.name.startsWith(sweptStackPrefix(input.prefix, input.stage)));
  const parameters = new Map(input.parameters.map((p) => [p.name, p]));
  const expiries = unitExpiries(input.prefix, stacks, parameters);
  const actions: SweepAction[] = [];
  const envExpired = new Set(
    expiries.filter((e) => e.unit.run === undefined && isExpired(e, input.now)).map((e) => e.unit.envId),
  );
  for (const expiry of expiries) {
    const marker = lifecycleParameterName(parameterRoot(input.prefix, expiry.unit.envId), 'warned', expiry.unit.run);
    const warned = parameters.get(marker)?.value;
    const runOfExpiredEnv = expiry.unit.run !== undefined && envExpired.has(expiry.unit.envId);
    if (expiry.expiresAt === undefined && !runOfExpiredEnv) continue;
    if (isExpired(expiry, input.now) && expiry.unit.run === undefined) {
      actions.push(...deleteEnvironment(input.prefix, expiry, stacks, warned, marker));
    } else if (isExpired(expiry, input.now) && !runOfExpiredEnv) {
      actions.push(...deleteWave(input.prefix, expiry, expiry.stacks, warned, marker));
    } else if (!runOfExpiredEnv && expiry.expiresAt !== undefined) {
      const warnFrom = expiry.expiresAt.getTime() - input.warningHours * HOUR_MS;
      const expiresAt = expiry.expiresAt.toISOString();
      if (input.now.getTime() >= warnFrom && warned !== expiresAt) {
        actions.push({ kind: 'warn', unit: expiry.unit, expiresAt, marker });
      }
    }
  }
  actions.push(...failedDeletions(stacks, actions));
  actions.push(...orphanedParameters(input.prefix, input.stage, stacks, input.parameters));
  return actions;
}

/** Every unit the stacks form, with its expiry (environments first, then runs, each by name). */
export function unitExpiries(
  prefix: string,
  stacks: readonly FoundStack[],
  parameters: ReadonlyMap<string, FoundParameter>,
): Expiry[] {
  const groups = new Map<string, { unit: Unit; stacks: FoundStack[] }>();
  for (const stack of stacks) {
    const unit = unitOf(stack);
    if (!unit) continue;
    const key = `${unit.envId}/${unit.run ?? ''}`;
    const group = groups.get(key) ?? { unit, stacks: [] };
    group.stacks.push(stack);
    groups.set(key, group);
  }
  const expiries = [...groups.values()].map(({ unit, stacks: members }) => expiryOf(prefix, unit, members, parameters));
  return expiries.sort(
    (a, b) =>
      Number(a.unit.run !== undefined) - Number(b.unit.run !== undefined) ||
      a.unit.envId.localeCompare(b.unit.envId) ||
      (a.unit.run ?? '').localeCompare(b.unit.run ?? ''),
  );
}

function expiryOf(
  prefix: string,
  unit: Unit,
  stacks: readonly FoundStack[],
  parameters: ReadonlyMap<string, FoundParameter>,
): Expiry {
  const deployedAtOf = (s: FoundStack): number => (s.updatedAt ?? s.createdAt).getTime();
  const latest = stacks.reduce((a, b) => (deployedAtOf(b) > deployedAtOf(a) ? b : a));
  const deployedAt = new Date(deployedAtOf(latest));
  const ttl = Number(latest.tags[TTL_TAG]);
  const ttlHours = Number.isInteger(ttl) && ttl > 0 ? ttl : undefined;
  const override = parameters.get(lifecycleParameterName(parameterRoot(prefix, unit.envId), 'expires-at', unit.run));
  const overrideAt = override ? new Date(override.value) : undefined;
  if (override && overrideAt && !Number.isNaN(overrideAt.getTime()) && override.modifiedAt > deployedAt) {
    return { unit, deployedAt, ttlHours, expiresAt: overrideAt, overridden: true, stacks };
  }
  const expiresAt = ttlHours === undefined ? undefined : new Date(deployedAt.getTime() + ttlHours * HOUR_MS);
  return { unit, deployedAt, ttlHours, expiresAt, overridden: false, stacks };
}

/** The unit a stack belongs to, from its tags; none without `dapt:environment` (not a lifecycle stack). */
function unitOf(stack: FoundStack): Unit | undefined {
  const envId = stack.tags[ENVIRONMENT_TAG];
  if (!envId) return undefined;
  const run = stack.tags[RUN_TAG];
  return run ? { envId, run, label: `run stack ${stack.name}` } : { envId, label: `experiment environment ${envId}` };
}

function isExpired(expiry: Expiry, now: Date): boolean {
  return expiry.expiresAt !== undefined && expiry.expiresAt.getTime() <= now.getTime();
}

/** An expired environment goes with its run stacks, which are deleted first. */
function deleteEnvironment(
  prefix: string,
  expiry: Expiry,
  stacks: readonly FoundStack[],
  warned: string | undefined,
  marker: string,
): SweepAction[] {
  const members = stacks.filter((s) => s.tags[ENVIRONMENT_TAG] === expiry.unit.envId);
  return deleteWave(prefix, expiry, members, warned, marker);
}

/**
 * One wave: the stacks of the lowest tier still present (runs, then the environment's dependents,
 * then the data lake, then the network) that are not already being deleted or changed. A stack of
 * a higher tier waits while any stack of a lower tier remains, so nothing is deleted before what
 * depends on it; the next sweep continues where this one stopped.
 */
function deleteWave(
  prefix: string,
  expiry: Expiry,
  members: readonly FoundStack[],
  warned: string | undefined,
  marker: string,
): SweepAction[] {
  if (members.length === 0) return [];
  const lowest = Math.min(...members.map((s) => tierOf(prefix, s)));
  const wave = members.filter((s) => tierOf(prefix, s) === lowest && isDeletable(s.status));
  const expiresAt = expiry.expiresAt!.toISOString();
  const actions: SweepAction[] = [];
  if (warned !== `${DELETING_MARKER}${expiresAt}`) {
    actions.push({
      kind: 'announce-deletion',
      unit: expiry.unit,
      expiresAt,
      stacks: members.map((s) => s.name).sort(),
      marker,
    });
  }
  for (const stack of wave) {
    actions.push({
      kind: 'delete-stack',
      unit: unitOf(stack)!,
      stack: stack.name,
      prepare: preparationOf(prefix, stack),
    });
  }
  return actions;
}

/**
 * Deletion order: 0 run stacks, 1 the experiment pipeline (its executions drive jobs, evaluations and
 * deployments in the others), 2 everything else that uses the lake and network, 3 the data lake,
 * 4 the network.
 */
export function tierOf(prefix: string, stack: FoundStack): number {
  if (stack.tags[RUN_TAG]) return 0;
  const part = partOf(prefix, stack);
  return part === 'network' ? 4 : part === 'data-lake' ? 3 : part === 'pipeline' ? 1 : 2;
}

/** `network`, `data-lake`, `serving`, ...: the stack name after `<prefix>-<envId>-`. */
function partOf(prefix: string, stack: FoundStack): string {
  return stack.name.slice(`${prefix}-${stack.tags[ENVIRONMENT_TAG]}-`.length);
}

/** A stack CloudFormation can be asked to delete now: not already deleting, not mid-change. */
function isDeletable(status: string): boolean {
  return status === 'DELETE_FAILED' || !status.endsWith('_IN_PROGRESS');
}

function preparationOf(prefix: string, stack: FoundStack): Preparation {
  const root = parameterRoot(prefix, stack.tags[ENVIRONMENT_TAG]!);
  if (stack.tags[RUN_TAG]) {
    return {
      kind: 'terminate-batch-jobs',
      queueParameters: [
        platformParameterName(root, 'trainingGpuQueueArn'),
        platformParameterName(root, 'trainingCpuQueueArn'),
      ],
    };
  }
  switch (partOf(prefix, stack)) {
    case 'serving':
      return {
        kind: 'remove-inference-components',
        endpointParameter: platformParameterName(root, 'servingEndpointName'),
      };
    case 'training':
      return { kind: 'terminate-batch-jobs', queueParameters: [] };
    case 'eval':
    case 'pipeline':
      return { kind: 'stop-executions' };
    default:
      return { kind: 'none' };
  }
}

/** Every stack in DELETE_FAILED is reported with CloudFormation's reason (and retried when its wave comes). */
function failedDeletions(stacks: readonly FoundStack[], decided: readonly SweepAction[]): SweepAction[] {
  const retried = new Set(decided.flatMap((a) => (a.kind === 'delete-stack' ? [a.stack] : [])));
  return stacks
    .filter((s) => s.status === 'DELETE_FAILED' && unitOf(s))
    .map((s) => ({
      kind: 'report-failed' as const,
      unit: unitOf(s)!,
      stack: s.name,
      reason: `${s.statusReason ?? 'no reason given'}${retried.has(s.name) ? ' (deletion retried by this sweep)' : ''}`,
    }));
}

/** Lifecycle parameters of a unit none of whose stacks remains: the last step of its deletion. */
function orphanedParameters(
  prefix: string,
  stage: 'experiment' | 'production',
  stacks: readonly FoundStack[],
  parameters: readonly FoundParameter[],
): SweepAction[] {
  const live = new Set(stacks.map((s) => `${s.tags[ENVIRONMENT_TAG]}/${s.tags[RUN_TAG] ?? ''}`));
  const liveEnvs = new Set(stacks.map((s) => s.tags[ENVIRONMENT_TAG]));
  const orphans = new Map<string, { unit: Unit; names: string[] }>();
  for (const parameter of parameters) {
    const unit = lifecycleParameterUnit(prefix, stage, parameter.name);
    if (!unit) continue;
    const key = `${unit.envId}/${unit.run ?? ''}`;
    if (live.has(key) || (unit.run === undefined && liveEnvs.has(unit.envId))) continue;
    const entry = orphans.get(key) ?? { unit, names: [] };
    entry.names.push(parameter.name);
    orphans.set(key, entry);
  }
  return [...orphans.values()].map(({ unit, names }) => ({
    kind: 'delete-parameters' as const,
    unit,
    names: names.sort(),
  }));
}

/** The unit a lifecycle parameter belongs to, or undefined for any other parameter (or another stage's). */
export function lifecycleParameterUnit(
  prefix: string,
  stage: 'experiment' | 'production',
  name: string,
): Unit | undefined {
  const escaped = prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const env = stage === 'production' ? 'prod' : 'exp-[a-z0-9-]+';
  const environment = new RegExp(`^/${escaped}/(${env})/lifecycle/(expires-at|warned)$`).exec(name);
  if (environment && stage === 'experiment') {
    return { envId: environment[1]!, label: `experiment environment ${environment[1]}` };
  }
  const run = new RegExp(`^/${escaped}/(${env})/runs/([a-z0-9-]+)/(expires-at|warned)$`).exec(name);
  if (run) return { envId: run[1]!, run: run[2]!, label: `run stack ${prefix}-${run[1]}-run-${run[2]}` };
  return undefined;
}

/** What the `warned` marker holds once a unit's deletion was announced (followed by the expiry). */
export const DELETING_MARKER = 'deleting:';
const HOUR_MS = 3_600_000;
