/**
 * What a sweep reads: the swept stacks with their tags, and the lifecycle parameters with their
 * values and times of writing. Shared by the sweeper and `dapt env expiry`.
 */
import {
  type CloudFormationClient,
  DescribeStacksCommand,
  ListStacksCommand,
  type StackStatus,
} from '@aws-sdk/client-cloudformation';
import { DescribeParametersCommand, GetParametersCommand, type SSMClient } from '@aws-sdk/client-ssm';
import { type FoundParameter, type FoundStack, lifecycleParameterUnit } from './decide';

/** Every stack named `<sweptPrefix>...` not yet DELETE_COMPLETE, with its tags. */
export async function findStacks(cloudformation: CloudFormationClient, sweptPrefix: string): Promise<FoundStack[]> {
  const found: FoundStack[] = [];
  let nextToken: string | undefined;
  do {
    const page = await cloudformation.send(
      new ListStacksCommand({ NextToken: nextToken, StackStatusFilter: LIVE_STACK_STATUSES }),
    );
    for (const summary of page.StackSummaries ?? []) {
      if (!summary.StackName?.startsWith(sweptPrefix) || !summary.CreationTime) continue;
      const described = await cloudformation.send(new DescribeStacksCommand({ StackName: summary.StackName }));
      const stack = described.Stacks?.[0];
      found.push({
        name: summary.StackName,
        status: summary.StackStatus ?? 'UNKNOWN',
        statusReason: summary.StackStatusReason,
        createdAt: summary.CreationTime,
        updatedAt: summary.LastUpdatedTime,
        tags: Object.fromEntries((stack?.Tags ?? []).map((t) => [t.Key ?? '', t.Value ?? ''])),
      });
    }
    nextToken = page.NextToken;
  } while (nextToken);
  return found;
}

/** Every lifecycle parameter of this stage under `/<prefix>/`, with its value and time of writing. */
export async function findParameters(
  ssm: SSMClient,
  prefix: string,
  stage: 'experiment' | 'production',
): Promise<FoundParameter[]> {
  const names: string[] = [];
  let nextToken: string | undefined;
  do {
    const page = await ssm.send(
      new DescribeParametersCommand({
        NextToken: nextToken,
        ParameterFilters: [{ Key: 'Name', Option: 'BeginsWith', Values: [`/${prefix}/`] }],
      }),
    );
    for (const p of page.Parameters ?? []) {
      if (p.Name && lifecycleParameterUnit(prefix, stage, p.Name)) names.push(p.Name);
    }
    nextToken = page.NextToken;
  } while (nextToken);
  const found: FoundParameter[] = [];
  for (let i = 0; i < names.length; i += GET_PARAMETERS_BATCH) {
    const page = await ssm.send(new GetParametersCommand({ Names: names.slice(i, i + GET_PARAMETERS_BATCH) }));
    for (const p of page.Parameters ?? []) {
      if (p.Name && p.Value !== undefined && p.LastModifiedDate) {
        found.push({ name: p.Name, value: p.Value, modifiedAt: p.LastModifiedDate });
      }
    }
  }
  return found;
}

/** Every stack status but DELETE_COMPLETE (ListStacks keeps deleted stacks for 90 days). */
const LIVE_STACK_STATUSES: StackStatus[] = [
  'CREATE_IN_PROGRESS',
  'CREATE_FAILED',
  'CREATE_COMPLETE',
  'ROLLBACK_IN_PROGRESS',
  'ROLLBACK_FAILED',
  'ROLLBACK_COMPLETE',
  'DELETE_IN_PROGRESS',
  'DELETE_FAILED',
  'UPDATE_IN_PROGRESS',
  'UPDATE_COMPLETE_CLEANUP_IN_PROGRESS',
  'UPDATE_COMPLETE',
  'UPDATE_FAILED',
  'UPDATE_ROLLBACK_IN_PROGRESS',
  'UPDATE_ROLLBACK_FAILED',
  'UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS',
  'UPDATE_ROLLBACK_COMPLETE',
  'REVIEW_IN_PROGRESS',
  'IMPORT_IN_PROGRESS',
  'IMPORT_COMPLETE',
  'IMPORT_ROLLBACK_IN_PROGRESS',
  'IMPORT_ROLLBACK_FAILED',
  'IMPORT_ROLLBACK_COMPLETE',
];
/** GetParameters takes at most 10 names. */
const GET_PARAMETERS_BATCH = 10;
