import { Aws, Duration, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type * as sns from 'aws-cdk-lib/aws-sns';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Construct } from 'constructs';
import { acknowledge, acknowledgeWildcards } from '../compliance/acknowledge';
import { PIPELINE_STEPS, type PipelineStep } from '../config/pipeline-steps';

/**
 * The experiment pipeline: one execution takes one experiment from its data to a served model.
 *
 *   data preparation (Batch, Fargate queue, optional) -> token cache (Batch, Fargate queue)
 *   -> training (Batch, GPU queue, single- or multi-node) -> candidate served (an adapter
 *   inference component on the environment's endpoint) -> evaluation (the eval state machine
 *   per benchmark, `.sync:2`: base model, candidate and external baseline in one run)
 *   -> gate inputs -> register (the registrar: the promotion gate decides the approval)
 *   -> [production: wait for a person's approval, task token] -> deploy -> clean up the candidate
 *
 * The execution input (`PipelineInput` in cli/pipeline-lib.ts, built and validated by
 * `dapt pipeline start`) carries every name and request, so the state machine holds no
 * experiment-specific value. Every step is recorded in a ledger (`ledger_uri`, a prefix per
 * pipeline id, written by the steps function) once it succeeds, and checked first: a rerun of
 * a failed or stopped pipeline skips what finished and never trains twice for the same config.
 * Retries are where AWS says a call is safe to repeat (throttling, service errors); a step that
 * fails for good notifies the topic with the step, the error and its cause and fails the
 * execution with them.
 */
export interface ExperimentPipelineProps {
  /** Name of the state machine, `<prefix>-<envId>-experiment-pipeline`. */
  readonly stateMachineName: string;
  /** `<prefix>-<envId>`: the names of job definitions, components and queues this pipeline may use start with it. */
  readonly namePrefix: string;
  /** Wait for a person's approval (task token) between registering and deploying: production. */
  readonly requireApproval: boolean;
  /** The ledger and gate-inputs function (`dapt_eval.pipeline_steps.steps_handler`). */
  readonly steps: lambda.IFunction;
  /** The registrar (`dapt_eval.registry.register_handler`), read from SSM. */
  readonly registrar: lambda.IFunction;
  /** The evaluation state machine, read from SSM. */
  readonly evaluation: sfn.IStateMachine;
  /** The GPU and Fargate job queues the jobs go to, read from SSM. */
  readonly jobQueueArns: readonly string[];
  /** The endpoint the candidate and the deployed adapter are placed on. */
  readonly endpointName: string;
  /** Success, failure and waiting-for-approval notifications (KMS-encrypted). */
  readonly topic: sns.ITopic;
  /** Execution history; a name under `/aws/vendedlogs/`. */
  readonly logGroup: logs.ILogGroup;
}

export { PIPELINE_STEPS, type PipelineStep };

/** How long a pipeline may wait for a person's approval before it fails. */
export const APPROVAL_TIMEOUT = Duration.days(7);
/** How often an inference component's status is polled while it is created. */
const COMPONENT_POLL = Duration.minutes(1);
/** A whole pipeline: data, a multi-day training run, evaluation and an approval. */
const PIPELINE_TIMEOUT = Duration.days(21);

export class ExperimentPipeline extends Construct {
  readonly stateMachine: sfn.StateMachine;
  private readonly props: ExperimentPipelineProps;
  private readonly failed: sfn.IChainable;

  constructor(scope: Construct, id: string, props: ExperimentPipelineProps) {
    super(scope, id);
    this.props = props;
    this.failed = this.failureHandler();

    const train = sfn.Chain.start(
      new sfn.Choice(this, 'SingleOrMultiNode')
        .when(sfn.Condition.numberGreaterThan('$.train.nodes', 1), this.batchJob('TrainMultiNode', '$.train', true))
        .otherwise(this.batchJob('TrainSingleNode', '$.train', false))
        .afterwards(),
    );
    const definition = sfn.Chain.start(
      new sfn.Choice(this, 'PrepareData?')
        .when(
          sfn.Condition.isPresent('$.data.job_name'),
          this.step('data', this.batchJob('PrepareData', '$.data', false)),
        )
        .otherwise(new sfn.Pass(this, 'NoDataPreparation'))
        .afterwards(),
    )
      .next(this.step('tokenize', this.batchJob('Tokenize', '$.tokenize', false)))
      .next(this.step('train', train))
      .next(this.step('candidate', this.placeComponent('Candidate', '$.candidate')))
      .next(this.step('evaluate', this.evaluate()))
      .next(this.step('gate', this.collectGateInputs()))
      .next(this.step('register', this.register()))
      .next(this.gateDecision());

    this.stateMachine = new sfn.StateMachine(this, 'Default', {
      stateMachineName: props.stateMachineName,
      definitionBody: sfn.DefinitionBody.fromChainable(definition),
      tracingEnabled: true,
      logs: { destination: props.logGroup, level: sfn.LogLevel.ALL, includeExecutionData: false },
      timeout: PIPELINE_TIMEOUT,
    });
    this.grantServiceCalls();
    this.acknowledgePolicies();
  }

  /**
   * `run` wrapped in the ledger: check (skip when marked, carrying the recorded result to
   * `$.results.<name>.value`), run, mark with the result. `run` is one branch of a Parallel state,
   * so one catch covers every state in it: a failure anywhere goes to the failure handler, named.
   */
  private step(name: PipelineStep, run: sfn.IChainable): sfn.Chain {
    const check = this.invokeSteps(`Check-${name}`, {
      action: 'check',
      ledger_uri: sfn.JsonPath.stringAt('$.ledger_uri'),
      step: name,
    });
    check.addCatch(this.failedAt(name), { resultPath: '$.error' });
    const skip = new sfn.Pass(this, `Skip-${name}`, {
      parameters: { 'value.$': `$.checks.${name}.marker.result.value` },
      resultPath: `$.results.${name}`,
    });
    const body = new sfn.Parallel(this, `Run-${name}`, {
      resultSelector: { 'value.$': `$[0].results.${name}` },
      resultPath: `$.results.${name}`,
    });
    body.branch(run);
    body.addCatch(this.failedAt(name), { resultPath: '$.error' });
    const mark = this.invokeSteps(`Mark-${name}`, {
      action: 'mark',
      ledger_uri: sfn.JsonPath.stringAt('$.ledger_uri'),
      step: name,
      execution: sfn.JsonPath.executionName,
      result: sfn.JsonPath.objectAt(`$.results.${name}`),
    });
    mark.addCatch(this.failedAt(name), { resultPath: '$.error' });
    const done = new sfn.Pass(this, `Done-${name}`);
    check.next(
      new sfn.Choice(this, `Finished-${name}?`)
        .when(sfn.Condition.booleanEquals(`$.checks.${name}.done`, true), skip.next(done))
        .otherwise(body.next(mark).next(done)),
    );
    // Both ways meet at `done`, where the next step chains on.
    return sfn.Chain.custom(check, [done], done);
  }

  /** A Lambda call of the steps function whose result goes to `$.checks.<step>` (check) or is dropped (mark). */
  private invokeSteps(id: string, payload: Record<string, unknown>): tasks.LambdaInvoke {
    const isCheck = payload.action === 'check';
    return new tasks.LambdaInvoke(this, id, {
      lambdaFunction: this.props.steps,
      payload: sfn.TaskInput.fromObject(payload),
      payloadResponseOnly: true,
      retryOnServiceExceptions: true,
      resultPath: isCheck ? `$.checks.${String(payload.step)}` : sfn.JsonPath.DISCARD,
    });
  }

  /**
   * A Batch job run to completion (`submitJob.sync`). The job's own retry strategy handles host
   * loss and capacity (the job definitions retry `Host EC2*` and start failures); here only the
   * Batch API's throttling and service errors are retried. Multi-node jobs get node overrides.
   */
  private batchJob(id: string, at: string, multiNode: boolean): sfn.CustomState {
    const overrides = multiNode
      ? {
          NodeOverrides: {
            'NumNodes.$': `${at}.nodes`,
            NodePropertyOverrides: [
              {
                'TargetNodes.$': `${at}.target_nodes`,
                ContainerOverrides: { 'Environment.$': `${at}.environment` },
              },
            ],
          },
        }
      : { ContainerOverrides: { 'Environment.$': `${at}.environment` } };
    const state = new sfn.CustomState(this, id, {
      stateJson: {
        Type: 'Task',
        Resource: `arn:${Aws.PARTITION}:states:::batch:submitJob.sync`,
        Parameters: {
          'JobName.$': `${at}.job_name`,
          'JobQueue.$': `${at}.job_queue`,
          'JobDefinition.$': `${at}.job_definition`,
          'Tags.$': `${at}.tags`,
          PropagateTags: true,
          ...overrides,
        },
        ResultSelector: { 'job_id.$': '$.JobId', 'job_name.$': '$.JobName', 'status.$': '$.Status' },
        ResultPath: `$.results.${at.slice(2)}`,
      },
    });
    state.addRetry({
      errors: ['Batch.AWSBatchException', 'Batch.TooManyRequestsException'],
      maxAttempts: 6,
      interval: Duration.seconds(10),
      backoffRate: 2,
    });
    return state;
  }

  /**
   * Creates an adapter inference component (the request is in the input) and polls until it is
   * InService. A component left by a stopped execution is not created twice: the create error
   * goes on to the polling, which fails if the component does not exist.
   */
  private placeComponent(id: string, at: string): sfn.Chain {
    const create = new tasks.CallAwsService(this, `Create${id}Component`, {
      service: 'sagemaker',
      action: 'createInferenceComponent',
      parameters: {
        'InferenceComponentName.$': `${at}.request.InferenceComponentName`,
        'EndpointName.$': `${at}.request.EndpointName`,
        'Specification.$': `${at}.request.Specification`,
        'Tags.$': `${at}.request.Tags`,
      },
      iamResources: this.componentArns(),
      resultPath: sfn.JsonPath.DISCARD,
    });
    create.addRetry({ errors: ['SageMaker.ThrottlingException'], maxAttempts: 6, backoffRate: 2 });
    const describe = new tasks.CallAwsService(this, `Describe${id}Component`, {
      service: 'sagemaker',
      action: 'describeInferenceComponent',
      parameters: { 'InferenceComponentName.$': `${at}.request.InferenceComponentName` },
      iamResources: this.componentArns(),
      resultSelector: {
        'name.$': '$.InferenceComponentName',
        'status.$': '$.InferenceComponentStatus',
        'arn.$': '$.InferenceComponentArn',
      },
      resultPath: `$.results.${at.slice(2)}`,
    });
    describe.addRetry({ errors: ['SageMaker.ThrottlingException'], maxAttempts: 6, backoffRate: 2 });
    const wait = new sfn.Wait(this, `Wait${id}Component`, { time: sfn.WaitTime.duration(COMPONENT_POLL) });
    const componentFailed = new sfn.Fail(this, `${id}ComponentFailed`, {
      error: 'InferenceComponentFailed',
      causePath: `States.Format('inference component {} is {}', $.results.${at.slice(2)}.name, $.results.${at.slice(2)}.status)`,
    });
    create.addCatch(wait, {
      errors: ['SageMaker.ValidationException', 'SageMaker.ResourceInUseException'],
      resultPath: '$.create_error',
    });
    const inService = new sfn.Pass(this, `${id}InService`);
    return sfn.Chain.start(create)
      .next(wait)
      .next(describe)
      .next(
        new sfn.Choice(this, `${id}InService?`)
          .when(sfn.Condition.stringEquals(`$.results.${at.slice(2)}.status`, 'InService'), inService)
          .when(sfn.Condition.stringEquals(`$.results.${at.slice(2)}.status`, 'Failed'), componentFailed)
          .otherwise(wait),
      );
  }

  /** One evaluation run per benchmark, each run the eval state machine to completion (`.sync:2`). */
  private evaluate(): sfn.Map {
    const evaluations = new sfn.Map(this, 'Evaluate', {
      itemsPath: '$.evaluations',
      maxConcurrency: DEFAULT_EVALUATION_CONCURRENCY,
      itemSelector: { 'run_id.$': '$$.Map.Item.Value.run_id', 'spec_key.$': '$$.Map.Item.Value.spec_key' },
      resultSelector: { 'runs.$': '$[*].run_id' },
      resultPath: '$.results.evaluate',
    });
    const run = new tasks.StepFunctionsStartExecution(this, 'RunEvaluation', {
      stateMachine: this.props.evaluation,
      integrationPattern: sfn.IntegrationPattern.RUN_JOB,
      associateWithParent: true,
      input: sfn.TaskInput.fromObject({
        run_id: sfn.JsonPath.stringAt('$.run_id'),
        spec_key: sfn.JsonPath.stringAt('$.spec_key'),
      }),
      resultSelector: { 'run_id.$': '$.Input.run_id', 'status.$': '$.Status' },
    });
    run.addRetry({
      errors: ['StepFunctions.ExecutionLimitExceededException', 'StepFunctions.AWSStepFunctionsException'],
      maxAttempts: 6,
      interval: Duration.seconds(30),
      backoffRate: 2,
    });
    evaluations.itemProcessor(run);
    return evaluations;
  }

  /** The gate's inputs from the evaluation reports and held-out losses (`collect`), written beside the run. */
  private collectGateInputs(): tasks.LambdaInvoke {
    return new tasks.LambdaInvoke(this, 'CollectGateInputs', {
      lambdaFunction: this.props.steps,
      inputPath: '$.gate',
      payloadResponseOnly: true,
      retryOnServiceExceptions: true,
      resultPath: '$.results.gate',
    });
  }

  /** The registrar decides with the gate and registers the model package (Approved only when it passed). */
  private register(): tasks.LambdaInvoke {
    return new tasks.LambdaInvoke(this, 'Register', {
      lambdaFunction: this.props.registrar,
      inputPath: '$.registration',
      payloadResponseOnly: true,
      retryOnServiceExceptions: true,
      resultSelector: {
        'model_package_arn.$': '$.model_package_arn',
        'approval_status.$': '$.approval_status',
        'passed.$': '$.decision.passed',
        'reasons.$': '$.decision.reasons',
      },
      resultPath: '$.results.register',
    });
  }

  /** After registering: a failed gate ends here; a passed one is (approved and) deployed. */
  private gateDecision(): sfn.Choice {
    const gateFailed = this.notify(
      'NotifyGateFailed',
      "States.Format('Experiment {} (pipeline {}): the promotion gate FAILED; {} is Rejected and is not deployed. Reasons: {}', $.experiment, $.pipeline_id, $.results.register.value.model_package_arn, States.JsonToString($.results.register.value.reasons))",
      'gate failed',
    ).next(
      new sfn.Fail(this, 'GateFailed', {
        error: 'GateFailed',
        causePath:
          "States.Format('the promotion gate failed: {}', States.JsonToString($.results.register.value.reasons))",
      }),
    );
    const deploy = this.step('deploy', this.placeComponent('Deployed', '$.deploy'))
      .next(this.step('cleanup', this.deleteCandidate()))
      .next(
        this.notify(
          'NotifySucceeded',
          "States.Format('Experiment {} (pipeline {}): passed the promotion gate and serves as {} ({}).', $.experiment, $.pipeline_id, $.deploy.request.InferenceComponentName, $.results.register.value.model_package_arn)",
          'deployed',
        ),
      )
      .next(new sfn.Succeed(this, 'Deployed'));
    const approved = this.props.requireApproval ? this.step('approve', this.approval()).next(deploy) : deploy;
    return new sfn.Choice(this, 'GatePassed?')
      .when(sfn.Condition.stringEquals('$.results.register.value.approval_status', 'Approved'), approved)
      .otherwise(gateFailed);
  }

  /**
   * Production: a person approves the deployment. The topic gets the task token and the command
   * that sends it back (`dapt pipeline approve|reject`); a rejection or no answer in
   * `APPROVAL_TIMEOUT` fails the pipeline. The gate still decided: only Approved packages get here.
   */
  private approval(): tasks.SnsPublish {
    return new tasks.SnsPublish(this, 'WaitForApproval', {
      topic: this.props.topic,
      integrationPattern: sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
      subject: 'Experiment pipeline: approval needed',
      message: sfn.TaskInput.fromObject({
        experiment: sfn.JsonPath.stringAt('$.experiment'),
        pipeline_id: sfn.JsonPath.stringAt('$.pipeline_id'),
        model_package_arn: sfn.JsonPath.stringAt('$.results.register.value.model_package_arn'),
        deploys_as: sfn.JsonPath.stringAt('$.deploy.request.InferenceComponentName'),
        approve: sfn.JsonPath.format(
          'npx dapt pipeline approve --execution {} --token {}',
          sfn.JsonPath.executionId,
          sfn.JsonPath.taskToken,
        ),
        task_token: sfn.JsonPath.taskToken,
      }),
      taskTimeout: sfn.Timeout.duration(APPROVAL_TIMEOUT),
      resultPath: '$.results.approve',
    });
  }

  /** The candidate component served the evaluation only; the deployed one replaces it. */
  private deleteCandidate(): tasks.CallAwsService {
    const remove = new tasks.CallAwsService(this, 'DeleteCandidateComponent', {
      service: 'sagemaker',
      action: 'deleteInferenceComponent',
      parameters: { 'InferenceComponentName.$': '$.candidate.request.InferenceComponentName' },
      iamResources: this.componentArns(),
      resultSelector: { deleted: true },
      resultPath: '$.results.cleanup',
    });
    remove.addRetry({ errors: ['SageMaker.ThrottlingException'], maxAttempts: 6, backoffRate: 2 });
    return remove;
  }

  /** An SNS notification (the message is an intrinsic `States.Format`). */
  private notify(id: string, message: string, what: string): tasks.SnsPublish {
    return new tasks.SnsPublish(this, id, {
      topic: this.props.topic,
      subject: `Experiment pipeline: ${what}`,
      message: sfn.TaskInput.fromJsonPathAt(message),
      resultPath: sfn.JsonPath.DISCARD,
    });
  }

  /** A catch target recording which step failed, then the shared notification and Fail. */
  private failedAt(step: PipelineStep): sfn.IChainable {
    const id = `Failed-${step}`;
    const existing = this.node.tryFindChild(id) as sfn.Pass | undefined;
    if (existing) return existing;
    return new sfn.Pass(this, id, { result: sfn.Result.fromString(step), resultPath: '$.failed_step' }).next(
      this.failed,
    );
  }

  /** Notify the failure (step, error, cause, execution) and fail the execution with the step's error. */
  private failureHandler(): sfn.IChainable {
    return this.notify(
      'NotifyFailed',
      "States.Format('Experiment {} (pipeline {}) FAILED at step {}: {}: {}. Execution: {}', $.experiment, $.pipeline_id, $.failed_step, $.error.Error, $.error.Cause, $$.Execution.Id)",
      'failed',
    ).next(
      new sfn.Fail(this, 'Failed', {
        errorPath: "States.Format('{}.{}', $.failed_step, $.error.Error)",
        causePath: '$.error.Cause',
      }),
    );
  }

  /** The inference components this pipeline may create, describe and delete (its environment's name prefix), and the endpoint. */
  private componentArns(): string[] {
    const region = Stack.of(this).region;
    const arn = (resource: string): string => `arn:${Aws.PARTITION}:sagemaker:${region}:${Aws.ACCOUNT_ID}:${resource}`;
    return [arn(`inference-component/${this.props.namePrefix}-*`), arn(`endpoint/${this.props.endpointName}`)];
  }

  /** What the custom Batch and SageMaker states call; the tasks CDK knows grant themselves. */
  private grantServiceCalls(): void {
    const region = Stack.of(this).region;
    const arn = (service: string, resource: string): string =>
      `arn:${Aws.PARTITION}:${service}:${region}:${Aws.ACCOUNT_ID}:${resource}`;
    const prefix = this.props.namePrefix;
    const role = this.stateMachine.role;
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'SubmitJobsOfThisEnvironment',
        actions: ['batch:SubmitJob', 'batch:TagResource'],
        resources: [...this.props.jobQueueArns, arn('batch', `job-definition/${prefix}-*`)],
      }),
    );
    // DescribeJobs has no resource-level scope; TerminateJob takes a job ARN (whose id Batch assigns).
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({ sid: 'FollowItsJobs', actions: ['batch:DescribeJobs'], resources: ['*'] }),
    );
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'StopItsJobs',
        actions: ['batch:TerminateJob'],
        resources: [arn('batch', 'job/*')],
      }),
    );
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'BatchCompletionEvents',
        actions: ['events:PutTargets', 'events:PutRule', 'events:DescribeRule'],
        resources: [arn('events', 'rule/StepFunctionsGetEventsForBatchJobsRule')],
      }),
    );
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        // Create/Describe/DeleteInferenceComponent are granted by their tasks (componentArns);
        // creating a component with tags also needs AddTags.
        sid: 'TagTheComponentsItCreates',
        actions: ['sagemaker:AddTags'],
        resources: [
          arn('sagemaker', `inference-component/${prefix}-*`),
          arn('sagemaker', `endpoint/${this.props.endpointName}`),
        ],
      }),
    );
  }

  private acknowledgePolicies(): void {
    const policy = this.stateMachine.role.node.tryFindChild('DefaultPolicy') as iam.Policy | undefined;
    if (!policy) return;
    acknowledge(
      policy,
      ['NIST.800.53.R5-IAMNoInlinePolicy', 'HIPAA.Security-IAMNoInlinePolicy'],
      'The StateMachine construct writes its role policy itself (the tasks it runs: Batch jobs, the eval state machine, the steps and registrar functions, adapter components, the topic) and offers no managed-policy option.',
    );
    acknowledgeWildcards(policy, [
      {
        pattern: /:job-definition\/[a-z0-9-]+-\*$/,
        reason:
          "Job definitions of this environment only (its name prefix): the platform's and its run stacks', whose revisions are numbered by Batch.",
      },
      {
        pattern: /:inference-component\/[a-z0-9-]+-\*$/,
        reason:
          "Inference components of this environment only (its name prefix): each pipeline names its candidate and deployed adapter '<prefix>-<envId>-<name>'.",
      },
      {
        pattern: /^\*$/,
        reason:
          'batch:DescribeJobs (which the submitJob.sync integration calls on the job it started), X-Ray and CloudWatch Logs delivery have no resource-level scope.',
      },
      {
        pattern: /:job\/\*$/,
        reason:
          'batch:TerminateJob of the jobs this execution submitted, when it is stopped (submitJob.sync); job ids are assigned by Batch at submission.',
      },
      {
        pattern: /:execution:.*\*$/,
        reason:
          'Describing and stopping the evaluation executions this pipeline starts (`.sync:2`); their names are generated when they start.',
      },
      {
        pattern: /^<[A-Za-z0-9]+>:\*$|^arn:.*:function:.*:\*$|Function[A-Za-z0-9]*\.Arn>:\*$/,
        reason:
          'Any version or alias of the steps function and the registrar (Step Functions calls them by qualified ARN).',
      },
    ]);
  }
}

/** Benchmarks evaluated at once (each run fans out on its own; this bounds the endpoint's load). */
const DEFAULT_EVALUATION_CONCURRENCY = 3;
