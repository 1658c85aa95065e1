import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import type { TrainingConfig } from '../../lib/config/schema';
import { GpuCompute, gpuSubnet } from '../../lib/constructs/gpu-compute';
import { ECS_STOP_TIMEOUT_SECONDS, TORCHRUN_SHUTDOWN_TIMEOUT_SECONDS } from '../../lib/constructs/scratch-user-data';
import { P5_NODE } from '../../lib/constructs/trainer-jobs';
import { CONFIG, newStack, only, scaffold } from './fixtures';

function gpuTemplate(training: Partial<TrainingConfig> = {}): Template {
  const { stack, vpc, key } = scaffold();
  const efaSecurityGroup = new ec2.SecurityGroup(stack, 'Efa', { vpc });
  new GpuCompute(stack, 'GpuCompute', {
    training: { ...CONFIG.training, ...training },
    namePrefix: 'dapt-test',
    vpc,
    efaSecurityGroup,
    volumeKey: key,
  });
  return Template.fromStack(stack);
}

const computeResources = (template: Template): Record<string, unknown> =>
  only(template, 'AWS::Batch::ComputeEnvironment').ComputeResources as Record<string, unknown>;

test("GpuCompute's launch template gives a stopped job's checkpoint the Spot window, not the ECS agent's default 30 s", () => {
  // GIVEN the launch template's user data (run before the ECS agent starts)
  const data = only(gpuTemplate({ capacity: { mode: 'spot' } }), 'AWS::EC2::LaunchTemplate').LaunchTemplateData as {
    UserData: { 'Fn::Base64': string };
  };
  const script = data.UserData['Fn::Base64'];
  // THEN the agent waits this long between SIGTERM and SIGKILL, and drains a Spot node on its notice
  const timeout = /echo "ECS_CONTAINER_STOP_TIMEOUT=(\d+)s" >> \/etc\/ecs\/ecs\.config/.exec(script);
  assert.ok(timeout, script);
  assert.equal(Number(timeout[1]), ECS_STOP_TIMEOUT_SECONDS);
  assert.match(script, /echo "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true" >> \/etc\/ecs\/ecs\.config/);
  // AND the window fits Spot's two-minute notice and leaves torchrun's grace time to exit 143
  assert.ok(ECS_STOP_TIMEOUT_SECONDS < 120 && ECS_STOP_TIMEOUT_SECONDS > 30);
  assert.ok(TORCHRUN_SHUTDOWN_TIMEOUT_SECONDS + 5 <= ECS_STOP_TIMEOUT_SECONDS);
});

test('GpuCompute idles at zero: 0 vCPUs minimum, maxNodes P5 nodes at most', () => {
  const resources = computeResources(gpuTemplate({ maxNodes: 3 }));
  assert.equal(resources.MinvCpus, 0);
  assert.equal(resources.MaxvCpus, 3 * P5_NODE.vCpus);
});

test('GpuCompute buys Spot by price and capacity, on-demand by best fit', () => {
  assert.equal(
    computeResources(gpuTemplate({ capacity: { mode: 'spot' } })).AllocationStrategy,
    'SPOT_PRICE_CAPACITY_OPTIMIZED',
  );
  assert.equal(
    computeResources(gpuTemplate({ capacity: { mode: 'on-demand' } })).AllocationStrategy,
    'BEST_FIT_PROGRESSIVE',
  );
});

test('GpuCompute launches a Capacity Block into its reservation, on the capacity-block market', () => {
  const template = gpuTemplate({ capacity: { mode: 'capacity-block', reservationId: 'cr-0123456789abcdef0' } });
  const data = only(template, 'AWS::EC2::LaunchTemplate').LaunchTemplateData as Record<string, unknown>;
  assert.deepEqual(data.CapacityReservationSpecification, {
    CapacityReservationTarget: { CapacityReservationId: 'cr-0123456789abcdef0' },
  });
  assert.deepEqual(data.InstanceMarketOptions, { MarketType: 'capacity-block' });
});

test("GpuCompute's environment follows the launch template's latest version, so a template change reaches the nodes", () => {
  const template = gpuTemplate();
  const launchTemplate = computeResources(template).LaunchTemplate as { Version: unknown };
  assert.deepEqual(launchTemplate.Version, {
    'Fn::GetAtt': [Object.keys(template.findResources('AWS::EC2::LaunchTemplate'))[0], 'LatestVersionNumber'],
  });
});

test('GpuCompute cancels a job waiting for capacity after runnableTimeoutMinutes, and one that can never fit at once', () => {
  const actions = only(gpuTemplate({ runnableTimeoutMinutes: 45 }), 'AWS::Batch::JobQueue')
    .JobStateTimeLimitActions as {
    MaxTimeSeconds: number;
    Reason: string;
  }[];
  assert.deepEqual(
    actions.map((a) => [a.Reason, a.MaxTimeSeconds]),
    [
      ['CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY', 45 * 60],
      ['MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE', 600],
      ['MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT', 600],
    ],
  );
});

test('gpuSubnet picks the configured zone and refuses one the VPC does not have, naming those it has', () => {
  const vpc = ec2.Vpc.fromVpcAttributes(newStack(), 'Imported', {
    vpcId: 'vpc-1',
    availabilityZones: ['us-east-1a', 'us-east-1b'],
    isolatedSubnetIds: ['subnet-a', 'subnet-b'],
    isolatedSubnetNames: ['training'],
  });
  assert.equal(gpuSubnet(vpc, 'us-east-1b').subnetId, 'subnet-b');
  assert.equal(gpuSubnet(vpc, undefined).subnetId, 'subnet-a');
  assert.throws(
    () => gpuSubnet(vpc, 'us-east-1f'),
    /us-east-1f, which is not one of the VPC's zones \(us-east-1a, us-east-1b\)/,
  );
});
