#!/usr/bin/env node
/**
 * CDK entry point: `npx cdk synth -c stage=production` or
 * `npx cdk synth -c stage=experiment -c experiment=NAME [-c ttl=HOURS]`; add `-c run=NAME` (and
 * `-c upstream=A,B` for the runs it starts from) for one experiment run's stack on that environment.
 * Production is its delivery pipeline's stack, whose `Production` stage holds the platform; the
 * pipeline adds `-c commit=SHA`, recorded in the stage.
 */
import { buildEnvironment, buildRun, createApp } from '../lib/app';
import { ConfigError } from '../lib/config/load';

const app = createApp();
const context = (key: string): string | undefined => app.node.tryGetContext(key) as string | undefined;
try {
  const selection = {
    stage: context('stage'),
    experiment: context('experiment'),
    defaultAccount: process.env.CDK_DEFAULT_ACCOUNT,
  };
  // `-c run=NAME` deploys one experiment's run stack on an environment that already exists;
  // `-c upstream=A,B` lets it read the models of earlier runs A and B.
  const run = context('run');
  const upstream = context('upstream')
    ?.split(',')
    .map((name) => name.trim())
    .filter(Boolean);
  // `-c ttl=HOURS`: how long the experiment environment or run stack lives after this deploy.
  const ttlHours = context('ttl');
  if (run !== undefined) buildRun(app, { ...selection, run, upstream }, { ttlHours });
  else buildEnvironment(app, selection, { sourceCommit: context('commit'), ttlHours });
} catch (err) {
  if (err instanceof ConfigError) {
    console.error(err.message);
    process.exit(1);
  }
  throw err;
}
app.synth();
