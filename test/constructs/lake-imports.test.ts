import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Template } from 'aws-cdk-lib/assertions';
import { LakeImports } from '../../lib/constructs/lake-imports';
import { CONFIG, newStack } from './fixtures';

test('LakeImports reads only the zones asked for, each once, through SSM', () => {
  const stack = newStack();
  const lake = new LakeImports(stack, CONFIG.ssmRoot);
  lake.zones('datasets', 'models');
  lake.bucket('models');
  const parameters = Template.fromStack(stack).toJSON().Parameters as Record<string, { Type: string; Default: string }>;
  const read = Object.values(parameters)
    .filter((p) => p.Type.startsWith('AWS::SSM::Parameter::Value'))
    .map((p) => p.Default)
    .filter((name) => name.startsWith(CONFIG.ssmRoot))
    .sort();
  assert.deepEqual(read, [`${CONFIG.ssmRoot}/datalake/buckets/datasets`, `${CONFIG.ssmRoot}/datalake/buckets/models`]);
});
