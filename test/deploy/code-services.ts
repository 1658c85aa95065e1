/**
 * Which AWS services the code that runs inside the VPC calls, read from the code itself: the
 * `@aws-sdk/client-*` packages a Lambda bundle requires, and the boto3 clients of the Python
 * packages a container image copies in (found through its Dockerfile's COPY lines).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';

export const REPO_ROOT = path.join(__dirname, '..', '..');

/** SDK service names (JS package suffix or boto3 name) to the VPC endpoint that serves them. */
const SDK_TO_ENDPOINT: Record<string, string> = {
  s3: 's3',
  dynamodb: 'dynamodb',
  'bedrock-runtime': 'bedrock-runtime',
  'sagemaker-runtime': 'sagemaker.runtime',
  sagemaker: 'sagemaker.api',
  comprehend: 'comprehend',
  ssm: 'ssm',
  sts: 'sts',
  kms: 'kms',
  'secrets-manager': 'secretsmanager',
  secretsmanager: 'secretsmanager',
  cloudwatch: 'monitoring',
  'cloudwatch-logs': 'logs',
  logs: 'logs',
  sfn: 'states',
  stepfunctions: 'states',
  batch: 'batch',
  glue: 'glue',
  athena: 'athena',
  sqs: 'sqs',
  sns: 'sns',
  ecr: 'ecr.api',
};

/** The endpoint a service name is reached through; unknown names fail loudly. */
export function endpointFor(sdkName: string, where: string): string {
  const endpoint = SDK_TO_ENDPOINT[sdkName];
  if (!endpoint)
    throw new Error(
      `${where} calls the AWS service '${sdkName}', which the deploy-contract tests cannot map to a VPC endpoint: add it to SDK_TO_ENDPOINT`,
    );
  return endpoint;
}

/** Services a bundled (esbuild) Lambda requires: the SDK v3 clients stay external, as `require("@aws-sdk/client-x")`. */
export function servicesOfBundle(dir: string): Map<string, string> {
  const found = new Map<string, string>();
  for (const file of walk(dir).filter((f) => f.endsWith('.js'))) {
    for (const match of readFileSync(file, 'utf8').matchAll(/@aws-sdk\/client-([a-z0-9-]+)/g)) {
      found.set(endpointFor(match[1]!, file), file);
    }
  }
  return found;
}

/**
 * Python packages of `containers/` that an image's Dockerfile copies. `context` is the staged
 * build context (cdk.out/asset.<hash>): either the repository root, whose COPY lines name
 * `containers/<pkg>/...`, or one package folder, recognised by its pyproject.toml.
 */
export function packagesOfImage(context: string, dockerfile: string): string[] {
  const packages = new Set<string>();
  const ownPyproject = path.join(context, 'pyproject.toml');
  const contextPackage = existsSync(ownPyproject)
    ? readdirSync(path.join(REPO_ROOT, 'containers')).find((pkg) => {
        const candidate = path.join(REPO_ROOT, 'containers', pkg, 'pyproject.toml');
        return existsSync(candidate) && readFileSync(candidate, 'utf8') === readFileSync(ownPyproject, 'utf8');
      })
    : undefined;
  for (const line of readFileSync(path.join(context, dockerfile), 'utf8').split('\n')) {
    const copy = /^\s*COPY\s+(?:--\S+\s+)*(.+)$/i.exec(line);
    if (!copy) continue;
    for (const source of copy[1]!.trim().split(/\s+/).slice(0, -1)) {
      const named = /^(?:\.\/)?containers\/([^/]+)/.exec(source);
      const pkg = named ? named[1] : contextPackage;
      if (pkg && existsSync(path.join(REPO_ROOT, 'containers', pkg, 'src'))) packages.add(pkg);
    }
  }
  return [...packages].sort();
}

/**
 * Services the Python package calls: `boto3.client("x")` and calls of client factories (a
 * function that passes its argument to `boto3.client`) with a literal service name.
 */
export function servicesOfPythonPackage(pkg: string): Map<string, string> {
  const files = walk(path.join(REPO_ROOT, 'containers', pkg, 'src')).filter((f) => f.endsWith('.py'));
  const sources = files.map((file) => ({ file, text: readFileSync(file, 'utf8') }));
  const factories = new Set(['boto3.client', 'boto3.resource', 'session.client']);
  for (const { text } of sources) {
    for (const match of text.matchAll(
      /def (\w+)\(([^)]*)\)[^:]*:[\s\S]*?boto3\.(?:client|resource)\(\s*([A-Za-z_]\w*)\s*[,)]/g,
    )) {
      const [, name, params, arg] = match;
      if (params!.split(',').some((p) => p.trim().split(':')[0] === arg)) factories.add(name!);
    }
  }
  const found = new Map<string, string>();
  for (const { file, text } of sources) {
    for (const factory of factories) {
      const pattern = new RegExp(`(?<![\\w.])${factory.replace('.', '\\.')}\\(\\s*["']([a-z0-9-]+)["']`, 'g');
      for (const match of text.matchAll(pattern)) found.set(endpointFor(match[1]!, file), file);
    }
  }
  return found;
}

function walk(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (name === 'node_modules' || name === '__pycache__' || name === 'tests') return [];
    return statSync(full).isDirectory() ? walk(full) : [full];
  });
}
