#!/usr/bin/env node
/**
 * CDK entry point: `npx cdk synth -c stage=production` or
 * `npx cdk synth -c stage=experiment -c experiment=NAME`.
 */
import { buildPlatform, createApp } from '../lib/app';
import { ConfigError } from '../lib/config/load';

const app = createApp();
const context = (key: string): string | undefined => app.node.tryGetContext(key) as string | undefined;
try {
  buildPlatform(app, {
    stage: context('stage'),
    experiment: context('experiment'),
    defaultAccount: process.env.CDK_DEFAULT_ACCOUNT,
  });
} catch (err) {
  if (err instanceof ConfigError) {
    console.error(err.message);
    process.exit(1);
  }
  throw err;
}
app.synth();
