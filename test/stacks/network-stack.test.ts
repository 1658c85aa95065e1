import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Match } from 'aws-cdk-lib/assertions';
import { INTERFACE_ENDPOINTS } from '../../lib/stacks/network-stack';
import { EXPERIMENT, PRODUCTION, templatesFor } from '../helpers';

for (const selection of [PRODUCTION, EXPERIMENT]) {
  const { network: template, platform } = templatesFor(selection);
  const name = selection.stage;

  test(`NetworkStack (${name}) has no route to the internet`, () => {
    template.resourceCountIs('AWS::EC2::InternetGateway', 0);
    template.resourceCountIs('AWS::EC2::NatGateway', 0);
    template.resourceCountIs('AWS::EC2::EgressOnlyInternetGateway', 0);
    template.resourceCountIs('AWS::EC2::TransitGatewayAttachment', 0);
    template.resourceCountIs('AWS::EC2::VPCPeeringConnection', 0);
    for (const [id, route] of Object.entries(template.findResources('AWS::EC2::Route'))) {
      const props = (route as { Properties: Record<string, unknown> }).Properties;
      assert.ok(
        !('GatewayId' in props) && !('NatGatewayId' in props) && props.DestinationCidrBlock !== '0.0.0.0/0',
        `route ${id} leads out of the VPC: ${JSON.stringify(props)}`,
      );
    }
    for (const [id, subnet] of Object.entries(template.findResources('AWS::EC2::Subnet'))) {
      assert.notEqual(
        (subnet as { Properties: { MapPublicIpOnLaunch?: boolean } }).Properties.MapPublicIpOnLaunch,
        true,
        `subnet ${id} maps public IPs`,
      );
    }
  });

  test(`NetworkStack (${name}) has training, eval and endpoint subnets in each AZ`, () => {
    const subnets = Object.values(template.findResources('AWS::EC2::Subnet')) as {
      Properties: { Tags: { Key: string; Value: string }[] };
    }[];
    const groups = subnets.map((s) => s.Properties.Tags.find((t) => t.Key === 'aws-cdk:subnet-name')?.Value);
    const azs = platform.network.availabilityZones.length;
    for (const group of ['training', 'eval', 'endpoints']) {
      assert.equal(groups.filter((g) => g === group).length, azs, `subnet group ${group}`);
    }
  });

  test(`NetworkStack (${name}) reaches AWS services through endpoints`, () => {
    template.hasResourceProperties('AWS::EC2::VPCEndpoint', {
      VpcEndpointType: 'Gateway',
      ServiceName: { 'Fn::Join': ['', ['com.amazonaws.', { Ref: 'AWS::Region' }, '.s3']] },
    });
    for (const service of ['ecr.api', 'ecr.dkr', 'logs', 'ecs-agent']) {
      template.hasResourceProperties('AWS::EC2::VPCEndpoint', {
        VpcEndpointType: 'Interface',
        PrivateDnsEnabled: true,
        ServiceName: `com.amazonaws.${platform.config.region}.${service}`,
      });
    }
    const interfaceEndpoints = template.findResources('AWS::EC2::VPCEndpoint', {
      Properties: { VpcEndpointType: 'Interface' },
    });
    assert.equal(Object.keys(interfaceEndpoints).length, Object.keys(INTERFACE_ENDPOINTS).length);
    template.hasResourceProperties('AWS::EC2::SecurityGroup', {
      GroupDescription: Match.stringLikeRegexp('Interface VPC endpoints'),
      SecurityGroupIngress: [{ CidrIp: platform.config.network.cidr, FromPort: 443, ToPort: 443, IpProtocol: 'tcp' }],
    });
  });

  test(`NetworkStack (${name}) logs every flow to a KMS-encrypted log group with the stage's retention`, () => {
    template.hasResourceProperties('AWS::EC2::FlowLog', { TrafficType: 'ALL', LogDestinationType: 'cloud-watch-logs' });
    template.hasResourceProperties('AWS::Logs::LogGroup', {
      KmsKeyId: Match.anyValue(),
      RetentionInDays: platform.config.logRetentionDays,
    });
    template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
  });

  test(`NetworkStack (${name}) has a self-referencing security group for EFA`, () => {
    const groups = template.findResources('AWS::EC2::SecurityGroup', {
      Properties: { GroupDescription: Match.stringLikeRegexp('EFA') },
    });
    const [efaId] = Object.keys(groups);
    assert.ok(efaId, 'no EFA security group');
    template.hasResourceProperties('AWS::EC2::SecurityGroupIngress', {
      IpProtocol: '-1',
      GroupId: { 'Fn::GetAtt': [efaId, 'GroupId'] },
      SourceSecurityGroupId: { 'Fn::GetAtt': [efaId, 'GroupId'] },
    });
  });

  test(`NetworkStack (${name}) publishes its ids as SSM parameters under ${platform.config.ssmRoot}`, () => {
    for (const suffix of [
      'network/vpc-id',
      'network/subnets/training',
      'network/subnets/eval',
      'network/security-groups/efa',
    ]) {
      template.hasResourceProperties('AWS::SSM::Parameter', {
        Name: `${platform.config.ssmRoot}/${suffix}`,
        Type: 'String',
      });
    }
  });
}
