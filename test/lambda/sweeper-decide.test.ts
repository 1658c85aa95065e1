/** lambda/sweeper/decide.ts: what one sweep does, from crafted stacks, parameters and clocks (no AWS, no synth). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  decideSweep,
  DELETING_MARKER,
  type FoundParameter,
  type FoundStack,
  lifecycleParameterUnit,
  type SweepAction,
  type SweepInput,
} from '../../lambda/sweeper/decide';

const T0 = new Date('2026-03-01T00:00:00Z');
const hours = (h: number): Date => new Date(T0.getTime() + h * 3_600_000);

/** A stack of experiment `alice` (or of `env`), deployed at T0 with a 72 h ttl unless told otherwise. */
function envStack(part: string, over: Partial<FoundStack> & { env?: string; ttl?: string } = {}): FoundStack {
  const env = over.env ?? 'exp-alice';
  return {
    name: `dapt-${env}-${part}`,
    status: 'CREATE_COMPLETE',
    createdAt: T0,
    ...over,
    tags: { 'dapt:environment': env, 'dapt:ttl-hours': over.ttl ?? '72', experiment: env.slice(4), ...over.tags },
  };
}

function runStack(run: string, over: Partial<FoundStack> & { env?: string } = {}): FoundStack {
  const env = over.env ?? 'exp-alice';
  return {
    name: `dapt-${env}-run-${run}`,
    status: 'CREATE_COMPLETE',
    createdAt: T0,
    ...over,
    tags: { 'dapt:environment': env, 'dapt:run': run, 'dapt:ttl-hours': '24', experiment: run, ...over.tags },
  };
}

const ENV = ['network', 'data-lake', 'eval', 'training', 'serving'].map((part) => envStack(part));

function sweep(over: Partial<SweepInput>): SweepAction[] {
  return decideSweep({
    prefix: 'dapt',
    stage: 'experiment',
    warningHours: 24,
    stacks: ENV,
    parameters: [],
    now: hours(1),
    ...over,
  });
}

const kinds = (actions: readonly SweepAction[]): string[] => actions.map((a) => a.kind);
const deleted = (actions: readonly SweepAction[]): string[] =>
  actions.flatMap((a) => (a.kind === 'delete-stack' ? [a.stack] : [])).sort();
const param = (name: string, value: string, modifiedAt: Date): FoundParameter => ({ name, value, modifiedAt });

test('a fresh environment is left alone', () => {
  assert.deepEqual(sweep({ now: hours(1) }), []);
});

test('a day before the expiry it warns once, and records the expiry it warned for', () => {
  const actions = sweep({ now: hours(50) });
  assert.deepEqual(actions, [
    {
      kind: 'warn',
      unit: { envId: 'exp-alice', label: 'experiment environment exp-alice' },
      expiresAt: hours(72).toISOString(),
      marker: '/dapt/exp-alice/lifecycle/warned',
    },
  ]);
});

test('a re-run of the sweep does not warn twice for the same expiry', () => {
  const marker = param('/dapt/exp-alice/lifecycle/warned', hours(72).toISOString(), hours(50));
  assert.deepEqual(sweep({ now: hours(51), parameters: [marker] }), []);
});

test('an extend re-arms the warning: a new expiry is warned about again when its day comes', () => {
  const marker = param('/dapt/exp-alice/lifecycle/warned', hours(72).toISOString(), hours(50));
  const extended = param('/dapt/exp-alice/lifecycle/expires-at', hours(120).toISOString(), hours(60));
  assert.deepEqual(sweep({ now: hours(80), parameters: [marker, extended] }), [], 'not yet in the new window');
  const actions = sweep({ now: hours(100), parameters: [marker, extended] });
  assert.deepEqual(kinds(actions), ['warn']);
  assert.equal((actions[0] as { expiresAt: string }).expiresAt, hours(120).toISOString());
});

test('the expiry is the latest deploy of any stack plus the ttl of the stack deployed last', () => {
  const stacks = [...ENV.slice(1), envStack('network', { updatedAt: hours(30), ttl: '48' })];
  assert.deepEqual(sweep({ stacks, now: hours(50) }), [], 'not warned at 50 h: redeployed at 30 h with 48 h');
  assert.deepEqual(kinds(sweep({ stacks, now: hours(73) })), ['warn'], 'not deleted at 73 h, the first ttl');
  assert.ok(deleted(sweep({ stacks, now: hours(78) })).length > 0, 'expired at 30 + 48 h');
});

test('an override written after the latest deploy wins, earlier or later', () => {
  const later = param('/dapt/exp-alice/lifecycle/expires-at', hours(200).toISOString(), hours(10));
  assert.deepEqual(sweep({ now: hours(100), parameters: [later] }), []);
  const now = param('/dapt/exp-alice/lifecycle/expires-at', hours(5).toISOString(), hours(5));
  assert.ok(deleted(sweep({ now: hours(6), parameters: [now] })).length > 0, 'expire-now deletes at the next sweep');
});

test('an override older than the latest deploy is superseded by the deploy', () => {
  const stacks = [...ENV.slice(1), envStack('network', { updatedAt: hours(20) })];
  const old = param('/dapt/exp-alice/lifecycle/expires-at', hours(5).toISOString(), hours(4));
  assert.deepEqual(sweep({ stacks, now: hours(6), parameters: [old] }), []);
});

test('after the expiry the first wave deletes the dependents (serving, eval, training) and announces once', () => {
  const actions = sweep({ now: hours(73) });
  assert.deepEqual(deleted(actions), ['dapt-exp-alice-eval', 'dapt-exp-alice-serving', 'dapt-exp-alice-training']);
  const announce = actions.find((a) => a.kind === 'announce-deletion');
  assert.ok(announce && announce.kind === 'announce-deletion');
  assert.equal(announce.stacks.length, 5);
  const marker = param('/dapt/exp-alice/lifecycle/warned', `${DELETING_MARKER}${hours(72).toISOString()}`, hours(73));
  assert.equal(
    sweep({ now: hours(74), parameters: [marker] }).find((a) => a.kind === 'announce-deletion'),
    undefined,
  );
});

test('the data lake goes only once serving, eval and training are gone; the network last', () => {
  const lakeAndNetwork = ENV.filter((s) => /network|data-lake/.test(s.name));
  assert.deepEqual(deleted(sweep({ stacks: lakeAndNetwork, now: hours(80) })), ['dapt-exp-alice-data-lake']);
  const stillDeleting = [
    ...lakeAndNetwork,
    envStack('training', { status: 'DELETE_IN_PROGRESS', updatedAt: undefined }),
  ];
  assert.deepEqual(deleted(sweep({ stacks: stillDeleting, now: hours(80) })), [], 'training is still being deleted');
  assert.deepEqual(deleted(sweep({ stacks: [ENV[0]!], now: hours(80) })), ['dapt-exp-alice-network']);
});

test('stacks already DELETE_IN_PROGRESS are skipped, the rest of their wave proceeds', () => {
  const stacks = ENV.map((s) => (s.name.endsWith('eval') ? { ...s, status: 'DELETE_IN_PROGRESS' } : s));
  assert.deepEqual(deleted(sweep({ stacks, now: hours(73) })), ['dapt-exp-alice-serving', 'dapt-exp-alice-training']);
});

test('a stack mid-update waits for the next sweep', () => {
  const stacks = ENV.map((s) => (s.name.endsWith('serving') ? { ...s, status: 'UPDATE_IN_PROGRESS' } : s));
  assert.deepEqual(deleted(sweep({ stacks, now: hours(73) })), ['dapt-exp-alice-eval', 'dapt-exp-alice-training']);
});

test('DELETE_FAILED is reported with its reason, and retried when its wave comes', () => {
  const reason = 'Export dapt-exp-alice-network:VpcId cannot be deleted as it is in use';
  const stacks = [
    envStack('network', { status: 'DELETE_FAILED', statusReason: reason }),
    envStack('data-lake', { status: 'DELETE_FAILED', statusReason: 'bucket not empty' }),
  ];
  const actions = sweep({ stacks, now: hours(80) });
  assert.deepEqual(deleted(actions), ['dapt-exp-alice-data-lake'], 'the lake first, even after a failure');
  const reports = actions.filter((a) => a.kind === 'report-failed');
  assert.deepEqual(
    reports.map((r) => (r.kind === 'report-failed' ? [r.stack, r.reason] : [])),
    [
      ['dapt-exp-alice-network', reason],
      ['dapt-exp-alice-data-lake', 'bucket not empty (deletion retried by this sweep)'],
    ],
  );
});

test('a DELETE_FAILED stack of an unexpired environment (a failed cdk destroy) is reported too', () => {
  const stacks = [...ENV.slice(1), envStack('network', { status: 'DELETE_FAILED', statusReason: 'in use' })];
  assert.deepEqual(kinds(sweep({ stacks, now: hours(1) })), ['report-failed']);
});

test('run stacks of an expired environment go first, whatever their own ttl', () => {
  const stacks = [...ENV, runStack('sft', { tags: { 'dapt:ttl-hours': '500' } })];
  const actions = sweep({ stacks, now: hours(73) });
  assert.deepEqual(deleted(actions), ['dapt-exp-alice-run-sft']);
  const run = actions.find((a) => a.kind === 'delete-stack');
  assert.deepEqual(run && run.kind === 'delete-stack' ? run.prepare : undefined, {
    kind: 'terminate-batch-jobs',
    queueParameters: ['/dapt/exp-alice/training/gpu-queue-arn', '/dapt/exp-alice/training/cpu-queue-arn'],
  });
});

test('a run stack expires on its own ttl while its environment lives', () => {
  const stacks = [...ENV, runStack('sft')];
  assert.deepEqual(deleted(sweep({ stacks, now: hours(25) })), ['dapt-exp-alice-run-sft']);
});

test('before deletion: serving removes unowned inference components, training its jobs, eval its executions', () => {
  const actions = sweep({ now: hours(73) });
  const prepared = Object.fromEntries(
    actions.flatMap((a) => (a.kind === 'delete-stack' ? [[a.stack, a.prepare.kind]] : [])),
  );
  assert.deepEqual(prepared, {
    'dapt-exp-alice-eval': 'stop-executions',
    'dapt-exp-alice-serving': 'remove-inference-components',
    'dapt-exp-alice-training': 'terminate-batch-jobs',
  });
  const serving = actions.find((a) => a.kind === 'delete-stack' && a.stack.endsWith('serving'));
  assert.deepEqual(serving && serving.kind === 'delete-stack' && serving.prepare, {
    kind: 'remove-inference-components',
    endpointParameter: '/dapt/exp-alice/serving/endpoint-name',
  });
});

test("once an environment's last stack is gone, its lifecycle parameters are deleted", () => {
  const parameters = [
    param('/dapt/exp-alice/lifecycle/expires-at', hours(5).toISOString(), hours(5)),
    param('/dapt/exp-alice/lifecycle/warned', `${DELETING_MARKER}x`, hours(6)),
    param('/dapt/exp-bob/lifecycle/expires-at', hours(5).toISOString(), hours(5)),
  ];
  const bob = ['network', 'data-lake'].map((part) => envStack(part, { env: 'exp-bob' }));
  const actions = sweep({ stacks: bob, parameters, now: hours(2) });
  assert.deepEqual(
    actions.filter((a) => a.kind === 'delete-parameters'),
    [
      {
        kind: 'delete-parameters',
        unit: { envId: 'exp-alice', label: 'experiment environment exp-alice' },
        names: ['/dapt/exp-alice/lifecycle/expires-at', '/dapt/exp-alice/lifecycle/warned'],
      },
    ],
  );
});

test('production: only run stacks are swept; the platform stacks carry no ttl and are never candidates', () => {
  const platform = ['network', 'data-lake'].map((part) => ({
    name: `dapt-prod-${part}`,
    status: 'UPDATE_COMPLETE',
    createdAt: T0,
    tags: { experiment: 'none' },
  }));
  const run = runStack('sft', { env: 'prod' });
  const actions = decideSweep({
    prefix: 'dapt',
    stage: 'production',
    warningHours: 24,
    stacks: [...platform, run],
    parameters: [param('/dapt/prod/lifecycle/expires-at', T0.toISOString(), hours(1))],
    now: hours(25),
  });
  assert.deepEqual(deleted(actions), ['dapt-prod-run-sft']);
  assert.equal(actions.filter((a) => a.kind === 'delete-parameters').length, 0, 'never touches /dapt/prod/lifecycle');
});

test('stacks without a ttl tag (deployed before the lifecycle) never expire by themselves', () => {
  const untagged = ENV.map((s) => ({ ...s, tags: { 'dapt:environment': 'exp-alice' } }));
  assert.deepEqual(sweep({ stacks: untagged, now: hours(10_000) }), []);
});

test('lifecycle parameter names map to their unit; other parameters are not lifecycle parameters', () => {
  assert.deepEqual(lifecycleParameterUnit('dapt', 'production', '/dapt/prod/runs/sft/expires-at'), {
    envId: 'prod',
    run: 'sft',
    label: 'run stack dapt-prod-run-sft',
  });
  assert.equal(lifecycleParameterUnit('dapt', 'production', '/dapt/prod/runs/sft/job-definitions/tokenize'), undefined);
  assert.equal(lifecycleParameterUnit('dapt', 'experiment', '/dapt/prod/runs/sft/expires-at'), undefined);
  assert.equal(lifecycleParameterUnit('dapt', 'experiment', '/other/exp-a/lifecycle/warned'), undefined);
});

test('the experiment pipeline goes before the stacks it drives, its executions stopped first', () => {
  const stacks = [...ENV, envStack('pipeline')];
  const actions = sweep({ stacks, now: hours(73) });
  assert.deepEqual(deleted(actions), ['dapt-exp-alice-pipeline']);
  const pipeline = actions.find((a) => a.kind === 'delete-stack');
  assert.deepEqual(pipeline && pipeline.kind === 'delete-stack' ? pipeline.prepare : undefined, {
    kind: 'stop-executions',
  });
  const next = sweep({ stacks: ENV, now: hours(74) });
  assert.deepEqual(deleted(next), ['dapt-exp-alice-eval', 'dapt-exp-alice-serving', 'dapt-exp-alice-training']);
});
