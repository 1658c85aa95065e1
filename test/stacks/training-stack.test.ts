import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { Template } from 'aws-cdk-lib/assertions';
import { buildPlatform, buildRun, createApp } from '../../lib/app';
import { ConfigError, DEFAULT_CONFIG_DIR, parseConfig } from '../../lib/config/load';
import { SPARK_JOB } from '../../lib/config/spark-job';
import { CONFIG_ERROR_EXIT_CODE, P5_NODE } from '../../lib/stacks/training-stack';
import { EXPERIMENT, PRODUCTION, templatesFor } from '../helpers';

type Resource = { Properties: Record<string, unknown>; DeletionPolicy?: string };
const props = (template: Template, type: string): Record<string, unknown>[] =>
  (Object.values(template.findResources(type)) as Resource[]).map((r) => r.Properties);

for (const selection of [PRODUCTION, EXPERIMENT]) {
  const { training: template, platform } = templatesFor(selection);
  const name = selection.stage;
  const config = platform.config.training;

  test(`TrainingStack (${name}) GPU environment: P5 only, 0 vCPUs when idle, at most maxNodes nodes`, () => {
    const gpu = props(template, 'AWS::Batch::ComputeEnvironment').find(
      (p) => (p.ComputeResources as { Type: string }).Type !== 'FARGATE',
    )!;
    const resources = gpu.ComputeResources as Record<string, unknown>;
    assert.deepEqual(resources.InstanceTypes, config.instanceTypes);
    assert.equal(resources.MinvCpus, 0);
    assert.equal(resources.MaxvCpus, config.maxNodes * P5_NODE.vCpus);
    assert.deepEqual(resources.SecurityGroupIds, []);
    assert.equal((resources.Subnets as unknown[]).length, 1, 'one subnet keeps the nodes of a job in one AZ');
    assert.ok(resources.PlacementGroup, 'cluster placement group');
    assert.equal(resources.Type, config.capacity.mode === 'spot' ? 'SPOT' : 'EC2');
    assert.deepEqual(resources.Ec2Configuration, [{ ImageType: 'ECS_AL2023_NVIDIA' }]);
  });

  test(`TrainingStack (${name}) launch template: IMDSv2, encrypted root, one EFA interface per network card`, () => {
    const data = props(template, 'AWS::EC2::LaunchTemplate')[0]!.LaunchTemplateData as Record<string, unknown>;
    assert.equal((data.MetadataOptions as { HttpTokens: string }).HttpTokens, 'required');
    const root = (data.BlockDeviceMappings as { Ebs: Record<string, unknown> }[])[0]!.Ebs;
    assert.equal(root.Encrypted, true);
    assert.ok(root.KmsKeyId, 'root volume uses the training key');
    const interfaces = data.NetworkInterfaces as {
      NetworkCardIndex: number;
      DeviceIndex: number;
      InterfaceType: string;
    }[];
    assert.equal(interfaces.length, P5_NODE.efaInterfaces);
    assert.deepEqual(
      interfaces.map((i) => i.NetworkCardIndex),
      [...Array(P5_NODE.efaInterfaces).keys()],
    );
    assert.equal(interfaces[0]!.InterfaceType, 'efa');
    assert.ok(interfaces.slice(1).every((i) => i.InterfaceType === 'efa-only' && i.DeviceIndex === 1));
    assert.match(Buffer.from(JSON.stringify(data.UserData)).toString(), /Fn::Base64/);
  });

  test(`TrainingStack (${name}) GPU queue cancels jobs stuck in RUNNABLE for lack of capacity`, () => {
    const queues = props(template, 'AWS::Batch::JobQueue');
    const gpu = queues.find((q) => String(q.JobQueueName).endsWith('-gpu'))!;
    const actions = gpu.JobStateTimeLimitActions as {
      Action: string;
      MaxTimeSeconds: number;
      Reason: string;
      State: string;
    }[];
    assert.deepEqual(actions[0], {
      Action: 'CANCEL',
      MaxTimeSeconds: config.runnableTimeoutMinutes * 60,
      Reason: 'CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY',
      State: 'RUNNABLE',
    });
    assert.ok(actions.some((a) => a.Reason === 'MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE'));
    assert.ok(
      queues.some((q) => String(q.JobQueueName).endsWith('-cpu')),
      'CPU queue for data preparation',
    );
    assert.ok(
      props(template, 'AWS::Batch::ComputeEnvironment').some(
        (p) => (p.ComputeResources as { Type: string }).Type === 'FARGATE',
      ),
    );
  });

  test(`TrainingStack (${name}) job definitions: 8 GPUs, EFA devices, shared memory, memlock, retries on host loss only`, () => {
    const environmentWide = props(template, 'AWS::Batch::JobDefinition').map((d) =>
      String(d.JobDefinitionName).replace(/^dapt-[a-z0-9-]+?-(train|preflight|data|tokenize)/, '$1'),
    );
    // Production has no environment-wide trainer or data jobs: every experiment brings a run stack.
    assert.deepEqual(
      environmentWide.sort(),
      selection.stage === 'production' ? ['preflight'] : ['data-prep', 'preflight', 'tokenize', 'train-single-node'],
    );
    const trainerTemplate =
      selection.stage === 'production'
        ? Template.fromStack(buildRun(createApp(), { stage: 'production', run: 'check' }))
        : template;
    const definitions = props(trainerTemplate, 'AWS::Batch::JobDefinition');
    const single = definitions.find((d) => String(d.JobDefinitionName).endsWith('train-single-node'))!;
    const container = single.ContainerProperties as Record<string, unknown>;
    assert.ok(
      (container.ResourceRequirements as { Type: string; Value: string }[]).some(
        (r) => r.Type === 'GPU' && r.Value === String(P5_NODE.gpus),
      ),
    );
    const linux = container.LinuxParameters as { Devices: { HostPath: string }[]; SharedMemorySize: number };
    assert.equal(linux.Devices.length, P5_NODE.efaInterfaces);
    assert.equal(linux.Devices[31]!.HostPath, '/dev/infiniband/uverbs31');
    assert.ok(linux.SharedMemorySize >= 64 * 1024);
    assert.ok(
      (container.Ulimits as { Name: string; HardLimit: number }[]).some(
        (u) => u.Name === 'memlock' && u.HardLimit === -1,
      ),
    );
    assert.ok(
      (container.Environment as { Name: string; Value: string }[]).some(
        (e) => e.Name === 'FI_PROVIDER' && e.Value === 'efa',
      ),
    );
    const retry = single.RetryStrategy as { Attempts: number; EvaluateOnExit: Record<string, string>[] };
    assert.equal(retry.Attempts, config.retryAttempts);
    assert.deepEqual(retry.EvaluateOnExit, [
      { Action: 'RETRY', OnStatusReason: 'Host EC2*' },
      { Action: 'EXIT', OnExitCode: String(CONFIG_ERROR_EXIT_CODE) },
      { Action: 'EXIT', OnExitCode: '*' },
    ]);
    assert.equal(single.PropagateTags, true);
    assert.deepEqual(single.Timeout, { AttemptDurationSeconds: config.jobTimeoutHours * 3600 });
    if (config.maxNodes > 1) {
      const multi = definitions.find((d) => String(d.JobDefinitionName).endsWith('train-multi-node'))!;
      const nodes = multi.NodeProperties as {
        NumNodes: number;
        MainNode: number;
        NodeRangeProperties: { TargetNodes: string }[];
      };
      assert.equal(nodes.NumNodes, config.maxNodes);
      assert.equal(nodes.NodeRangeProperties[0]!.TargetNodes, '0:', 'an open range lets a job ask for fewer nodes');
    }
  });

  test(`TrainingStack (${name}) runs the data pipeline on the Fargate queue with its own role`, () => {
    // Production is shared: each run stack brings a data-prep job scoped to its run (run-stack tests).
    const pipelineTemplate =
      selection.stage === 'production'
        ? Template.fromStack(buildRun(createApp(), { stage: 'production', run: 'check' }))
        : template;
    const dataPrep = props(pipelineTemplate, 'AWS::Batch::JobDefinition').find((d) =>
      String(d.JobDefinitionName).endsWith('data-prep'),
    )!;
    assert.deepEqual(dataPrep.PlatformCapabilities, ['FARGATE']);
    const container = dataPrep.ContainerProperties as {
      JobRoleArn: unknown;
      ResourceRequirements: { Type: string; Value: string }[];
    };
    assert.ok(container.ResourceRequirements.some((r) => r.Type === 'VCPU'));
    if (selection.stage === 'production')
      assert.equal(
        props(template, 'AWS::Batch::JobDefinition').filter((d) => String(d.JobDefinitionName).endsWith('data-prep'))
          .length,
        0,
      );
    const others = props(pipelineTemplate, 'AWS::Batch::JobDefinition')
      .filter((d) => !String(d.JobDefinitionName).endsWith('data-prep'))
      .map(
        (d) =>
          (
            (d.ContainerProperties ??
              (d.NodeProperties as { NodeRangeProperties: { Container: unknown }[] }).NodeRangeProperties[0]!
                .Container) as { JobRoleArn: unknown }
          ).JobRoleArn,
      );
    for (const role of others)
      assert.notDeepEqual(container.JobRoleArn, role, 'the data pipeline has a role of its own');
  });

  test(`TrainingStack (${name}) Spark application: scales to zero, X86_64, capacity from training.sparkMaxCapacity`, () => {
    const apps = props(template, 'AWS::EMRServerless::Application');
    assert.equal(apps.length, 1, 'one application per environment, in both stages');
    const app = apps[0]!;
    assert.equal(app.Type, 'SPARK');
    assert.equal(app.ReleaseLabel, SPARK_JOB.releaseLabel);
    assert.equal(app.Architecture, 'X86_64');
    assert.deepEqual(app.AutoStartConfiguration, { Enabled: true });
    const stop = app.AutoStopConfiguration as { Enabled: boolean; IdleTimeoutMinutes: number };
    assert.equal(stop.Enabled, true);
    assert.ok(stop.IdleTimeoutMinutes <= 15, `idle workers are billed for ${stop.IdleTimeoutMinutes} minutes`);
    assert.equal(app.InitialCapacity, undefined, 'pre-initialized workers are billed while idle');
    const max = config.sparkMaxCapacity;
    assert.deepEqual(app.MaximumCapacity, {
      Cpu: `${max.vCpus} vCPU`,
      Memory: `${max.memoryGiB} GB`,
      Disk: `${max.diskGiB} GB`,
    });
    const network = app.NetworkConfiguration as { SecurityGroupIds: unknown[]; SubnetIds: unknown[] };
    assert.equal(network.SecurityGroupIds.length, 1);
    const monitoring = app.MonitoringConfiguration as Record<string, Record<string, unknown>>;
    assert.equal(monitoring.CloudWatchLoggingConfiguration!.Enabled, true);
    assert.ok(monitoring.CloudWatchLoggingConfiguration!.EncryptionKeyArn, 'CloudWatch logs with the KMS key');
    assert.ok(monitoring.S3MonitoringConfiguration!.EncryptionKeyArn, 'S3 logs with the lake key');
    assert.match(JSON.stringify(monitoring.S3MonitoringConfiguration!.LogUri), /\/spark-logs\//);
  });

  test(`TrainingStack (${name}) has an environment-wide Spark job role only in an experiment stage`, () => {
    const roles = props(template, 'AWS::IAM::Role').filter((r) =>
      JSON.stringify(r.AssumeRolePolicyDocument).includes('emr-serverless.amazonaws.com'),
    );
    assert.equal(roles.length, name === 'experiment' ? 1 : 0);
    template.hasResourceProperties('AWS::SSM::Parameter', {
      Name: `${platform.config.ssmRoot}/training/spark/job-role-arn`,
      ...(name === 'production' ? { Value: 'none' } : {}),
    });
  });

  test(`TrainingStack (${name}) job role reads inputs and writes only under runs/`, () => {
    const trainerTemplate =
      selection.stage === 'production'
        ? Template.fromStack(buildRun(createApp(), { stage: 'production', run: 'check' }))
        : template;
    const policies = props(trainerTemplate, 'AWS::IAM::ManagedPolicy').map(
      (p) => p.PolicyDocument as { Statement: { Sid?: string; Action: string | string[]; Resource: unknown }[] },
    );
    const statements = policies.flatMap((d) => d.Statement);
    const writes = statements.filter((s) => [s.Action].flat().some((a) => a === 's3:PutObject'));
    assert.ok(writes.length > 0);
    const trainerWrites = writes.filter((w) => w.Sid === 'WriteRunOutputs');
    assert.equal(trainerWrites.length, 1);
    assert.match(JSON.stringify(trainerWrites[0]!.Resource), /\/runs\/([a-z0-9-]+\/)?\*/);
    assert.doesNotMatch(JSON.stringify(trainerWrites[0]!.Resource), /"\/\*"/);
    for (const statement of statements) {
      for (const action of [statement.Action].flat())
        assert.ok(!/^s3:\*|:\*$|FullAccess/.test(action), `broad action ${action}`);
    }
    // The one exception: the function CDK runs deploy-time SDK calls with (see deploy-time-call.ts).
    for (const [id, role] of Object.entries(template.findResources('AWS::IAM::Role'))) {
      if (id.startsWith('AWS679f53fac002430cb0da5b7982bd2287')) continue;
      assert.equal((role as Resource).Properties.ManagedPolicyArns, undefined, `${id}: no AWS managed policies`);
    }
  });
}

test('capacity reservations and Capacity Blocks target the reservation in the launch template', () => {
  for (const capacity of [
    { mode: 'reservation', reservationId: 'cr-0123456789abcdef0' },
    { mode: 'capacity-block', reservationId: 'cr-0123456789abcdef0' },
  ]) {
    const dir = writeStageConfig({ capacity });
    const platform = buildPlatform(createApp(), { stage: 'experiment', experiment: 'cap', configDir: dir });
    const data = (
      Object.values(Template.fromStack(platform.training).findResources('AWS::EC2::LaunchTemplate'))[0] as Resource
    ).Properties.LaunchTemplateData as Record<string, unknown>;
    assert.deepEqual(data.CapacityReservationSpecification, {
      CapacityReservationTarget: { CapacityReservationId: 'cr-0123456789abcdef0' },
    });
    assert.deepEqual(
      data.InstanceMarketOptions,
      capacity.mode === 'capacity-block' ? { MarketType: 'capacity-block' } : undefined,
    );
  }
});

test('Spot is refused for multi-node training with a clear error', () => {
  const raw = JSON.parse(readFileSync(path.join(DEFAULT_CONFIG_DIR, 'production.json'), 'utf8')) as Record<
    string,
    Record<string, unknown>
  >;
  raw.training!.capacity = { mode: 'spot' };
  raw.training!.maxNodes = 4;
  assert.throws(
    () => parseConfig(raw, 'production.json'),
    (err: unknown) =>
      err instanceof ConfigError &&
      err.problems.some((p) =>
        /^training\.capacity\.mode = "spot": spot is for single-node jobs only \(training\.maxNodes is 4\)/.test(p),
      ),
  );
});

function writeStageConfig(training: Record<string, unknown>): string {
  const raw = JSON.parse(readFileSync(path.join(DEFAULT_CONFIG_DIR, 'experiment.json'), 'utf8')) as Record<
    string,
    Record<string, unknown>
  >;
  raw.training = { ...raw.training, ...training };
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dapt-training-'));
  writeFileSync(path.join(dir, 'experiment.json'), JSON.stringify(raw));
  return dir;
}

test('the GPU nodes launch in the configured availability zone, and a wrong zone is refused clearly', () => {
  const account = '123456789012';
  const zones = ['us-east-1a', 'us-east-1b', 'us-east-1c'];
  // What `cdk synth` caches after looking the zones up in a real account.
  const context = { [`availability-zones:account=${account}:region=us-east-1`]: zones };
  const build = (training: Record<string, unknown>, withAccount = true): Template => {
    const dir = writeStageConfig(training);
    const raw = JSON.parse(readFileSync(path.join(dir, 'experiment.json'), 'utf8')) as Record<string, unknown>;
    if (withAccount) raw.account = account;
    (raw.network as Record<string, unknown>).maxAzs = 3;
    writeFileSync(path.join(dir, 'experiment.json'), JSON.stringify(raw));
    return Template.fromStack(
      buildPlatform(createApp({ context }), { stage: 'experiment', experiment: 'az', configDir: dir }).training,
    );
  };
  const subnetOf = (template: Template): string => {
    const ce = (
      Object.values(template.findResources('AWS::Batch::ComputeEnvironment')).find(
        (r) =>
          (r as Resource).Properties.ComputeResources &&
          ((r as Resource).Properties.ComputeResources as { Type: string }).Type === 'EC2',
      ) as Resource
    ).Properties;
    const [subnet] = (ce.ComputeResources as { Subnets: { 'Fn::ImportValue': string }[] }).Subnets;
    return JSON.stringify(subnet);
  };
  assert.match(subnetOf(build({ availabilityZone: 'us-east-1b' })), /trainingSubnet2/);
  assert.match(subnetOf(build({})), /trainingSubnet1/, 'default: the first zone');
  assert.throws(
    () => build({ availabilityZone: 'us-east-1f' }),
    /training\.availabilityZone is us-east-1f, which is not one of the VPC's zones \(us-east-1a, us-east-1b, us-east-1c\)/,
  );
  assert.throws(
    () => build({ availabilityZone: 'us-east-1b' }, false),
    /does not know the account's zones: set 'account'/,
  );
});

test('launching a GPU node leaves /scratch writable for the trainer whatever the disks allow', async () => {
  // The user data's script, run for real with stand-ins for the disk tools: two NVMe disks,
  // mdadm missing and not installable (no repository), one disk that formats.
  const { execFileSync } = await import('node:child_process');
  const { chmodSync, mkdirSync, statSync } = await import('node:fs');
  const template = templatesFor(EXPERIMENT).training;
  const data = (Object.values(template.findResources('AWS::EC2::LaunchTemplate'))[0] as Resource).Properties
    .LaunchTemplateData as { UserData: { 'Fn::Base64': string } };
  const mime = data.UserData['Fn::Base64'];
  const script = mime.slice(mime.indexOf('#!/bin/bash'), mime.lastIndexOf('--==DAPT==--'));
  const root = mkdtempSync(path.join(os.tmpdir(), 'dapt-scratch-'));
  const bin = path.join(root, 'bin');
  mkdirSync(bin);
  const stub = (name: string, body: string): void => {
    writeFileSync(path.join(bin, name), `#!/bin/bash\n${body}\n`);
    chmodSync(path.join(bin, name), 0o755);
  };
  stub(
    'lsblk',
    "printf 'nvme1n1 Amazon EC2 NVMe Instance Storage\\nnvme2n1 Amazon EC2 NVMe Instance Storage\\nnvme0n1 Amazon Elastic Block Store\\n'",
  );
  stub('dnf', 'exit 1');
  stub('mkfs.xfs', 'exit 0');
  stub('mount', 'exit 0');
  const scratch = path.join(root, 'scratch');
  const runnable = script.replaceAll('/scratch', scratch).replaceAll('/dev/console', path.join(root, 'console'));
  execFileSync('bash', ['-c', runnable], { env: { PATH: `${bin}:/usr/bin:/bin` }, stdio: 'pipe' });
  assert.equal(statSync(scratch).mode & 0o7777, 0o1777, '/scratch must be world-writable with the sticky bit');
  assert.match(
    readFileSync(path.join(scratch, '.dapt-scratch'), 'utf8'),
    /^DEGRADED: one of 2 NVMe disks \(\/dev\/nvme1n1\)/,
  );
  assert.match(
    script,
    /command -v mdadm >\/dev\/null \|\| dnf install -y -q mdadm/,
    'mdadm is installed when the image lacks it',
  );
});
