/**
 * Test helpers for cli/train.ts: a deployed training stack as moto sees it (SSM parameters, Batch
 * queues and job definitions, the artifacts bucket), the CLI run in-process with moto clients,
 * and trainer configs and fake Hugging Face model folders on disk.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  BatchClient,
  CreateComputeEnvironmentCommand,
  CreateJobQueueCommand,
  RegisterJobDefinitionCommand,
} from '@aws-sdk/client-batch';
import { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { SsmParameterReader } from '../../cli/ssm';
import { type Clients, runCli } from '../../cli/train';
import { type Moto, python } from '../lambda/helpers';

/** Moto clients for the CLI. */
export function motoClients(moto: Moto): Clients {
  return {
    ssm: new SsmParameterReader({
      region: moto.clientConfig.region,
      endpoint: moto.endpoint,
      credentials: moto.clientConfig.credentials,
    }),
    batch: new BatchClient(moto.clientConfig),
    logs: new CloudWatchLogsClient(moto.clientConfig),
    s3: new S3Client({ ...moto.clientConfig, forcePathStyle: true }),
  };
}

/** Runs jobs without Docker: moto's simple Batch backend marks each submitted job SUCCEEDED. */
export async function useSimpleBatch(moto: Moto): Promise<void> {
  const response = await fetch(`${moto.endpoint}/moto-api/config`, {
    method: 'POST',
    body: JSON.stringify({ batch: { use_docker: false } }),
  });
  if (!response.ok) throw new Error(`moto config failed: ${response.status}`);
}

/** What a fake deployed stage has. */
export interface FakeStack {
  readonly envId: string;
  readonly gpuQueueArn: string;
  readonly cpuQueueArn: string;
  readonly bucket: string;
  readonly logGroup: string;
}

/**
 * Creates what TrainingStack and DataLakeStack publish for `/dapt/<envId>/...`: queues, a
 * single-node definition with an awslogs group, a multi-node one with an open node range (or
 * 'none'), max-nodes, capacity-mode and the artifacts bucket.
 */
export async function createTrainingStack(
  moto: Moto,
  envId: string,
  options: { maxNodes?: number; capacityMode?: string; multiNode?: boolean; skip?: string } = {},
): Promise<FakeStack> {
  const batch = new BatchClient(moto.clientConfig);
  const ssm = new SSMClient(moto.clientConfig);
  const roleArn = python<string>(
    `import boto3, json, sys
e = json.load(sys.stdin)
iam = boto3.client("iam", endpoint_url=e["endpoint"], region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
print(json.dumps(iam.create_role(RoleName=e["name"], AssumeRolePolicyDocument="{}")["Role"]["Arn"]))`,
    { endpoint: moto.endpoint, name: `${envId}-batch` },
  );
  const queue = async (kind: string): Promise<string> => {
    const ce = await batch.send(
      new CreateComputeEnvironmentCommand({
        computeEnvironmentName: `${envId}-${kind}-ce`,
        type: 'UNMANAGED',
        state: 'ENABLED',
        serviceRole: roleArn,
      }),
    );
    const q = await batch.send(
      new CreateJobQueueCommand({
        jobQueueName: `dapt-${envId}-${kind}`,
        priority: 1,
        state: 'ENABLED',
        computeEnvironmentOrder: [{ order: 1, computeEnvironment: ce.computeEnvironmentArn }],
      }),
    );
    return q.jobQueueArn ?? '';
  };
  const logGroup = `/dapt/${envId}/training-jobs`;
  const container = {
    image: 'trainer',
    resourceRequirements: [
      { type: 'VCPU' as const, value: '1' },
      { type: 'MEMORY' as const, value: '512' },
    ],
    logConfiguration: {
      logDriver: 'awslogs' as const,
      options: { 'awslogs-group': logGroup, 'awslogs-stream-prefix': 'train' },
    },
  };
  const single = await batch.send(
    new RegisterJobDefinitionCommand({
      jobDefinitionName: `dapt-${envId}-train-single-node`,
      type: 'container',
      containerProperties: container,
    }),
  );
  const maxNodes = options.maxNodes ?? 4;
  const multi =
    options.multiNode === false
      ? 'none'
      : ((
          await batch.send(
            new RegisterJobDefinitionCommand({
              jobDefinitionName: `dapt-${envId}-train-multi-node`,
              type: 'multinode',
              nodeProperties: {
                numNodes: maxNodes,
                mainNode: 0,
                nodeRangeProperties: [{ targetNodes: '0:', container }],
              },
            }),
          )
        ).jobDefinitionArn ?? '');
  const bucket = `artifacts-${envId}`;
  await moto.s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const gpuQueueArn = await queue('gpu');
  const cpuQueueArn = await queue('cpu');
  const tokenize = await batch.send(
    new RegisterJobDefinitionCommand({
      jobDefinitionName: `dapt-${envId}-tokenize`,
      type: 'container',
      containerProperties: container,
    }),
  );
  const parameters: Record<string, string> = {
    'training/gpu-queue-arn': gpuQueueArn,
    'training/cpu-queue-arn': cpuQueueArn,
    'training/job-definitions/tokenize': tokenize.jobDefinitionArn ?? '',
    'training/job-definitions/single-node': single.jobDefinitionArn ?? '',
    'training/job-definitions/multi-node': multi,
    'training/job-definitions/preflight': single.jobDefinitionArn ?? '',
    'training/max-nodes': String(maxNodes),
    'training/capacity-mode': options.capacityMode ?? 'on-demand',
    'datalake/buckets/artifacts': bucket,
  };
  for (const [key, value] of Object.entries(parameters)) {
    if (key === options.skip) continue;
    await ssm.send(new PutParameterCommand({ Name: `/dapt/${envId}/${key}`, Value: value, Type: 'String' }));
  }
  return { envId, gpuQueueArn, cpuQueueArn, bucket, logGroup };
}

/** The CLI's exit code and what it printed. */
export interface CliResult {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

/** Runs `cli/train.ts` in-process against moto. */
export async function cli(moto: Moto, ...argv: string[]): Promise<CliResult> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(argv, {
    out: (l) => out.push(l),
    err: (l) => err.push(l),
    clients: () => motoClients(moto),
    project: 'dapt-platform',
    pollMs: 10,
  });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

/** A temporary folder for configs and model folders. */
export function tempDir(): string {
  return mkdtempSync(path.join(os.tmpdir(), 'dapt-train-cli-'));
}

/** Writes a Hugging Face `config.json` with LLaMA dimensions under `<dir>/<name>/`. */
export function fakeModel(dir: string, name: string, dims: Record<string, number | boolean>): string {
  const folder = path.join(dir, name);
  mkdirSync(folder, { recursive: true });
  writeFileSync(
    path.join(folder, 'config.json'),
    JSON.stringify({ architectures: ['LlamaForCausalLM'], model_type: 'llama', ...dims }),
  );
  return folder;
}

/** Llama 3 70B's dimensions (70.6 B parameters). */
export const LLAMA_70B = {
  hidden_size: 8192,
  num_hidden_layers: 80,
  vocab_size: 128256,
  intermediate_size: 28672,
  num_attention_heads: 64,
  num_key_value_heads: 8,
  tie_word_embeddings: false,
};

/** A tiny model that always fits. */
export const TINY = {
  hidden_size: 64,
  num_hidden_layers: 2,
  vocab_size: 1000,
  intermediate_size: 128,
  num_attention_heads: 4,
};

/** Writes a trainer config: one completion stage on `model` (a folder or s3:// URI). */
export function writeConfig(
  dir: string,
  name: string,
  options: { experiment?: string; model: string; method?: 'full' | 'lora'; steps?: number; extra?: string },
): string {
  const file = path.join(dir, name);
  writeFileSync(
    file,
    [
      `experiment: ${options.experiment ?? 'demo'}`,
      'stages:',
      '  - name: dapt',
      `    model: {path: ${JSON.stringify(options.model)}}`,
      '    data:',
      '      sources: [{name: kb, kind: completion, paths: ["s3://datasets/kb.jsonl"]}]',
      `    method: {name: ${options.method ?? 'full'}}`,
      `    steps: ${options.steps ?? 100}`,
      options.extra ?? '',
    ].join('\n'),
  );
  return file;
}
