/**
 * What a trainer job and whoever runs it agree on: the environment variables the trainer reads
 * and the exit codes it returns. One file, `dapt_trainer/job_contract.json`, read here (stacks,
 * CLI) and by the trainer itself.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';

export const JOB_CONTRACT_FILE = path.join(
  __dirname,
  '..',
  '..',
  'containers',
  'trainer',
  'src',
  'dapt_trainer',
  'job_contract.json',
);

export const JOB_CONTRACT = JSON.parse(readFileSync(JOB_CONTRACT_FILE, 'utf8')) as {
  readonly environment: { readonly config: string; readonly output: string };
  readonly exitCodes: { readonly configError: number; readonly interrupted: number };
};

/** The environment of a submitted trainer job: where its config is and where it writes. */
export function trainerJobEnvironment(configUri: string, outputUri: string): Record<string, string> {
  return { [JOB_CONTRACT.environment.config]: configUri, [JOB_CONTRACT.environment.output]: outputUri };
}
