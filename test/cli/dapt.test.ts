/**
 * `npx dapt`: one entry point whose help and dry runs need no AWS credentials. The AWS clients
 * given here fail every call the way the SDK does when it finds no credentials, so a command
 * that reached AWS would show it.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { test } from 'node:test';
import { BatchClient } from '@aws-sdk/client-batch';
import { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs';
import { S3Client } from '@aws-sdk/client-s3';
import { main } from '../../cli/dapt';
import { SsmParameterReader } from '../../cli/ssm';
import type { Clients } from '../../cli/train';
import { fakeModel, tempDir, TINY, writeConfig } from './helpers';

const ROOT = path.join(__dirname, '..', '..');

function noCredentials(): never {
  throw Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' });
}

/** Real SDK clients whose credential provider finds nothing, as on a machine without AWS set up. */
function clientsWithoutCredentials(region: string): Clients {
  const config = { region, credentials: async () => noCredentials() };
  return {
    ssm: new SsmParameterReader(config),
    batch: new BatchClient(config),
    logs: new CloudWatchLogsClient(config),
    s3: new S3Client(config),
  };
}

async function dapt(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(argv, {
    out: (l) => out.push(l),
    err: (l) => err.push(l),
    clients: clientsWithoutCredentials,
    project: 'dapt-platform',
  });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

test('every command prints its help without AWS credentials', async () => {
  const commands = [
    [],
    ['train'],
    ['eval'],
    ['serve'],
    ...['submit', 'tokenize', 'status', 'logs', 'watch', 'cancel'].map((c) => ['train', c]),
    ...['start', 'status', 'report'].map((c) => ['eval', c]),
    ...['register', 'deploy', 'status', 'undeploy', 'invoke'].map((c) => ['serve', c]),
  ];
  for (const command of commands) {
    const result = await dapt(...command, '--help');
    assert.equal(result.code, 0, `${command.join(' ')} --help: ${result.err}`);
    assert.match(
      result.out,
      new RegExp(`^Usage: dapt${command.length ? ` ${command.join(' ')}` : ''}`),
      command.join(' '),
    );
  }
});

test('train submit --dry-run works without credentials, describing the stack from its config', async () => {
  const dir = tempDir();
  const config = writeConfig(dir, 'dry.yaml', { experiment: 'dryrun', model: fakeModel(dir, 'tiny', TINY) });
  const result = await dapt('train', 'submit', '--config', config, '--stage', 'production', '--dry-run');
  assert.equal(result.code, 0, result.err);
  assert.match(result.err, /no AWS credentials; the dry run describes the stack from config\/production\.json/);
  assert.match(result.out, /dry run: would submit dryrun-[0-9a-f]{8}/);
  assert.match(result.out, /"jobDefinition": "dapt-prod-run-dryrun-train-single-node"/);
  // Without --dry-run the same command needs the stack, and says so.
  const real = await dapt('train', 'submit', '--config', config, '--stage', 'production');
  assert.equal(real.code, 1);
  assert.match(real.err, /Could not load credentials/);
});

test('bad arguments exit with 2 and point at the help', async () => {
  for (const argv of [
    ['fly'],
    ['train', 'submit'],
    ['train', 'submit', '--config', 'x.yaml', '--stage', 'staging'],
    ['eval', 'start'],
  ]) {
    const result = await dapt(...argv);
    assert.equal(result.code, 2, `${argv.join(' ')}: ${result.err}`);
    assert.match(result.err, /add --help for usage|error:/);
  }
});

test("npx dapt runs the same program from package.json's bin", () => {
  const result = spawnSync('npx', ['--no-install', 'dapt', 'eval', '--help'], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, AWS_EC2_METADATA_DISABLED: 'true' },
  });
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stdout, /Usage: dapt eval/);
});
