/**
 * The bundled price table: valid, dated and sourced, covering every instance type and model the
 * stage configs may use; a malformed table or a missing price fails naming what is wrong.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { DEFAULT_CONFIG_DIR } from '../../lib/config/load';
import { TRAINING_INSTANCE_TYPES } from '../../lib/config/schema';
import {
  bedrockPrices,
  DEFAULT_PRICES_FILE,
  instancePrice,
  loadPriceTable,
  parsePriceTable,
  PriceTableError,
} from '../../lib/cost/prices';

const raw = (): Record<string, unknown> =>
  JSON.parse(readFileSync(DEFAULT_PRICES_FILE, 'utf8')) as Record<string, unknown>;

function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof PriceTableError, `expected a PriceTableError, got ${String(err)}`);
    return err.message;
  }
  assert.fail('expected a PriceTableError');
}

test('the bundled table is valid, dated and says where its figures come from', () => {
  const table = loadPriceTable();
  assert.match(table.retrieved, /^\d{4}-\d{2}-\d{2}$/);
  assert.match(table.source, /Price List API/);
  assert.equal(table.hoursPerMonth, 730);
  for (const [region, prices] of Object.entries(table.regions))
    for (const [section, items] of Object.entries(prices))
      for (const [name, value] of Object.entries(items as Record<string, unknown>)) {
        const leaves = 'usd' in (value as object) ? [value] : Object.values(value as Record<string, unknown>);
        for (const price of leaves as { verified: boolean; by: string; source: string; note?: string }[]) {
          const where = `${region} ${section} ${name}`;
          assert.ok(price.source.length > 0, where);
          if (!price.verified) assert.ok(price.note, `${where}: unverified without a note`);
          if (price.verified) assert.notEqual(price.by, 'none', where);
        }
      }
});

test('every instance type and Bedrock model the stage configs may use has a price in their regions', () => {
  const table = loadPriceTable();
  for (const file of readdirSync(DEFAULT_CONFIG_DIR).filter((f) => f.endsWith('.json'))) {
    const config = JSON.parse(readFileSync(path.join(DEFAULT_CONFIG_DIR, file), 'utf8')) as {
      region: string;
      eval: { bedrockModelIds: string[] };
      serving?: { instanceType: string };
    };
    for (const type of TRAINING_INSTANCE_TYPES) instancePrice(table, config.region, 'ec2OnDemandHourly', type);
    if (config.serving) instancePrice(table, config.region, 'sagemakerHostingHourly', config.serving.instanceType);
    for (const model of config.eval.bedrockModelIds) bedrockPrices(table, config.region, model);
  }
  // The other P5 regions a stage may name.
  for (const region of ['us-east-2', 'us-west-2']) instancePrice(table, region, 'ec2OnDemandHourly', 'p5.48xlarge');
});

test('a malformed table fails naming every field that is wrong', () => {
  const table = raw() as { regions: Record<string, Record<string, Record<string, unknown>>>; retrieved: unknown };
  const east = table.regions['us-east-1']!;
  (east.kms as Record<string, unknown>).keyMonth = { usd: 'one dollar', verified: true, by: 'aws', source: 'x' };
  (east.s3 as Record<string, unknown>).standardGbMonth = { usd: 0.023, verified: false, by: 'none', source: 'guess' };
  (east.ec2OnDemandHourly as Record<string, unknown>)['P5 large'] = { usd: 1, verified: true, by: 'aws', source: 'x' };
  table.retrieved = 'last week';
  const message = errorOf(() => parsePriceTable(table, 'prices.json'));
  assert.match(message, /price table prices\.json is invalid \(4 problem\(s\)\)/);
  assert.match(message, /regions\.us-east-1\.kms\.keyMonth\.usd: /);
  assert.match(message, /regions\.us-east-1\.s3\.standardGbMonth\.note: an unverified price needs a note/);
  assert.match(message, /regions\.us-east-1\.ec2OnDemandHourly\.P5 large: must be an EC2 instance type/);
  assert.match(message, /retrieved: must be a date YYYY-MM-DD/);
});

test('a file that is not JSON says so', () => {
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'dapt-prices-')), 'prices.json');
  writeFileSync(file, '{"currency": "USD",');
  assert.match(
    errorOf(() => loadPriceTable(file)),
    /prices\.json: cannot read or parse it/,
  );
});

test('a price the table lacks is an error naming the item and what the table has', () => {
  const table = loadPriceTable();
  assert.match(
    errorOf(() => instancePrice(table, 'us-east-1', 'ec2OnDemandHourly', 'p4d.24xlarge')),
    /no ec2OnDemandHourly price for 'p4d\.24xlarge' in us-east-1 \(the table has p5\.48xlarge, .*\); add it to lib\/cost\/prices\.json/,
  );
  assert.match(
    errorOf(() => instancePrice(table, 'eu-west-1', 'ec2OnDemandHourly', 'p5.48xlarge')),
    /no prices for region eu-west-1 in the price table \(it has us-east-1, us-east-2, us-west-2\)/,
  );
  assert.match(
    errorOf(() => bedrockPrices(table, 'us-east-1', 'amazon.nova-pro-v1:0')),
    /no Bedrock price for model 'amazon\.nova-pro-v1:0' in us-east-1 \(the table has anthropic\.claude-3-5-sonnet/,
  );
});
