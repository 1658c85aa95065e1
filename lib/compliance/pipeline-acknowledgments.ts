/**
 * The findings the CDK pipeline's own constructs raise, acknowledged on the resources they are
 * about, each with why it does not apply or is accepted. `pipelines.CodePipeline` creates its
 * roles, their inline policies and its CodeBuild projects itself and offers no option to shape
 * them; every wildcard they grant is matched against a pattern below, so one the next CDK version
 * adds fails the synth instead of passing unexplained.
 */
import { Stack } from 'aws-cdk-lib';
import * as codebuild from 'aws-cdk-lib/aws-codebuild';
import * as iam from 'aws-cdk-lib/aws-iam';
import type { Construct } from 'constructs';
import { acknowledge, acknowledgeWildcards, type ExpectedWildcard } from './acknowledge';

/** The wildcards CDK pipelines' role policies grant, and why each is acceptable. */
const PIPELINE_WILDCARDS: readonly ExpectedWildcard[] = [
  {
    pattern: /^kms:(GenerateDataKey|ReEncrypt)\*$/,
    reason:
      "Encrypting and re-encrypting pipeline artifacts with the delivery key only (the statement's resource is that key); CDK's grant names the action families.",
  },
  {
    pattern: /^s3:(Abort|DeleteObject|GetBucket|GetObject|List)\*$/,
    reason:
      "Reading and writing pipeline artifacts in the artifact bucket only (the statement's resources are that bucket and its objects); CDK's grant names the action families.",
  },
  {
    pattern: /^<ArtifactBucket[A-Za-z0-9]*\.Arn>\/\*$/,
    reason: 'CodePipeline names artifact objects per execution; access is limited to the artifact bucket.',
  },
  {
    pattern: /:codebuild:[a-z0-9-]+:(\d{12}|<AWS::AccountId>):report-group\/.*\*$/,
    reason: "CodeBuild report groups are named by build at run time; only this account and region's.",
  },
  {
    pattern: /:logs:[a-z0-9-]+:(\d{12}|<AWS::AccountId>):log-group:\/aws\/codebuild\/.*\*$/,
    reason: "CodeBuild writes each build's log stream, named at run time, under /aws/codebuild/ of this account.",
  },
  {
    pattern: /^arn:\*:iam::(\d{12}|<AWS::AccountId>):role\/\*$/,
    reason:
      "Self-mutation assumes the CDK bootstrap roles to deploy the pipeline's own stack; CDK restricts the statement to roles tagged aws-cdk:bootstrap-role.",
  },
  {
    pattern: /^\*$/,
    reason:
      'cloudformation:DescribeStacks and s3:ListBucket (self-mutation reads stack and bootstrap state) and the CodeBuild build calls of the asset-publishing projects, which CDK grants account-wide; no data action.',
  },
];

/** Acknowledges the findings on the resources `pipelines.CodePipeline` creates under `pipeline`. */
export function acknowledgePipelineFindings(pipeline: Construct): void {
  for (const child of pipeline.node.findAll()) {
    if (child instanceof iam.Policy) {
      acknowledge(
        child,
        ['NIST.800.53.R5-IAMNoInlinePolicy', 'HIPAA.Security-IAMNoInlinePolicy'],
        "CDK pipelines writes its roles' policies itself (one per action and CodeBuild project, scoped to the artifact bucket, the delivery key and its own projects) and offers no managed-policy option.",
      );
      acknowledgeWildcards(child, PIPELINE_WILDCARDS);
    }
    if (child instanceof codebuild.CfnProject && takesPipelineInput(child)) {
      acknowledge(
        child,
        ['HIPAA.Security-CodeBuildProjectSourceRepoUrl'],
        'These projects take their input from the pipeline (a CODEPIPELINE source), not from a repository URL, so no URL can carry credentials; the repository is reached through the CodeConnections connection.',
      );
    }
  }
}

/** A project whose source is the pipeline's artifact (every project CDK pipelines creates). */
function takesPipelineInput(project: codebuild.CfnProject): boolean {
  const source = Stack.of(project).resolve(project.source) as { type?: string } | undefined;
  return source?.type === 'CODEPIPELINE';
}
