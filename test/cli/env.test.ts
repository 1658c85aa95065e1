/** dapt env expiry|extend|expire-now against moto in server mode (CloudFormation stacks with lifecycle tags, SSM). */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { CloudFormationClient, CreateStackCommand } from '@aws-sdk/client-cloudformation';
import { GetParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { envCommand, type EnvIo } from '../../cli/env';
import { formatDuration } from '../../cli/env-lib';
import { type Moto, startMoto } from '../lambda/helpers';

let moto: Moto;
let cloudformation: CloudFormationClient;
let ssm: SSMClient;
before(async () => {
  moto = await startMoto();
  cloudformation = new CloudFormationClient({ ...moto.clientConfig, maxAttempts: 1 });
  ssm = new SSMClient(moto.clientConfig);
  for (const part of ['network', 'data-lake']) await createStack(`dapt-exp-alice-${part}`, 'exp-alice', '72');
  await createStack('dapt-exp-alice-run-sft', 'exp-alice', '24', 'sft');
  await createStack('dapt-prod-run-dapt7b', 'prod', '168', 'dapt7b');
});
after(async () => {
  await moto?.stop();
});

async function createStack(name: string, environment: string, ttl: string, run?: string): Promise<void> {
  await cloudformation.send(
    new CreateStackCommand({
      StackName: name,
      TemplateBody: JSON.stringify({
        Resources: { Marker: { Type: 'AWS::CloudFormation::WaitConditionHandle' } },
      }),
      Tags: [
        { Key: 'dapt:environment', Value: environment },
        { Key: 'dapt:ttl-hours', Value: ttl },
        ...(run ? [{ Key: 'dapt:run', Value: run }] : []),
      ],
    }),
  );
}

/** Runs `dapt env <argv>` against moto, `hoursLater` after now; resolves to its output lines. */
async function env(argv: string[], hoursLater = 1): Promise<string[]> {
  const lines: string[] = [];
  const io: EnvIo = {
    out: (l) => lines.push(l),
    err: (l) => lines.push(l),
    envClients: () => ({ cloudformation, ssm }),
    now: () => new Date(Date.now() + hoursLater * 3_600_000),
  };
  await envCommand(io)
    .exitOverride()
    .parseAsync([...argv], { from: 'user' });
  return lines;
}

test('expiry prints the environment and its run stacks with their expiry and the time left', async () => {
  const lines = await env(['expiry', '--experiment', 'alice']);
  assert.equal(lines.length, 2);
  assert.match(lines[0]!, /^experiment environment exp-alice \(2 stack\(s\)\): expires .* \+ 72 h\), in 2 d 2[23] h$/);
  assert.match(lines[1]!, /^run stack dapt-exp-alice-run-sft \(1 stack\(s\)\): expires .* \+ 24 h\), in 22 h 5\d min$/);
});

test('extend writes the override; expiry then shows it', async () => {
  const lines = await env(['extend', '--experiment', 'alice', '--hours', '200'], 0);
  assert.match(
    lines[0]!,
    /^experiment environment exp-alice now expires .* \(in 200 h; \/dapt\/exp-alice\/lifecycle\/expires-at\)$/,
  );
  const written = await ssm.send(new GetParameterCommand({ Name: '/dapt/exp-alice/lifecycle/expires-at' }));
  assert.ok(Math.abs(new Date(written.Parameter!.Value!).getTime() - Date.now() - 200 * 3_600_000) < 60_000);
  const [shown] = await env(['expiry', '--experiment', 'alice'], 0);
  assert.match(shown!, /\(set by dapt env\), in (8 d 7 h|8 d 8 h)$/);
});

test('extend beyond maxTtlHours is refused, naming the limit', async () => {
  await assert.rejects(
    env(['extend', '--experiment', 'alice', '--hours', '1000']),
    /--hours = 1000: must be at most lifecycle\.maxTtlHours \(336 hours from now\)/,
  );
});

test('expire-now writes the override = now and says the next sweep deletes it', async () => {
  const lines = await env(['expire-now', '--experiment', 'alice', '--run', 'sft'], 0);
  assert.match(lines[0]!, /^run stack dapt-exp-alice-run-sft expired at /);
  assert.match(lines[1]!, /^the next sweep \(rate\(1 hour\)\) deletes it/);
  const shown = await env(['expiry', '--experiment', 'alice', '--run', 'sft'], 1);
  assert.match(shown[0]!, /expired 1 h 0 min ago: the next sweep \(rate\(1 hour\)\) deletes it$/);
});

test('production itself never expires: extend and expire-now need --run there', async () => {
  await assert.rejects(env(['expire-now', '--stage', 'production']), /production itself never expires/);
  const lines = await env(['expiry', '--stage', 'production']);
  assert.deepEqual(lines.length, 1);
  assert.match(lines[0]!, /^run stack dapt-prod-run-dapt7b .* \+ 168 h\)/);
  const extended = await env(['extend', '--stage', 'production', '--run', 'dapt7b', '--hours', '24'], 0);
  assert.match(extended[0]!, /\/dapt\/prod\/runs\/dapt7b\/expires-at/);
});

test('an environment that is not deployed cannot be extended', async () => {
  await assert.rejects(
    env(['extend', '--experiment', 'bob', '--hours', '5']),
    /experiment environment exp-bob is not deployed/,
  );
});

test('durations read as days and hours, hours and minutes, or minutes', () => {
  assert.equal(formatDuration(50 * 3_600_000), '2 d 2 h');
  assert.equal(formatDuration(90 * 60_000), '1 h 30 min');
  assert.equal(formatDuration(40 * 60_000), '40 min');
});
