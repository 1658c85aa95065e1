/**
 * The names the lifecycle of experiments shares between the app (which tags stacks), the sweeper
 * Lambda (which reads the tags) and `dapt env` (which reads them too), with no CDK dependency.
 *
 * An experiment environment's stacks and every run stack carry static stack tags: how long they
 * live after their latest deploy (`dapt:ttl-hours`), which environment they belong to and, for a
 * run stack, which run. The expiry itself is never in a template (a clock there would change
 * every resource on every deploy): the sweeper computes it from the stacks' deploy times.
 */
import type { LifecycleConfig } from './schema';

/** Stack tag: hours the stack lives after its latest deploy (`-c ttl=HOURS`). */
export const TTL_TAG = 'dapt:ttl-hours';
/** Stack tag: the environment id the stack belongs to (`exp-<name>`, or `prod` for run stacks). */
export const ENVIRONMENT_TAG = 'dapt:environment';
/** Stack tag of run stacks only: the run's name. */
export const RUN_TAG = 'dapt:run';

/** The sweeper's stack of one account and region: `<prefix>-experiments-lifecycle` or `<prefix>-prod-lifecycle`. */
export function lifecycleStackName(prefix: string, stage: 'experiment' | 'production'): string {
  return stage === 'production' ? `${prefix}-prod-lifecycle` : `${prefix}-experiments-lifecycle`;
}

/** The stack names a stage's sweeper may delete: every experiment stack, or production's run stacks only. */
export function sweptStackPrefix(prefix: string, stage: 'experiment' | 'production'): string {
  return stage === 'production' ? `${prefix}-prod-run-` : `${prefix}-exp-`;
}

/**
 * The ttl of a deploy: `-c ttl=HOURS`, else `lifecycle.defaultTtlHours`. Returns the problem
 * instead when the value is not a whole number of hours or exceeds `lifecycle.maxTtlHours`.
 */
export function resolveTtlHours(
  lifecycle: Pick<LifecycleConfig, 'defaultTtlHours' | 'maxTtlHours'>,
  requested: string | number | undefined,
): { hours: number } | { problem: string } {
  if (requested === undefined || requested === '') return { hours: lifecycle.defaultTtlHours };
  const hours = Number(requested);
  if (!Number.isInteger(hours) || hours < 1) {
    return { problem: `ttl = ${JSON.stringify(requested)}: must be a whole number of hours, at least 1` };
  }
  if (hours > lifecycle.maxTtlHours) {
    return {
      problem: `ttl = ${hours}: must be at most lifecycle.maxTtlHours (${lifecycle.maxTtlHours} hours); extend later with dapt env extend instead`,
    };
  }
  return { hours };
}
