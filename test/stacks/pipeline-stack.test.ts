/**
 * The experiment pipeline's state machine as synthesized (lib/constructs/experiment-pipeline.ts):
 * the `.sync` integrations, the approval wait in production only, retries and catches on every
 * step, the ledger around each step, and a definition that Step Functions' own parser (moto's
 * copy of it) accepts.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { Template } from 'aws-cdk-lib/assertions';
import { PIPELINE_STEPS } from '../../lib/config/pipeline-steps';
import { PYTHON } from '../lambda/helpers';
import { createApp } from '../../lib/app';
import { loadConfig } from '../../lib/config/load';
import { NetworkStack } from '../../lib/stacks/network-stack';
import { PipelineStack } from '../../lib/stacks/pipeline-stack';
import { EXPERIMENT, PRODUCTION } from '../helpers';

interface State {
  Type: string;
  Resource?: string;
  Next?: string;
  End?: boolean;
  Retry?: { ErrorEquals: string[]; MaxAttempts?: number }[];
  Catch?: { ErrorEquals: string[]; Next: string }[];
  Branches?: { StartAt: string; States: Record<string, State> }[];
  ItemProcessor?: { StartAt: string; States: Record<string, State> };
  TimeoutSeconds?: number;
  Parameters?: Record<string, unknown>;
}

/** The state machine's definition with every reference replaced by a placeholder string. */
function definitionOf(template: Template): { StartAt: string; States: Record<string, State> } {
  const machines = template.findResources('AWS::StepFunctions::StateMachine');
  const [machine] = Object.values(machines) as { Properties: { DefinitionString: unknown } }[];
  assert.ok(machine, 'one state machine');
  const placeholder = (part: unknown): string => {
    if (typeof part === 'string') return part;
    const ref = (part as { Ref?: string }).Ref;
    if (ref === 'AWS::Partition') return 'aws';
    if (ref === 'AWS::Region') return 'us-east-1';
    if (ref === 'AWS::AccountId') return '123456789012';
    return 'arn:aws:lambda:us-east-1:123456789012:function:placeholder';
  };
  const body = machine.Properties.DefinitionString as string | { 'Fn::Join': [string, unknown[]] };
  const text = typeof body === 'string' ? body : body['Fn::Join'][1].map(placeholder).join('');
  return JSON.parse(text) as { StartAt: string; States: Record<string, State> };
}

/** Every state, nested ones (Parallel branches, Map processors) included, by name. */
function allStates(definition: { States: Record<string, State> }): Map<string, State> {
  const found = new Map<string, State>();
  const walk = (states: Record<string, State>): void => {
    for (const [name, state] of Object.entries(states)) {
      found.set(name, state);
      for (const branch of state.Branches ?? []) walk(branch.States);
      if (state.ItemProcessor) walk(state.ItemProcessor.States);
    }
  };
  walk(definition.States);
  return found;
}

/** The pipeline stack of a stage, beside the network it runs in (the stacks it drives are read through SSM). */
function pipelineOf(selection: typeof EXPERIMENT | typeof PRODUCTION): PipelineStack {
  const app = createApp({ outdir: mkdtempSync(path.join(os.tmpdir(), 'dapt-pipeline-')) });
  const config = loadConfig(selection);
  const common = { env: { account: config.account, region: config.region }, config };
  const network = new NetworkStack(app, 'Network', common);
  return new PipelineStack(app, 'Pipeline', {
    ...common,
    vpc: network.vpc,
    s3PrefixListId: network.gatewayPrefixLists.s3,
  });
}
const experimentTemplate = Template.fromStack(pipelineOf(EXPERIMENT));
const productionTemplate = Template.fromStack(pipelineOf(PRODUCTION));
const experimentDefinition = definitionOf(experimentTemplate);
const productionDefinition = definitionOf(productionTemplate);
const experimentStates = allStates(experimentDefinition);
const productionStates = allStates(productionDefinition);

test('data, tokens and training run as Batch jobs to completion; evaluation runs the eval state machine to completion', () => {
  const resources = [...experimentStates.values()].map((s) => s.Resource ?? '');
  const batch = [...experimentStates.entries()].filter(([, s]) => s.Resource?.endsWith(':batch:submitJob.sync'));
  assert.deepEqual(batch.map(([name]) => name).sort(), [
    'PrepareData',
    'Tokenize',
    'TrainMultiNode',
    'TrainSingleNode',
  ]);
  assert.ok(
    experimentStates.get('TrainMultiNode')!.Parameters!.NodeOverrides,
    'multi-node training overrides the node count',
  );
  assert.equal(experimentStates.get('TrainSingleNode')!.Parameters!.NodeOverrides, undefined);
  assert.ok(
    resources.some((r) => r.endsWith(':states:startExecution.sync:2')),
    'evaluation waits for the eval state machine (.sync:2: its output as JSON)',
  );
  assert.equal(experimentStates.get('Evaluate')?.Type, 'Map');
});

test('production waits for a person (task token, 7 days) before deploying; experiments do not', () => {
  const wait = productionStates.get('WaitForApproval');
  assert.ok(wait, 'production has the approval state');
  assert.match(wait.Resource ?? '', /:states:::sns:publish\.waitForTaskToken$/);
  assert.equal(wait.TimeoutSeconds, 7 * 24 * 3600);
  assert.equal(experimentStates.get('WaitForApproval'), undefined);
  assert.ok(
    ![...experimentStates.values()].some((s) => (s.Resource ?? '').includes('waitForTaskToken')),
    'no task token anywhere in an experiment',
  );
  // Only a package the gate approved reaches the approval or the deployment.
  const choice = productionStates.get('GatePassed?') as unknown as {
    Choices: { Variable: string; StringEquals: string; Next: string }[];
    Default: string;
  };
  assert.deepEqual(
    choice.Choices.map((c) => [c.Variable, c.StringEquals]),
    [['$.results.register.value.approval_status', 'Approved']],
  );
  assert.equal(choice.Choices[0]!.Next, 'Check-approve');
  assert.equal(choice.Default, 'NotifyGateFailed');
});

test('every step is wrapped in the ledger: checked, skipped when finished, marked when done, caught when failed', () => {
  for (const step of PIPELINE_STEPS) {
    const states = step === 'approve' ? productionStates : experimentStates;
    for (const prefix of ['Check', 'Skip', 'Run', 'Mark', 'Done', 'Failed']) {
      assert.ok(states.has(`${prefix}-${step}`), `${prefix}-${step}`);
    }
    for (const prefix of ['Check', 'Run', 'Mark']) {
      const caught = states.get(`${prefix}-${step}`)!.Catch ?? [];
      assert.deepEqual(
        caught.map((c) => [c.ErrorEquals, c.Next]),
        [[['States.ALL'], `Failed-${step}`]],
        `${prefix}-${step} goes to the failure handler naming its step`,
      );
    }
  }
  const failed = experimentStates.get('Failed') as unknown as { Type: string; ErrorPath: string; CausePath: string };
  assert.equal(failed.Type, 'Fail');
  assert.match(failed.ErrorPath, /\$\.failed_step/, 'the execution fails with <step>.<error>');
  assert.equal(experimentStates.get('NotifyFailed')?.Resource?.endsWith(':states:::sns:publish'), true);
});

test('retries where AWS says a call is safe to repeat: throttling and service errors, never a failed job', () => {
  const retried = (name: string): string[] => (experimentStates.get(name)!.Retry ?? []).flatMap((r) => r.ErrorEquals);
  for (const name of ['PrepareData', 'Tokenize', 'TrainSingleNode', 'TrainMultiNode']) {
    assert.deepEqual(retried(name), ['Batch.AWSBatchException', 'Batch.TooManyRequestsException'], name);
  }
  assert.ok(retried('RunEvaluation').includes('StepFunctions.ExecutionLimitExceededException'));
  for (const name of ['CreateCandidateComponent', 'DescribeCandidateComponent', 'DeleteCandidateComponent']) {
    assert.deepEqual(retried(name), ['SageMaker.ThrottlingException'], name);
  }
  for (const name of ['Check-train', 'Mark-train', 'CollectGateInputs', 'Register']) {
    assert.ok(retried(name).includes('Lambda.ServiceException'), `${name} retries Lambda's service errors`);
  }
  for (const state of experimentStates.values()) {
    for (const retry of state.Retry ?? []) {
      assert.ok(!retry.ErrorEquals.includes('States.ALL'), 'no blanket retry: a failed job or a bad input fails once');
      assert.ok(!retry.ErrorEquals.includes('States.TaskFailed'));
    }
  }
});

test("the definitions pass the Step Functions parser (moto's copy of the AWS States Language parser)", () => {
  const result = spawnSync(
    PYTHON,
    [
      '-c',
      [
        'import json, sys',
        'from moto.stepfunctions.parser.models import StepFunctionsParserBackend',
        'for definition in json.load(sys.stdin):',
        '    StepFunctionsParserBackend._validate_definition(definition=json.dumps(definition))',
        'print("valid")',
      ].join('\n'),
    ],
    { input: JSON.stringify([experimentDefinition, productionDefinition]), encoding: 'utf8' },
  );
  assert.equal(result.status, 0, result.stderr);
  assert.equal(result.stdout.trim(), 'valid');
});

test('the state machine may submit jobs only of its own environment, and its topic is encrypted', () => {
  const policies = experimentTemplate.findResources('AWS::IAM::Policy');
  const statements = Object.values(policies).flatMap(
    (p) =>
      (p as { Properties: { PolicyDocument: { Statement: { Sid?: string; Resource: unknown }[] } } }).Properties
        .PolicyDocument.Statement,
  );
  const submit = statements.find((s) => s.Sid === 'SubmitJobsOfThisEnvironment');
  assert.ok(submit, 'a statement for batch:SubmitJob');
  assert.match(JSON.stringify(submit.Resource), /job-definition\/dapt-exp-unit-\*/);
  const topics = experimentTemplate.findResources('AWS::SNS::Topic');
  for (const topic of Object.values(topics)) {
    assert.ok((topic as { Properties: { KmsMasterKeyId?: unknown } }).Properties.KmsMasterKeyId, 'KMS-encrypted topic');
  }
});
