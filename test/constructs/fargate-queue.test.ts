import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Template } from 'aws-cdk-lib/assertions';
import { FargateQueue } from '../../lib/constructs/fargate-queue';
import { CONFIG, only, resources, scaffold } from './fixtures';

function fargateTemplate(): Template {
  const { stack, vpc } = scaffold();
  new FargateQueue(stack, 'CpuCompute', {
    namePrefix: 'dapt-test',
    vpc,
    vpcCidr: CONFIG.network.cidr,
    s3PrefixListId: 'pl-63a5400a',
    maxvCpus: 64,
  });
  return Template.fromStack(stack);
}
const template = fargateTemplate();

test("FargateQueue's tasks reach only HTTPS inside the VPC and S3's prefix list", () => {
  const group = Object.entries(resources(template, 'AWS::EC2::SecurityGroup')).find(([id]) =>
    id.startsWith('CpuCompute'),
  )!;
  const inline = (group[1].Properties.SecurityGroupEgress as Record<string, unknown>[] | undefined) ?? [];
  const separate = Object.values(resources(template, 'AWS::EC2::SecurityGroupEgress'))
    .filter((r) => JSON.stringify(r.Properties.GroupId).includes(group[0]))
    .map((r) => r.Properties);
  const rules = [...inline, ...separate].map((r) => [
    r.CidrIp ?? r.DestinationPrefixListId,
    r.IpProtocol,
    r.FromPort,
    r.ToPort,
  ]);
  assert.deepEqual(
    rules.sort(),
    [
      [CONFIG.network.cidr, 'tcp', 443, 443],
      ['pl-63a5400a', 'tcp', 443, 443],
    ].sort(),
  );
});

test('FargateQueue is named <prefix>-cpu and capped at maxvCpus', () => {
  assert.equal(only(template, 'AWS::Batch::JobQueue').JobQueueName, 'dapt-test-cpu');
  const environment = only(template, 'AWS::Batch::ComputeEnvironment').ComputeResources as Record<string, unknown>;
  assert.equal(environment.Type, 'FARGATE');
  assert.equal(environment.MaxvCpus, 64);
});
