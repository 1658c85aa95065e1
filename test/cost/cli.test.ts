/**
 * `npx dapt cost ...` through `main()` of cli/dapt.ts, with AWS clients that fail the way the
 * SDK does without credentials (a command that reached AWS would show it); `confirmSpend`,
 * the confirmation `dapt train submit` asks; and `--refresh-prices` with a fake Price List API.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { BatchClient } from '@aws-sdk/client-batch';
import { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs';
import type { GetProductsCommand, GetProductsCommandOutput } from '@aws-sdk/client-pricing';
import { S3Client } from '@aws-sdk/client-s3';
import { type CostIo, confirmSpend } from '../../cli/cost';
import { refreshInstancePrices } from '../../cli/cost-lib';
import { main } from '../../cli/dapt';
import { SsmParameterReader } from '../../cli/ssm';
import type { CliDeps, Clients } from '../../cli/train';
import { UserError } from '../../cli/train-lib';
import type { CostEstimate } from '../../lib/cost/estimate';
import { DEFAULT_PRICES_FILE, loadPriceTable } from '../../lib/cost/prices';

const ROOT = path.join(__dirname, '..', '..');
const PRICES = loadPriceTable();
const P5 = PRICES.regions['us-east-1']!.ec2OnDemandHourly['p5.48xlarge']!.usd;

function noCredentials(): never {
  throw Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' });
}

function clientsWithoutCredentials(region: string): Clients {
  const config = { region, credentials: async () => noCredentials() };
  return {
    ssm: new SsmParameterReader(config),
    batch: new BatchClient(config),
    logs: new CloudWatchLogsClient(config),
    s3: new S3Client(config),
  };
}

async function dapt(argv: string[], pricing?: CostIo['pricing']): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const deps: CliDeps & CostIo = {
    out: (l) => out.push(l),
    err: (l) => err.push(l),
    clients: clientsWithoutCredentials,
    project: 'dapt-platform',
    ...(pricing ? { pricing } : {}),
  };
  const code = await main(argv, deps);
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** A trainer config on a tiny local model (known dimensions), in a fresh folder. */
function trainerConfig(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dapt-cost-'));
  mkdirSync(path.join(dir, 'tiny'));
  writeFileSync(
    path.join(dir, 'tiny', 'config.json'),
    JSON.stringify({
      model_type: 'llama',
      hidden_size: 64,
      num_hidden_layers: 2,
      vocab_size: 1000,
      intermediate_size: 128,
      num_attention_heads: 4,
    }),
  );
  const file = path.join(dir, 'experiment.yaml');
  writeFileSync(
    file,
    [
      'experiment: costdemo',
      'stages:',
      '  - name: dapt',
      '    model: {path: tiny}',
      '    data: {seq_len: 1000, sources: [{name: kb, kind: completion, paths: ["s3://datasets/kb.jsonl"]}]}',
      '    micro_batch_size: 2',
      '    grad_accum_steps: 3',
      '    steps: 300',
      '',
    ].join('\n'),
  );
  return file;
}

test('every cost command prints its help', async () => {
  for (const command of [['cost'], ['cost', 'train'], ['cost', 'env'], ['cost', 'eval']]) {
    const result = await dapt([...command, '--help']);
    assert.equal(result.code, 0, `${command.join(' ')} --help: ${result.err}`);
    assert.match(result.out, new RegExp(`^Usage: dapt ${command.join(' ')}`));
  }
  assert.match((await dapt(['--help'])).out, /cost\s+Estimate what a training job/);
});

test('cost train: instance-hours of the config on N nodes at the table price, in JSON', async () => {
  const config = trainerConfig();
  const result = await dapt([
    'cost',
    'train',
    '--config',
    config,
    '--nodes',
    '2',
    '--tokens-per-second',
    '1000',
    '--startup-hours',
    '0.5',
    '--experiment',
    'cost',
    '--json',
  ]);
  assert.equal(result.code, 0, result.err);
  const estimate = JSON.parse(result.out) as CostEstimate & { confirmation: { thresholdUsd: number; asks: boolean } };
  // 300 steps x (1000 x 2 x 3 x 16 GPUs) = 28.8 M tokens at 1000 tokens/s x 2 nodes = 4 h: 8 instance-hours.
  assert.equal(estimate.lines[0]!.quantity, 8);
  assert.equal(estimate.lines[1]!.quantity, 1);
  assert.ok(Math.abs(estimate.totalUsd - (2 * 4 + 2 * 0.5) * P5) < 1e-9);
  assert.equal(estimate.region, 'us-east-1');
  assert.match(
    estimate.assumptions.find((a) => a.name === "stage 'dapt' model")!.origin,
    /tiny\/config\.json \(LLaMA dimensions\)/,
  );
  assert.deepEqual(
    { threshold: estimate.confirmation.thresholdUsd, asks: estimate.confirmation.asks },
    { threshold: 500, asks: false },
  );
});

test('cost train: a human table; an unpriced instance type, a bad flag and a malformed table fail clearly', async () => {
  const config = trainerConfig();
  const table = await dapt(['cost', 'train', '--config', config, '--stage', 'production']);
  assert.equal(table.code, 0, table.err);
  assert.match(table.out, /^training job 'costdemo' on 1 x p5\.48xlarge \(us-east-1\)/);
  assert.match(table.out, /stage 'dapt' \(full\): 1 x p5\.48xlarge .* \$55\.04 \?/);
  assert.match(table.out, /assumptions:\n {2}- tokens per step/);
  assert.match(table.out, /prices: the table retrieved \d{4}-\d{2}-\d{2} .*1 of 1 used unverified/);
  assert.match(
    table.out,
    /confirmation: within \$5,000\.00 \(training\.confirmSpendAboveUsd of config\/production\.json\)/,
  );

  const unpriced = await dapt(['cost', 'train', '--config', config, '--instance-type', 'p4d.24xlarge']);
  assert.equal(unpriced.code, 1);
  assert.match(
    unpriced.err,
    /no ec2OnDemandHourly price for 'p4d\.24xlarge' in us-east-1 \(the table has p5\.48xlarge/,
  );

  assert.equal((await dapt(['cost', 'train', '--config', config, '--nodes', '0'])).code, 2);
  assert.match(
    (await dapt(['cost', 'train', '--config', config, '--mfu', '2'])).err,
    /--mfu = "2": must be a fraction/,
  );

  const broken = path.join(mkdtempSync(path.join(os.tmpdir(), 'dapt-cost-')), 'prices.json');
  const raw = JSON.parse(readFileSync(DEFAULT_PRICES_FILE, 'utf8')) as {
    regions: Record<string, { ec2OnDemandHourly: Record<string, { usd: unknown }> }>;
  };
  raw.regions['us-east-1']!.ec2OnDemandHourly['p5.48xlarge']!.usd = -1;
  writeFileSync(broken, JSON.stringify(raw));
  const malformed = await dapt(['cost', 'train', '--config', config, '--prices', broken]);
  assert.equal(malformed.code, 1);
  assert.match(
    malformed.err,
    /is invalid \(1 problem\(s\)\):\n {2}- regions\.us-east-1\.ec2OnDemandHourly\.p5\.48xlarge\.usd: must be a price >= 0/,
  );
});

test('cost env: endpoints x AZs x hours, keys and the serving minimum of each stage', async () => {
  const experiment = await dapt(['cost', 'env', '--stage', 'experiment', '--experiment', 'cost', '--json']);
  assert.equal(experiment.code, 0, experiment.err);
  const estimate = JSON.parse(experiment.out) as CostEstimate;
  const line = (item: RegExp): CostEstimate['lines'][number] => estimate.lines.find((l) => item.test(l.item))!;
  assert.equal(line(/^interface VPC endpoints: 10 x 2 AZ/).quantity, 10 * 2 * 730);
  assert.equal(
    line(/^KMS keys: 7/).usd,
    7,
    "six of the environment (the experiment pipeline's included), one of the shared lifecycle stack",
  );
  assert.equal(line(/^serving endpoint: 0 x ml\.g6e\.2xlarge/).usd, 0);
  assert.equal(estimate.period, 'month');

  const production = await dapt(['cost', 'env', '--stage', 'production', '--lake-gb', '1000']);
  assert.equal(production.code, 0, production.err);
  assert.match(production.out, /^idle environment prod \(production, us-east-1\)/);
  assert.match(production.out, /interface VPC endpoints: 10 x 3 AZ\(s\) +21,900 endpoint-AZ-hours/);
  assert.match(production.out, /serving endpoint: 1 x ml\.g6e\.2xlarge \(its minimum\) +730 instance-hours/);
  assert.match(production.out, /S3 lake \(Standard\) +1,000 GB-months/);
  assert.match(production.out, /per hour: \$[\d.]+; per month: \$[\d,.]+/);
  assert.equal((await dapt(['cost', 'env'])).code, 2, '--stage is required');
});

test('cost eval: the benchmark gives items and prompt lengths; the spec gives models, judge and shards', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dapt-cost-'));
  const spec = path.join(dir, 'spec.json');
  writeFileSync(
    spec,
    JSON.stringify({
      benchmark: { name: 'quillsite-qa', version: '1.0.0' },
      models: [{ provider: 'bedrock', model_id: 'meta.llama3-1-8b-instruct-v1:0' }],
      judge: { provider: 'bedrock', model_id: 'anthropic.claude-3-5-sonnet-20240620-v1:0', allow_uncalibrated: true },
      decoding: { max_tokens: 200 },
      shard_size: 50,
    }),
  );
  const benchmark = path.join(ROOT, 'examples', 'website-builder', 'benchmarks', 'qa');
  const items = readFileSync(path.join(benchmark, 'items.jsonl'), 'utf8').trim().split('\n').length;
  const result = await dapt(['cost', 'eval', '--spec', spec, '--benchmark', benchmark, '--json']);
  assert.equal(result.code, 0, result.err);
  const estimate = JSON.parse(result.out) as CostEstimate;
  const output = estimate.lines.find((l) => l.item === 'model meta.llama3-1-8b-instruct-v1:0: output')!;
  assert.equal(output.quantity, (items * 200) / 1000);
  const judge = estimate.lines.find((l) => /^judge .*: output/.test(l.item))!;
  assert.equal(judge.quantity, (items * 256) / 1000, "one judge call per unit at the judge's max_tokens");
  assert.deepEqual(
    estimate.facts.find((f) => f.name === 'shards'),
    { name: 'shards', value: String(Math.ceil(items / 50)) },
  );

  const human = await dapt(['cost', 'eval', '--spec', spec, '--items', '1000', '--prompt-tokens', '800']);
  assert.equal(human.code, 0, human.err);
  assert.match(human.out, /^evaluation run of quillsite-qa@1\.0\.0: 1000 items x 1 model\(s\) \+ judge/);
  assert.match(human.out, /the benchmark's task is unknown: the judge is assumed to grade every unit/);

  const neither = await dapt(['cost', 'eval', '--spec', spec]);
  assert.equal(neither.code, 2);
  assert.match(neither.err, /cost eval needs --benchmark DIR .* or --items N/);
});

/** A Price List API that answers one on-demand hourly price for anything. */
function fakePricing(usd: string, calls: GetProductsCommand[] = []): CostIo['pricing'] {
  return () => ({
    send: async (command: GetProductsCommand): Promise<GetProductsCommandOutput> => {
      calls.push(command);
      const product = {
        product: { attributes: { instanceType: 'p5.48xlarge' } },
        terms: { OnDemand: { T1: { priceDimensions: { D1: { unit: 'Hrs', pricePerUnit: { USD: usd } } } } } },
      };
      return { PriceList: [JSON.stringify(product)], $metadata: {} };
    },
  });
}

test('--refresh-prices takes the Price List API figure, and says when it falls back to the bundled table', async () => {
  const calls: GetProductsCommand[] = [];
  const fresh = await dapt(
    ['cost', 'env', '--stage', 'production', '--refresh-prices'],
    fakePricing('3.5000000000', calls),
  );
  assert.equal(fresh.code, 0, fresh.err);
  assert.match(fresh.err, /refreshed from the AWS Price List API: sagemakerHostingHourly ml\.g6e\.2xlarge: \$3\.5\/h/);
  assert.match(
    fresh.out,
    /serving endpoint: 1 x ml\.g6e\.2xlarge \(its minimum\) +730 instance-hours +\$3\.50  +\$2,555\.00/,
  );
  const filters = (call: GetProductsCommand): Record<string, string | undefined> =>
    Object.fromEntries((call.input.Filters ?? []).map((f) => [f.Field, f.Value]));
  assert.equal(calls[0]!.input.ServiceCode, 'AmazonSageMaker');
  assert.deepEqual(filters(calls[0]!), { instanceType: 'ml.g6e.2xlarge-Hosting', regionCode: 'us-east-1' });

  // EC2 (what cost train refreshes), called directly: no trainer config to validate.
  const ec2Calls: GetProductsCommand[] = [];
  const ec2 = await refreshInstancePrices(
    PRICES,
    'us-east-1',
    { ec2: ['p5.48xlarge'] },
    fakePricing('42.0', ec2Calls)!(),
    '2026-12-24',
  );
  assert.deepEqual(ec2.table.regions['us-east-1']!.ec2OnDemandHourly['p5.48xlarge'], {
    usd: 42,
    verified: true,
    by: 'price-list-api',
    source:
      'AWS Price List API GetProducts AmazonEC2 (instanceType=p5.48xlarge, regionCode=us-east-1, operatingSystem=Linux, tenancy=Shared, preInstalledSw=NA, capacitystatus=Used, licenseModel=No License required), 2026-12-24',
  });
  assert.equal(
    PRICES.regions['us-east-1']!.ec2OnDemandHourly['p5.48xlarge']!.usd,
    P5,
    'the bundled table is unchanged',
  );

  const offline = await dapt(['cost', 'env', '--stage', 'production', '--refresh-prices'], () => ({
    send: async () => noCredentials(),
  }));
  assert.equal(offline.code, 0, offline.err);
  assert.match(
    offline.err,
    new RegExp(
      `--refresh-prices: no AWS credentials; fell back to the bundled price table \\(retrieved ${PRICES.retrieved}\\)`,
    ),
  );
  assert.match(offline.out, /\$2\.8026 \?/);
});

test('confirmSpend asks only above the threshold, takes --yes, and refuses without a terminal', async () => {
  const estimate = { totalUsd: 1200, title: "training job 'big'" };
  assert.equal(await confirmSpend(estimate, 5000), 'within threshold');
  assert.equal(await confirmSpend(estimate, 500, { yes: true }), 'accepted with --yes');
  const pipe = Object.assign(new PassThrough(), { isTTY: false });
  await assert.rejects(
    confirmSpend(estimate, 500, { input: pipe }),
    (err: unknown) =>
      err instanceof UserError &&
      /estimated \$1,200\.00 for training job 'big' is above the confirmation threshold of \$500\.00, and there is no terminal .*Re-run with --yes/.test(
        err.message,
      ),
  );
  const answer = async (text: string): Promise<string> => {
    const input = Object.assign(new PassThrough(), { isTTY: true });
    const output = new PassThrough();
    const asked = confirmSpend(estimate, 500, { input, output });
    input.write(text);
    return asked;
  };
  assert.equal(await answer('y\n'), 'confirmed');
  await assert.rejects(answer('n\n'), /not confirmed: nothing was submitted/);
});

test('train submit prints the cost estimate (a dry run says whether it would ask)', async () => {
  const config = trainerConfig();
  const result = await dapt(['train', 'submit', '--config', config, '--stage', 'production', '--dry-run']);
  assert.equal(result.code, 0, result.err);
  assert.match(
    result.out,
    /cost estimate: \$[\d.,]+ \([\d.]+ instance-hours at \$55\.04\/h on-demand, unverified price; itemized: npx dapt cost train --config .* --nodes 1 --stage production\)/,
  );
  assert.match(result.out, /dry run: would submit costdemo-[0-9a-f]{8}/);
});
