/**
 * Sweeper Lambda entry point: gathers the stacks and lifecycle parameters, asks `decideSweep`
 * (./decide.ts) what to do, and does it. Runs outside any VPC (it deletes VPCs) on an EventBridge
 * Scheduler schedule. DeleteStack is called without RoleARN: CloudFormation deletes with the role
 * the stack was deployed with (the CDK execution role), so this function needs no power over the
 * resources themselves, only over what CloudFormation cannot remove (components, jobs, executions).
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { BatchClient, ListJobsCommand, type JobStatus, TerminateJobCommand } from '@aws-sdk/client-batch';
import { CloudFormationClient, DeleteStackCommand, ListStackResourcesCommand } from '@aws-sdk/client-cloudformation';
import {
  DeleteInferenceComponentCommand,
  ListInferenceComponentsCommand,
  SageMakerClient,
} from '@aws-sdk/client-sagemaker';
import { ListExecutionsCommand, SFNClient, StopExecutionCommand } from '@aws-sdk/client-sfn';
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { DeleteParametersCommand, GetParameterCommand, PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { sweptStackPrefix } from '../../lib/config/lifecycle';
import { AWS_HTTP } from '../shared/aws-http';
import { requireEnv } from '../shared/env';
import { decideSweep, DELETING_MARKER, type Preparation, type SweepAction } from './decide';
import { findParameters, findStacks } from './find';

/** The AWS clients a sweep uses (tests: moto). */
export interface SweeperClients {
  readonly cloudformation: CloudFormationClient;
  readonly ssm: SSMClient;
  readonly sns: SNSClient;
  readonly sagemaker: SageMakerClient;
  readonly batch: BatchClient;
  readonly sfn: SFNClient;
}

export interface SweeperSettings {
  readonly prefix: string;
  readonly stage: 'experiment' | 'production';
  readonly warningHours: number;
  readonly topicArn: string;
  /** The schedule, for messages ("the next sweep, rate(1 hour), ..."). */
  readonly schedule: string;
}

/** One sweep: find, decide, act. Each action's failure is reported and the rest go on; the next sweep retries. */
export async function sweep(
  clients: SweeperClients,
  settings: SweeperSettings,
  logger: Pick<Logger, 'info' | 'error'>,
  now: Date = new Date(),
): Promise<SweepAction[]> {
  const stacks = await findStacks(clients.cloudformation, sweptStackPrefix(settings.prefix, settings.stage));
  const parameters = await findParameters(clients.ssm, settings.prefix, settings.stage);
  const actions = decideSweep({ ...settings, stacks, parameters, now });
  logger.info('sweep decided', { stacks: stacks.length, parameters: parameters.length, actions });
  const failures: string[] = [];
  for (const action of actions) {
    try {
      await carryOut(clients, settings, action, logger);
    } catch (err) {
      logger.error('action failed', { action, error: String(err) });
      failures.push(`${action.kind} ${'stack' in action ? action.stack : action.unit.label}: ${String(err)}`);
    }
  }
  if (failures.length > 0) {
    await notify(clients.sns, settings.topicArn, 'Experiment sweep: some actions failed', [
      `The sweep could not complete ${failures.length} action(s); the next sweep (${settings.schedule}) retries them.`,
      '',
      ...failures.map((f) => `- ${f}`),
    ]);
  }
  return actions;
}

async function carryOut(
  clients: SweeperClients,
  settings: SweeperSettings,
  action: SweepAction,
  logger: Pick<Logger, 'info'>,
): Promise<void> {
  const extend = (unit: SweepAction['unit']): string =>
    `npx dapt env extend --stage ${settings.stage}${unit.envId.startsWith('exp-') ? ` --experiment ${unit.envId.slice(4)}` : ''}${unit.run ? ` --run ${unit.run}` : ''} --hours N`;
  switch (action.kind) {
    case 'warn':
      await notify(clients.sns, settings.topicArn, `Expires soon: ${action.unit.label}`, [
        `${action.unit.label} expires at ${action.expiresAt}; the first sweep after that deletes it.`,
        `To keep it longer: ${extend(action.unit)}`,
      ]);
      await putMarker(clients.ssm, action.marker, action.expiresAt);
      return;
    case 'announce-deletion':
      await notify(clients.sns, settings.topicArn, `Deleting expired ${action.unit.label}`, [
        `${action.unit.label} expired at ${action.expiresAt}. Deleting its stacks in order, one wave per sweep (${settings.schedule}):`,
        ...action.stacks.map((s) => `- ${s}`),
      ]);
      await putMarker(clients.ssm, action.marker, `${DELETING_MARKER}${action.expiresAt}`);
      return;
    case 'delete-stack': {
      const ready = await prepare(clients, action.stack, action.prepare, logger);
      if (!ready) {
        logger.info('deletion waits for its preparation', { stack: action.stack });
        return;
      }
      // No RoleARN: CloudFormation reuses the role the stack was deployed with.
      await clients.cloudformation.send(new DeleteStackCommand({ StackName: action.stack }));
      logger.info('deleting stack', { stack: action.stack });
      return;
    }
    case 'report-failed':
      await notify(clients.sns, settings.topicArn, `Deletion failed: ${action.stack}`, [
        `CloudFormation could not delete ${action.stack} (${action.unit.label}): ${action.reason}`,
        `See: aws cloudformation describe-stack-events --stack-name ${action.stack}`,
      ]);
      return;
    case 'delete-parameters':
      await clients.ssm.send(new DeleteParametersCommand({ Names: [...action.names] }));
      logger.info('deleted lifecycle parameters', { names: action.names });
      return;
  }
}

/** Removes what would keep CloudFormation from deleting the stack; true once nothing is left. */
async function prepare(
  clients: SweeperClients,
  stack: string,
  preparation: Preparation,
  logger: Pick<Logger, 'info'>,
): Promise<boolean> {
  switch (preparation.kind) {
    case 'none':
      return true;
    case 'remove-inference-components': {
      const endpoint = await parameterValue(clients.ssm, preparation.endpointParameter);
      if (!endpoint) return true;
      const owned = new Set(await physicalIds(clients.cloudformation, stack, 'AWS::SageMaker::InferenceComponent'));
      const listed = await clients.sagemaker.send(new ListInferenceComponentsCommand({ EndpointNameEquals: endpoint }));
      const foreign = (listed.InferenceComponents ?? []).filter(
        (c) => !owned.has(c.InferenceComponentName ?? '') && !owned.has(c.InferenceComponentArn ?? ''),
      );
      for (const component of foreign) {
        if (component.InferenceComponentStatus === 'Deleting') continue;
        await clients.sagemaker.send(
          new DeleteInferenceComponentCommand({ InferenceComponentName: component.InferenceComponentName }),
        );
        logger.info('deleting inference component', { component: component.InferenceComponentName });
      }
      return foreign.length === 0;
    }
    case 'terminate-batch-jobs': {
      const ownQueues = await physicalIds(clients.cloudformation, stack, 'AWS::Batch::JobQueue');
      const sharedQueues = (
        await Promise.all(preparation.queueParameters.map((name) => parameterValue(clients.ssm, name)))
      ).filter((q): q is string => q !== undefined);
      // On the environment's shared queues, only this run's jobs (by job definition) are its own.
      const definitions =
        sharedQueues.length > 0
          ? new Set(await physicalIds(clients.cloudformation, stack, 'AWS::Batch::JobDefinition'))
          : undefined;
      let unfinished = 0;
      for (const queue of [...ownQueues, ...sharedQueues]) {
        for (const jobStatus of UNFINISHED_JOB_STATUSES) {
          let nextToken: string | undefined;
          do {
            const page = await clients.batch.send(new ListJobsCommand({ jobQueue: queue, jobStatus, nextToken }));
            for (const job of page.jobSummaryList ?? []) {
              if (definitions && !definitions.has(job.jobDefinition ?? '')) continue;
              unfinished += 1;
              await clients.batch.send(
                new TerminateJobCommand({ jobId: job.jobId, reason: `${stack} expired and is being deleted` }),
              );
              logger.info('terminating job', { job: job.jobId, queue });
            }
            nextToken = page.nextToken;
          } while (nextToken);
        }
      }
      return unfinished === 0;
    }
    case 'stop-executions': {
      let running = 0;
      for (const stateMachineArn of await physicalIds(
        clients.cloudformation,
        stack,
        'AWS::StepFunctions::StateMachine',
      )) {
        const page = await clients.sfn.send(new ListExecutionsCommand({ stateMachineArn, statusFilter: 'RUNNING' }));
        for (const execution of page.executions ?? []) {
          running += 1;
          await clients.sfn.send(
            new StopExecutionCommand({ executionArn: execution.executionArn, cause: `${stack} expired` }),
          );
        }
      }
      return running === 0;
    }
  }
}

async function physicalIds(cloudformation: CloudFormationClient, stack: string, type: string): Promise<string[]> {
  const ids: string[] = [];
  let nextToken: string | undefined;
  do {
    const page = await cloudformation.send(new ListStackResourcesCommand({ StackName: stack, NextToken: nextToken }));
    for (const r of page.StackResourceSummaries ?? []) {
      if (r.ResourceType === type && r.PhysicalResourceId) ids.push(r.PhysicalResourceId);
    }
    nextToken = page.NextToken;
  } while (nextToken);
  return ids;
}

async function parameterValue(ssm: SSMClient, name: string): Promise<string | undefined> {
  try {
    return (await ssm.send(new GetParameterCommand({ Name: name }))).Parameter?.Value;
  } catch (err) {
    if ((err as { name?: string }).name === 'ParameterNotFound') return undefined;
    throw err;
  }
}

async function putMarker(ssm: SSMClient, name: string, value: string): Promise<void> {
  await ssm.send(new PutParameterCommand({ Name: name, Value: value, Type: 'String', Overwrite: true }));
}

async function notify(sns: SNSClient, topicArn: string, subject: string, lines: readonly string[]): Promise<void> {
  // SNS limits an email subject to 100 characters.
  await sns.send(
    new PublishCommand({ TopicArn: topicArn, Subject: subject.slice(0, MAX_SUBJECT), Message: lines.join('\n') }),
  );
}

/** Batch job states that still hold (or will take) compute. */
const UNFINISHED_JOB_STATUSES: JobStatus[] = ['SUBMITTED', 'PENDING', 'RUNNABLE', 'STARTING', 'RUNNING'];
const MAX_SUBJECT = 100;

/** Lambda wiring, only when running as the function (tests import `sweep`). */
function createHandler(): () => Promise<void> {
  const env = requireEnv(['SWEEP_PREFIX', 'SWEEP_STAGE', 'WARNING_HOURS', 'TOPIC_ARN', 'SWEEP_SCHEDULE'] as const);
  if (env.SWEEP_STAGE !== 'experiment' && env.SWEEP_STAGE !== 'production') {
    throw new Error(
      `SWEEP_STAGE environment variable is ${JSON.stringify(env.SWEEP_STAGE)}: must be experiment or production`,
    );
  }
  const settings: SweeperSettings = {
    prefix: env.SWEEP_PREFIX,
    stage: env.SWEEP_STAGE,
    warningHours: Number(env.WARNING_HOURS),
    topicArn: env.TOPIC_ARN,
    schedule: env.SWEEP_SCHEDULE,
  };
  const config = { requestHandler: AWS_HTTP };
  const clients: SweeperClients = {
    cloudformation: new CloudFormationClient(config),
    ssm: new SSMClient(config),
    sns: new SNSClient(config),
    sagemaker: new SageMakerClient(config),
    batch: new BatchClient(config),
    sfn: new SFNClient(config),
  };
  const logger = new Logger();
  return async () => {
    await sweep(clients, settings, logger);
  };
}

export const handler: () => Promise<void> = process.env.AWS_LAMBDA_FUNCTION_NAME
  ? createHandler()
  : async () => {
      throw new Error('the sweeper handler runs in Lambda only; tests call sweep()');
    };
