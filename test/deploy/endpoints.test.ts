/**
 * Deploy contract: the isolated subnets have no route out, so every AWS service that anything
 * inside the VPC calls needs a VPC endpoint, and an endpoint nothing calls only costs money
 * (about $7 per AZ per month each). What is called is derived here from the code and the job
 * and compute definitions, never from the list the network stack keeps.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SPARK_JOB } from '../../lib/config/spark-job';
import { packagesOfImage, servicesOfBundle, servicesOfPythonPackage } from './code-services';
import { type Deployment, deploymentFor } from './model';
import { EXPERIMENT, PRODUCTION } from '../helpers';

/**
 * What AWS's documentation says the platform side of each runtime calls from inside the VPC.
 * - ECS container instances (Batch on EC2): the agent registers and polls through `ecs`,
 *   `ecs-agent` and `ecs-telemetry`, and pulls images through `ecr.api`, `ecr.dkr` and the layer
 *   bucket behind the `s3` gateway ("Amazon ECS interface VPC endpoints", ECR "Interface VPC
 *   endpoints").
 * - Fargate tasks pull images the same way, without the agent endpoints.
 * - The awslogs log driver writes through `logs`.
 * - Lambda functions in a VPC need nothing for their own code, logs or X-Ray: the service does it.
 * - EMR Serverless workers in private subnets reach S3 only through a NAT gateway or an S3
 *   endpoint, and any other AWS service only through its endpoint or NAT ("Configuring VPC access
 *   for EMR Serverless applications", EMR Serverless User Guide): `s3`, `logs` when the
 *   application logs to CloudWatch, and whatever the job's code calls. Nothing else is named
 *   there (no STS or KMS: the job's credentials come with the workers, and S3 and CloudWatch Logs
 *   use the keys on the service side).
 */
const EC2_CONTAINER_INSTANCE = ['ecs', 'ecs-agent', 'ecs-telemetry', 'ecr.api', 'ecr.dkr', 's3'];
const FARGATE_TASK = ['ecr.api', 'ecr.dkr', 's3'];

/** Endpoint name -> why it is needed (the first consumer found). */
function requiredEndpoints(deployment: Deployment): Map<string, string> {
  const needed = new Map<string, string>();
  const need = (endpoint: string, why: string): void => {
    if (!needed.has(endpoint)) needed.set(endpoint, why);
  };

  for (const ce of deployment.resources('AWS::Batch::ComputeEnvironment')) {
    const type = ce.props.ComputeResources?.Type as string;
    const runtime = type === 'FARGATE' || type === 'FARGATE_SPOT' ? FARGATE_TASK : EC2_CONTAINER_INSTANCE;
    for (const endpoint of runtime) need(endpoint, `${type} compute environment ${ce.stack}/${ce.id}`);
  }

  for (const job of deployment.resources('AWS::Batch::JobDefinition')) {
    const containers = [
      job.props.ContainerProperties,
      ...(job.props.NodeProperties?.NodeRangeProperties ?? []).map((n: { Container: unknown }) => n.Container),
    ].filter(Boolean);
    for (const container of containers as { Image: unknown; LogConfiguration?: { LogDriver: string } }[]) {
      const where = `job definition ${job.stack}/${job.id}`;
      if (container.LogConfiguration?.LogDriver === 'awslogs') need('logs', `${where} (awslogs driver)`);
      const asset = deployment.assetOf(container.Image);
      assert.ok(asset?.dockerfile, `${where}: its image is not an image asset of this app, so its code cannot be read`);
      for (const pkg of packagesOfImage(asset.dir, asset.dockerfile)) {
        for (const [endpoint, file] of servicesOfPythonPackage(pkg)) need(endpoint, `${where}: ${file}`);
      }
    }
  }

  for (const app of deployment.resources('AWS::EMRServerless::Application')) {
    if (!app.props.NetworkConfiguration) continue;
    const where = `EMR Serverless application ${app.stack}/${app.id}`;
    need('s3', where);
    if (app.props.MonitoringConfiguration?.CloudWatchLoggingConfiguration?.Enabled)
      need('logs', `${where} (CloudWatch logging)`);
    for (const pkg of SPARK_JOB.packages) {
      for (const [endpoint, file] of servicesOfPythonPackage(pkg)) need(endpoint, `${where}: ${file}`);
    }
  }

  for (const fn of deployment.resources('AWS::Lambda::Function')) {
    if (!fn.props.VpcConfig) continue;
    const where = `function ${fn.stack}/${fn.id}`;
    const asset = deployment.assetOf(fn.props.Code);
    assert.ok(asset, `${where}: its code is not an asset of this app, so it cannot be read`);
    if (asset.dockerfile) {
      for (const pkg of packagesOfImage(asset.dir, asset.dockerfile)) {
        for (const [endpoint, file] of servicesOfPythonPackage(pkg)) need(endpoint, `${where}: ${file}`);
      }
    } else {
      for (const [endpoint, file] of servicesOfBundle(asset.dir)) need(endpoint, `${where}: ${file}`);
    }
  }
  return needed;
}

function createdEndpoints(deployment: Deployment): Map<string, string> {
  const created = new Map<string, string>();
  for (const endpoint of deployment.resources('AWS::EC2::VPCEndpoint')) {
    const service = deployment
      .resolve(endpoint.stack, endpoint.props.ServiceName)
      .replace(/^com\.amazonaws\.(<AWS::Region>|[a-z]{2}(-gov)?-[a-z]+-\d)\./, '');
    created.set(service, `${endpoint.stack}/${endpoint.id}`);
  }
  return created;
}

for (const selection of [PRODUCTION, EXPERIMENT]) {
  const deployment = deploymentFor(selection);
  const name = selection.stage;

  test(`deploy contract (${name}): every service called from inside the VPC has an endpoint`, () => {
    const created = createdEndpoints(deployment);
    const missing = [...requiredEndpoints(deployment)].filter(([endpoint]) => !created.has(endpoint));
    assert.deepEqual(
      missing.map(([endpoint, why]) => `${endpoint} (needed by ${why})`),
      [],
      'these calls would hang until they time out: the subnets have no other way out',
    );
  });

  test(`deploy contract (${name}): no endpoint is created that nothing in the VPC calls`, () => {
    const required = requiredEndpoints(deployment);
    const unused = [...createdEndpoints(deployment)].filter(([endpoint]) => !required.has(endpoint));
    assert.deepEqual(
      unused.map(([endpoint, id]) => `${endpoint} (${id})`),
      [],
      'each interface endpoint costs about $7 per AZ per month',
    );
  });

  test(`deploy contract (${name}): EMR Serverless workers run in the isolated training subnets only`, () => {
    const apps = deployment.resources('AWS::EMRServerless::Application');
    assert.ok(apps.length > 0, 'expected the data pipeline application');
    const routes = deployment.resources('AWS::EC2::Route');
    for (const app of apps) {
      const subnets = deployment.resolve(app.stack, app.props.NetworkConfiguration?.SubnetIds ?? []).split(',');
      assert.ok(subnets.length >= 2, `${app.id}: workers need subnets in more than one zone (${subnets.join(',')})`);
      for (const token of subnets) {
        const subnet = deployment.resources('AWS::EC2::Subnet').find((s) => `«${s.stack}/${s.id}»` === token);
        assert.ok(subnet, `${app.id}: subnet ${token} is not a subnet of this deployment`);
        const group = (subnet.props.Tags ?? []).find((t: { Key: string }) => t.Key === 'aws-cdk:subnet-name')?.Value;
        assert.equal(group, 'training', `${app.id}: subnet ${subnet.id} is not a training subnet`);
        const table = deployment
          .resources('AWS::EC2::SubnetRouteTableAssociation')
          .find((a) => deployment.resolve(a.stack, a.props.SubnetId) === token);
        assert.ok(table, `${subnet.id} has no route table`);
        const tableToken = deployment.resolve(table.stack, table.props.RouteTableId);
        const out = routes.filter(
          (r) =>
            deployment.resolve(r.stack, r.props.RouteTableId) === tableToken &&
            (r.props.GatewayId || r.props.NatGatewayId || r.props.TransitGatewayId),
        );
        assert.deepEqual(
          out.map((r) => r.id),
          [],
          `${subnet.id} routes out of the VPC`,
        );
      }
    }
  });

  test(`deploy contract (${name}): the code scan finds what the code calls`, () => {
    // Guards the scan itself: if it found nothing, both tests above would pass vacuously.
    const required = requiredEndpoints(deployment);
    for (const endpoint of [
      's3',
      'dynamodb',
      'bedrock-runtime',
      'sagemaker.runtime',
      'comprehend',
      'ecs-agent',
      'logs',
    ]) {
      assert.ok(required.has(endpoint), `expected the scan to find a caller of ${endpoint}`);
    }
  });
}
