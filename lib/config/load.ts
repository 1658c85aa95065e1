/**
 * Loads and validates the configuration of one stage, and derives what the stage decides.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { z } from 'zod';
import { environmentId, parameterRoot } from './parameter-names';
import {
  crossFieldProblems,
  ExperimentNameSchema,
  PlatformConfigSchema,
  STAGES,
  type PlatformConfig,
  type Stage,
} from './schema';

/** Where the stage files live, relative to the repository root. */
export const DEFAULT_CONFIG_DIR = path.join(__dirname, '..', '..', 'config');

/** What a stage decides, never a setting: an audited environment must not become destroyable by a typo. */
export interface StageBehaviour {
  /** Buckets, keys and log groups are deleted with the stack (experiment) or kept (production). */
  readonly destroyOnDelete: boolean;
  /** CloudFormation termination protection on every stack. */
  readonly terminationProtection: boolean;
}

/** A validated stage configuration plus the names derived from the selection. */
export interface ResolvedConfig extends PlatformConfig {
  /** The experiment name for ephemeral stages; undefined in production. */
  readonly experiment?: string;
  /** One experiment run on this environment (`-c run=NAME`): only its run stack is built. */
  readonly run?: string;
  /** Short environment id used in names: `prod`, or `exp-<experiment>`. */
  readonly envId: string;
  /** Root of every SSM parameter this environment publishes, e.g. `/dapt/prod`. */
  readonly ssmRoot: string;
  readonly behaviour: StageBehaviour;
}

/** What `-c stage=...` and `-c experiment=...` selected. */
export interface StageSelection {
  readonly stage?: string;
  readonly experiment?: string;
  /** A run on the selected environment (`-c run=NAME`): builds only that run's stack. */
  readonly run?: string;
  /** Folder of the stage files. @default DEFAULT_CONFIG_DIR */
  readonly configDir?: string;
  /** Account to use when the stage file has none (the CLI's default account). */
  readonly defaultAccount?: string;
}

/** Thrown when a configuration is invalid; `problems` lists every problem, one line each. */
export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly problems: readonly string[],
  ) {
    super(
      `Invalid configuration ${source}: ${problems.length} problem(s)\n` + problems.map((p) => `  - ${p}`).join('\n'),
    );
    this.name = 'ConfigError';
  }
}

/** Reads, validates and resolves the configuration a stage selection names. */
export function loadConfig(selection: StageSelection): ResolvedConfig {
  const stage = validateSelection(selection);
  const configDir = selection.configDir ?? DEFAULT_CONFIG_DIR;
  const file = path.join(configDir, `${stage}.json`);
  const source = path.relative(process.cwd(), file) || file;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError(source, [`cannot read or parse the file: ${(err as Error).message}`]);
  }
  const config = parseConfig(raw, source);
  if (config.stage !== stage) {
    throw new ConfigError(source, [
      `stage = ${JSON.stringify(config.stage)}: must be "${stage}", the stage the file is named for`,
    ]);
  }
  return { ...resolveConfig(config, selection.experiment, selection.defaultAccount), run: selection.run };
}

/** Validates an already-parsed object; every problem is reported together. */
export function parseConfig(raw: unknown, source: string): PlatformConfig {
  const result = PlatformConfigSchema.safeParse(raw);
  const problems = [
    ...(result.success ? [] : formatIssues(result.error.issues, raw)),
    ...crossFieldProblems(raw).map(
      (p) => `${p.path.join('.')} = ${JSON.stringify(valueAt(raw, p.path))}: ${p.message}`,
    ),
  ];
  if (!result.success || problems.length > 0) throw new ConfigError(source, problems);
  return result.data;
}

/** Adds the names and behaviour a stage implies. */
export function resolveConfig(config: PlatformConfig, experiment?: string, defaultAccount?: string): ResolvedConfig {
  const envId = environmentId(config.stage, experiment);
  return {
    ...config,
    account: config.account ?? defaultAccount,
    experiment: config.stage === 'production' ? undefined : experiment,
    envId,
    ssmRoot: parameterRoot(config.prefix, envId),
    behaviour: {
      destroyOnDelete: config.stage !== 'production',
      terminationProtection: config.stage === 'production',
    },
  };
}

function validateSelection(selection: StageSelection): Stage {
  const problems: string[] = [];
  const stage = selection.stage;
  if (stage === undefined) {
    problems.push(`stage is not set: pass -c stage=<${STAGES.join('|')}>`);
  } else if (!(STAGES as readonly string[]).includes(stage)) {
    problems.push(`stage = ${JSON.stringify(stage)}: must be one of ${STAGES.join(', ')}`);
  }
  if (stage === 'experiment') {
    if (selection.experiment === undefined) {
      problems.push('experiment is not set: the experiment stage needs -c experiment=NAME');
    } else {
      const name = ExperimentNameSchema.safeParse(selection.experiment);
      if (!name.success) problems.push(...formatIssues(name.error.issues, selection.experiment, 'experiment'));
    }
  }
  if (stage === 'production' && selection.experiment !== undefined) {
    problems.push(
      `experiment = ${JSON.stringify(selection.experiment)}: production is not an experiment; drop -c experiment`,
    );
  }
  if (selection.run !== undefined) {
    const run = ExperimentNameSchema.safeParse(selection.run);
    if (!run.success) problems.push(...formatIssues(run.error.issues, selection.run, 'run'));
  }
  if (problems.length > 0) throw new ConfigError('selection (cdk context)', problems);
  return stage as Stage;
}

/** One line per issue: `field = value: rule`. */
function formatIssues(issues: readonly z.core.$ZodIssue[], raw: unknown, rootName?: string): string[] {
  return issues.map((issue) => {
    const field = [rootName, ...issue.path.map(String)].filter((p) => p !== undefined).join('.') || '(root)';
    if (issue.code === 'unrecognized_keys') {
      const keys = issue.keys.map((k) => [field === '(root)' ? undefined : field, k].filter(Boolean).join('.'));
      return `${keys.join(', ')}: unknown key(s); check the spelling against lib/config/schema.ts`;
    }
    const value =
      rootName === undefined ? valueAt(raw, issue.path) : issue.path.length === 0 ? raw : valueAt(raw, issue.path);
    const shown = value === undefined ? '(missing)' : JSON.stringify(value);
    return `${field} = ${shown}: ${issue.message}`;
  });
}

function valueAt(raw: unknown, keys: readonly PropertyKey[]): unknown {
  let current: unknown = raw;
  for (const key of keys) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}
