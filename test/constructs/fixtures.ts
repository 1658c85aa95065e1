/**
 * What the construct tests build on: one stack in a fresh app, the production stage's config
 * (each test overrides the fields it is about), and the resources of one type in a template.
 */
import { mkdtempSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import { loadConfig, type ResolvedConfig } from '../../lib/config/load';
import { IsolatedVpc } from '../../lib/constructs/isolated-vpc';

export const CONFIG: ResolvedConfig = loadConfig({ stage: 'production' });

/** A stack in its own app (assets staged in a temporary folder), with the account and region of the config. */
export function newStack(id = 'Test'): Stack {
  const app = new App({ outdir: mkdtempSync(path.join(os.tmpdir(), 'dapt-construct-')) });
  return new Stack(app, id, { env: { account: '123456789012', region: CONFIG.region } });
}

/** A stack holding an isolated VPC and a key, the two things most constructs need. */
export function scaffold(): { stack: Stack; vpc: ec2.Vpc; key: kms.Key } {
  const stack = newStack();
  const flowLogGroup = new logs.LogGroup(stack, 'FlowLogs');
  const vpc = new IsolatedVpc(stack, 'Vpc', { network: CONFIG.network, flowLogGroup }).vpc;
  return { stack, vpc, key: new kms.Key(stack, 'Key') };
}

export interface Resource {
  readonly Type: string;
  readonly Properties: Record<string, unknown>;
}

/** The resources of one type, by logical id. */
export function resources(template: Template, type: string): Record<string, Resource> {
  return template.findResources(type) as Record<string, Resource>;
}

/** The properties of the only resource of a type (fails when there is not exactly one). */
export function only(template: Template, type: string): Record<string, unknown> {
  const found = Object.values(resources(template, type));
  if (found.length !== 1) throw new Error(`expected one ${type}, found ${found.length}`);
  return found[0]!.Properties;
}

/** Every IAM statement of the template's managed and inline policies, flattened. */
export function statements(template: Template): { Sid?: string; Action: string | string[]; Resource: unknown }[] {
  const policies = [
    ...Object.values(resources(template, 'AWS::IAM::ManagedPolicy')),
    ...Object.values(resources(template, 'AWS::IAM::Policy')),
  ];
  return policies.flatMap(
    (p) =>
      (p.Properties.PolicyDocument as { Statement: { Sid?: string; Action: string | string[]; Resource: unknown }[] })
        .Statement,
  );
}

/** A statement's actions as a list. */
export function actions(statement: { Action: string | string[] }): string[] {
  return Array.isArray(statement.Action) ? statement.Action : [statement.Action];
}
