import * as budgets from 'aws-cdk-lib/aws-budgets';
import { Construct } from 'constructs';

export interface ExperimentBudgetProps {
  /** Name of the budget, unique in the account, e.g. `dapt-exp-alice`. */
  readonly budgetName: string;
  /** The value of the `experiment` cost-allocation tag whose costs the budget counts. */
  readonly experiment: string;
  /** Monthly limit in USD (`lifecycle.budget.monthlyUsd`). */
  readonly monthlyUsd: number;
  /**
   * Addresses told at 80% actual and 100% forecasted spend.
   * @see https://docs.aws.amazon.com/cost-management/latest/userguide/budgets-controls.html (10 email subscribers per notification)
   */
  readonly notificationEmails: readonly string[];
  /** The lifecycle topic, told too (its policy and key policy must let budgets.amazonaws.com publish). */
  readonly topicArn: string;
}

/**
 * An AWS Budgets cost budget of one experiment (environment or run stack), counting the costs
 * tagged `experiment=<name>`. The tag must be activated once as a cost-allocation tag in the
 * Billing console (no CloudFormation resource does that); until then the budget counts nothing.
 */
export class ExperimentBudget extends Construct {
  readonly budget: budgets.CfnBudget;

  constructor(scope: Construct, id: string, props: ExperimentBudgetProps) {
    super(scope, id);
    const subscribers = [
      ...props.notificationEmails.map((address) => ({ subscriptionType: 'EMAIL', address })),
      { subscriptionType: 'SNS', address: props.topicArn },
    ];
    const notification = (notificationType: 'ACTUAL' | 'FORECASTED', threshold: number) => ({
      notification: { notificationType, comparisonOperator: 'GREATER_THAN', threshold, thresholdType: 'PERCENTAGE' },
      subscribers,
    });
    this.budget = new budgets.CfnBudget(this, 'Resource', {
      budget: {
        budgetName: props.budgetName,
        budgetType: 'COST',
        timeUnit: 'MONTHLY',
        budgetLimit: { amount: props.monthlyUsd, unit: 'USD' },
        // User-defined cost-allocation tags are filtered as `user:<key>$<value>`.
        costFilters: { TagKeyValue: [`user:experiment$${props.experiment}`] },
      },
      notificationsWithSubscribers: [
        notification('ACTUAL', DEFAULT_ACTUAL_PERCENT),
        notification('FORECASTED', DEFAULT_FORECASTED_PERCENT),
      ],
    });
  }
}

/** Actual spend that warns: early enough to stop or extend deliberately. */
const DEFAULT_ACTUAL_PERCENT = 80;
/** Forecasted spend that warns: the month is on course to exceed the budget. */
const DEFAULT_FORECASTED_PERCENT = 100;
