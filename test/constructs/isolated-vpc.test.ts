import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { INTERFACE_ENDPOINTS } from '../../lib/constructs/isolated-vpc';
import { CONFIG, newStack, resources, scaffold } from './fixtures';

const template = Template.fromStack(scaffold().stack);

test('IsolatedVpc has no way to the internet: no internet or NAT gateway, no public subnet', () => {
  assert.deepEqual(resources(template, 'AWS::EC2::InternetGateway'), {});
  assert.deepEqual(resources(template, 'AWS::EC2::NatGateway'), {});
  for (const subnet of Object.values(resources(template, 'AWS::EC2::Subnet'))) {
    assert.equal(subnet.Properties.MapPublicIpOnLaunch, false);
  }
  assert.deepEqual(resources(template, 'AWS::EC2::Route'), {}, 'isolated subnets have no routes beyond the local one');
});

test('IsolatedVpc keeps the logical ids a VPC created directly in the stack would have', () => {
  const plain = newStack();
  new ec2.Vpc(plain, 'Vpc', { maxAzs: CONFIG.network.maxAzs });
  const plainVpcIds = Object.keys(resources(Template.fromStack(plain), 'AWS::EC2::VPC'));
  assert.deepEqual(Object.keys(resources(template, 'AWS::EC2::VPC')), plainVpcIds);
  const subnetIds = Object.keys(resources(template, 'AWS::EC2::Subnet'));
  assert.ok(subnetIds.includes('VpctrainingSubnet1Subnet3203580F'), `subnet ids: ${subnetIds.join(', ')}`);
});

test('IsolatedVpc names its resources by the construct path, without the hidden Default step', () => {
  for (const type of ['AWS::EC2::VPC', 'AWS::EC2::Subnet', 'AWS::EC2::RouteTable', 'AWS::EC2::FlowLog']) {
    for (const resource of Object.values(resources(template, type))) {
      const name = (resource.Properties.Tags as { Key: string; Value: string }[]).find((t) => t.Key === 'Name');
      assert.ok(name && !name.Value.includes('/Default'), `${type} Name tag ${name?.Value}`);
    }
  }
});

test("IsolatedVpc's interface endpoints admit only this account's principals", () => {
  const endpoints = Object.values(resources(template, 'AWS::EC2::VPCEndpoint')).filter(
    (e) => e.Properties.VpcEndpointType === 'Interface',
  );
  assert.equal(endpoints.length, Object.keys(INTERFACE_ENDPOINTS).length);
  for (const endpoint of endpoints) {
    const statement = (endpoint.Properties.PolicyDocument as { Statement: { Condition: unknown }[] }).Statement[0]!;
    assert.deepEqual(
      (statement.Condition as { StringEquals: Record<string, unknown> }).StringEquals['aws:PrincipalAccount'],
      {
        Ref: 'AWS::AccountId',
      },
    );
    assert.equal(endpoint.Properties.PrivateDnsEnabled, true);
  }
});

test('IsolatedVpc logs every flow, accepted and rejected', () => {
  const flowLogs = Object.values(resources(template, 'AWS::EC2::FlowLog'));
  assert.equal(flowLogs.length, 1);
  assert.equal(flowLogs[0]!.Properties.TrafficType, 'ALL');
});
