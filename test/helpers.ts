import { mkdtempSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Template } from 'aws-cdk-lib/assertions';
import { buildPlatform, createApp, type Platform } from '../lib/app';

export const PRODUCTION = { stage: 'production' } as const;
export const EXPERIMENT = { stage: 'experiment', experiment: 'unit' } as const;

/** Builds an environment into a fresh app, without the cdk-nag packs: they add no resources, and test/compliance.test.ts runs them on every environment. */
export function platformFor(selection: { stage: string; experiment?: string }): Platform {
  const app = createApp({ outdir: mkdtempSync(path.join(os.tmpdir(), 'dapt-test-')) });
  return buildPlatform(app, selection, { complianceChecks: false });
}

export interface Templates {
  readonly platform: Platform;
  readonly network: Template;
  readonly dataLake: Template;
  readonly evaluation: Template;
  readonly training: Template;
  readonly audit?: Template;
}

const cache = new Map<string, Templates>();

/** Templates of every stack of an environment, synthesized once per test file. */
export function templatesFor(selection: { stage: string; experiment?: string }): Templates {
  const key = JSON.stringify(selection);
  let templates = cache.get(key);
  if (!templates) {
    const platform = platformFor(selection);
    templates = {
      platform,
      network: Template.fromStack(platform.network),
      dataLake: Template.fromStack(platform.dataLake),
      evaluation: Template.fromStack(platform.evaluation),
      training: Template.fromStack(platform.training),
      audit: platform.audit ? Template.fromStack(platform.audit) : undefined,
    };
    cache.set(key, templates);
  }
  return templates;
}
