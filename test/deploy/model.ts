/**
 * The synthesized templates of one environment read as a deployment: references resolved across
 * stacks (SSM parameters, exports), each role's effective identity policy, each key's policy.
 *
 * The deploy-contract tests use it to check what CloudFormation, IAM and KMS will decide at deploy
 * and run time, which synthesis, cdk-nag and cfn-lint cannot see.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { App, Stack } from 'aws-cdk-lib';
import { buildPlatform, buildRun, createApp } from '../../lib/app';

// Templates are untyped JSON; `any` is confined to this reader.
/* eslint-disable @typescript-eslint/no-explicit-any */
type Json = any;

export interface Resource {
  readonly stack: string;
  readonly id: string;
  readonly type: string;
  readonly props: Json;
  readonly dependsOn: readonly string[];
}

export interface Statement {
  readonly effect: string;
  readonly actions: readonly string[];
  readonly resources: readonly string[];
  readonly principals: Readonly<Record<string, readonly string[]>>;
  readonly conditions: Readonly<Record<string, Readonly<Record<string, readonly string[]>>>>;
  readonly sid?: string;
}

/** A staged asset of the cloud assembly: a Lambda bundle or a container build context. */
export interface StagedAsset {
  readonly packaging: string;
  /** Absolute path of the staged directory. */
  readonly dir: string;
  /** The Dockerfile, relative to `dir` (container images). */
  readonly dockerfile?: string;
}

/** One environment's stacks (and optionally one run stack), synthesized and cross-referenced. */
export class Deployment {
  readonly templates: ReadonlyMap<string, Json>;
  /** Staged assets by source hash (the tag or key the templates refer to them by). */
  readonly assets: ReadonlyMap<string, StagedAsset>;

  constructor(
    apps: readonly { app: App; stacks: readonly Stack[] }[],
    /** The VPC's CIDR, as configured. */
    readonly platformCidr: string,
  ) {
    const templates = new Map<string, Json>();
    const assets = new Map<string, StagedAsset>();
    for (const { app, stacks } of apps) {
      const assembly = app.synth();
      for (const stack of stacks) {
        const artifact = assembly.getStackByName(stack.stackName);
        templates.set(stack.stackName, artifact.template);
        // The stack's asset manifest (`<stack>.assets.json`) says where each asset was staged.
        for (const dependency of artifact.dependencies as Json[]) {
          if (typeof dependency.file !== 'string' || !dependency.file.endsWith('.assets.json')) continue;
          const manifest = JSON.parse(readFileSync(dependency.file, 'utf8')) as Json;
          for (const [hash, entry] of Object.entries<Json>(manifest.files ?? {})) {
            assets.set(hash, {
              packaging: entry.source.packaging ?? 'file',
              dir: path.join(assembly.directory, entry.source.path),
            });
          }
          for (const [hash, entry] of Object.entries<Json>(manifest.dockerImages ?? {})) {
            assets.set(hash, {
              packaging: 'container-image',
              dir: path.join(assembly.directory, entry.source.directory),
              dockerfile: entry.source.dockerFile ?? 'Dockerfile',
            });
          }
        }
      }
    }
    this.templates = templates;
    this.assets = assets;
  }

  /** The staged asset a Lambda `Code` or a job definition's `Image` refers to. */
  assetOf(reference: Json): StagedAsset | undefined {
    const text = typeof reference === 'string' ? reference : JSON.stringify(reference);
    for (const [hash, asset] of this.assets) if (text.includes(hash)) return asset;
    return undefined;
  }

  resources(type?: string): Resource[] {
    const out: Resource[] = [];
    for (const [stack, template] of this.templates) {
      for (const [id, r] of Object.entries<Json>(template.Resources ?? {})) {
        if (type && r.Type !== type) continue;
        out.push({ stack, id, type: r.Type, props: r.Properties ?? {}, dependsOn: [r.DependsOn ?? []].flat() });
      }
    }
    return out;
  }

  resource(stack: string, id: string): Resource | undefined {
    const r = this.templates.get(stack)?.Resources?.[id];
    return r
      ? { stack, id, type: r.Type, props: r.Properties ?? {}, dependsOn: [r.DependsOn ?? []].flat() }
      : undefined;
  }

  /**
   * A template expression as a string: `«stack/Id»` for a reference, `«stack/Id.Attr»` for an
   * attribute, `<AWS::Region>` for a pseudo parameter; SSM parameters and exports are followed to
   * the value their publisher wrote, so the same resource reads the same from every stack.
   */
  resolve(stack: string, expr: Json): string {
    if (typeof expr === 'string') return normalise(expr);
    if (typeof expr === 'number' || typeof expr === 'boolean') return String(expr);
    if (Array.isArray(expr)) return expr.map((e) => this.resolve(stack, e)).join(',');
    if (expr && typeof expr === 'object') {
      if ('Ref' in expr) return this.resolveRef(stack, expr.Ref as string);
      if ('Fn::GetAtt' in expr) {
        const [id, attr] = expr['Fn::GetAtt'] as [string, string];
        const target = this.resource(stack, id);
        if (target?.type === 'AWS::S3::Bucket' && attr === 'Arn') return `arn:<AWS::Partition>:s3:::«${stack}/${id}»`;
        return `«${stack}/${id}.${attr}»`;
      }
      if ('Fn::Join' in expr) {
        const [sep, parts] = expr['Fn::Join'] as [string, Json[]];
        return parts.map((p) => this.resolve(stack, p)).join(sep);
      }
      if ('Fn::ImportValue' in expr) {
        const name = this.resolve(stack, expr['Fn::ImportValue']);
        for (const [other, template] of this.templates) {
          for (const output of Object.values<Json>(template.Outputs ?? {})) {
            if (output.Export && this.resolve(other, output.Export.Name) === name)
              return this.resolve(other, output.Value);
          }
        }
        return `<import:${name}>`;
      }
      if ('Fn::Sub' in expr) return String(expr['Fn::Sub']);
    }
    return JSON.stringify(expr);
  }

  private resolveRef(stack: string, ref: string): string {
    if (ref.startsWith('AWS::')) return `<${ref}>`;
    const template = this.templates.get(stack);
    const parameter = template?.Parameters?.[ref];
    if (parameter) {
      if (String(parameter.Type).startsWith('AWS::SSM::Parameter::Value')) {
        const name = parameter.Default as string;
        for (const published of this.resources('AWS::SSM::Parameter')) {
          if (this.resolve(published.stack, published.props.Name) === name)
            return this.resolve(published.stack, published.props.Value);
        }
        return `<ssm:${name}>`;
      }
      return `<parameter:${ref}>`;
    }
    return `«${stack}/${ref}»`;
  }

  /** The statements of a policy document, each field resolved. */
  statements(stack: string, document: Json): Statement[] {
    return [document?.Statement ?? []].flat().map((s: Json) => ({
      effect: s.Effect,
      sid: s.Sid,
      actions: [s.Action ?? []].flat().map((a: Json) => this.resolve(stack, a)),
      resources: [s.Resource ?? []].flat().map((r: Json) => this.resolve(stack, r)),
      principals: Object.fromEntries(
        Object.entries<Json>(
          typeof s.Principal === 'object' ? s.Principal : s.Principal ? { AWS: s.Principal } : {},
        ).map(([kind, v]) => [kind, [v].flat().map((p: Json) => this.resolve(stack, p))]),
      ),
      conditions: Object.fromEntries(
        Object.entries<Json>(s.Condition ?? {}).map(([op, keys]) => [
          op,
          Object.fromEntries(
            Object.entries<Json>(keys).map(([k, v]) => [k, [v].flat().map((x: Json) => this.resolve(stack, x))]),
          ),
        ]),
      ),
    }));
  }

  /** Every role (as `«stack/Id»`) with the Allow statements of the policies attached to it. */
  roles(): Map<string, { resource: Resource; statements: Statement[] }> {
    const roles = new Map<string, { resource: Resource; statements: Statement[] }>();
    for (const role of this.resources('AWS::IAM::Role')) {
      const inline = [role.props.Policies ?? []]
        .flat()
        .flatMap((p: Json) => this.statements(role.stack, p.PolicyDocument));
      roles.set(`«${role.stack}/${role.id}»`, { resource: role, statements: inline });
    }
    for (const type of ['AWS::IAM::ManagedPolicy', 'AWS::IAM::Policy']) {
      for (const policy of this.resources(type)) {
        const statements = this.statements(policy.stack, policy.props.PolicyDocument);
        for (const ref of [policy.props.Roles ?? []].flat()) {
          roles.get(this.resolve(policy.stack, ref))?.statements.push(...statements);
        }
      }
    }
    return roles;
  }

  /** The policy statements of the key a `KmsKeyId`/`KMSMasterKeyID` expression points to. */
  keyPolicy(keyToken: string): { key: Resource; statements: Statement[] } | undefined {
    for (const key of this.resources('AWS::KMS::Key')) {
      if ([`«${key.stack}/${key.id}.Arn»`, `«${key.stack}/${key.id}»`].includes(keyToken)) {
        return { key, statements: this.statements(key.stack, key.props.KeyPolicy) };
      }
    }
    return undefined;
  }
}

/** `arn:aws:` and `arn:${AWS::Partition}:` read the same. */
function normalise(text: string): string {
  return text.replace(/^arn:aws:/, 'arn:<AWS::Partition>:');
}

/** Whether `pattern` (an IAM action or resource, `*` and `?` as wildcards) covers `value`. */
export function iamMatch(pattern: string, value: string): boolean {
  const regex = new RegExp(
    `^${pattern
      .split('*')
      .map((part) => part.split('?').map(escape).join('.'))
      .join('.*')}$`,
    'i',
  );
  return regex.test(value);
}

function escape(text: string): string {
  return text.replace(/[.+^${}()|[\]\\/]/g, '\\$&');
}

/** Whether one of `statements` allows `action` on `resource` (ignoring conditions). */
export function allows(statements: readonly Statement[], action: string, resource: string): boolean {
  return statements.some(
    (s) =>
      s.effect === 'Allow' &&
      s.actions.some((a) => iamMatch(a, action)) &&
      s.resources.some((r) => r === '*' || iamMatch(r, resource)),
  );
}

const cache = new Map<string, Deployment>();

/** The deployment of a stage (with one run stack on it), synthesized once per test process. */
export function deploymentFor(selection: { stage: string; experiment?: string }, run = 'contract'): Deployment {
  const key = JSON.stringify({ selection, run });
  let deployment = cache.get(key);
  if (!deployment) {
    const app = createApp({ outdir: mkdtempSync(path.join(os.tmpdir(), 'dapt-deploy-')) });
    // Without cdk-nag: it adds no resources, only time (its own tests run it on every stage).
    const platform = buildPlatform(app, selection, { complianceChecks: false });
    const stacks: Stack[] = [platform.network, platform.dataLake, platform.evaluation, platform.training];
    if (platform.audit) stacks.push(platform.audit);
    if (platform.serving) stacks.push(platform.serving);
    if (platform.pipeline) stacks.push(platform.pipeline);
    // The sweeper of the account and region, deployed with every environment.
    stacks.push(platform.lifecycle);
    // A run stack deploys on its own (`-c run=NAME`), so it is built in an app of its own.
    const runApp = createApp({ outdir: mkdtempSync(path.join(os.tmpdir(), 'dapt-deploy-run-')) });
    const runStack = buildRun(runApp, { ...selection, run }, { complianceChecks: false });
    deployment = new Deployment(
      [
        { app, stacks },
        { app: runApp, stacks: [runStack] },
      ],
      platform.config.network.cidr,
    );
    cache.set(key, deployment);
  }
  return deployment;
}

/** A role EMR Serverless jobs run with, and the application its trust policy names. */
export interface SparkJobRoleOf {
  readonly role: string;
  readonly resource: Resource;
  readonly statements: Statement[];
  readonly trust: Statement[];
  /** The application named in the trust policy's aws:SourceArn, if it is one of this deployment's. */
  readonly application?: Resource;
}

/** Every role EMR Serverless may assume, with the application its trust names. */
export function sparkJobRoles(d: Deployment): SparkJobRoleOf[] {
  const apps = d.resources('AWS::EMRServerless::Application');
  const out: SparkJobRoleOf[] = [];
  for (const [role, { resource, statements }] of d.roles()) {
    const trust = d.statements(resource.stack, resource.props.AssumeRolePolicyDocument);
    if (!trust.some((s) => (s.principals.Service ?? []).includes('emr-serverless.amazonaws.com'))) continue;
    const arns = trust.flatMap((s) => Object.values(s.conditions).flatMap((keys) => keys['aws:SourceArn'] ?? []));
    const application = apps.find((a) => arns.includes(`«${a.stack}/${a.id}.Arn»`));
    out.push({ role, resource, statements, trust, application });
  }
  return out;
}
