import { Duration } from 'aws-cdk-lib';
import * as appscaling from 'aws-cdk-lib/aws-applicationautoscaling';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cwActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import { Construct } from 'constructs';

export interface ComponentScalingProps {
  /** The inference component whose copy count is scaled. */
  readonly componentName: string;
  /** Scale in to zero copies when idle and back out on the first request that finds none (experiments). */
  readonly scaleToZero: boolean;
  /** Most copies the component may run. */
  readonly maxCopies: number;
  /** Concurrent requests per copy that target tracking holds. */
  readonly targetConcurrentRequestsPerCopy: number;
}

/**
 * Copy-count scaling of a base-model inference component: target tracking on concurrent requests
 * per copy, between 1 (production) or 0 (experiments) and `maxCopies`. At zero copies target
 * tracking has no traffic to track, so a step policy on `NoCapacityInvocationFailures` (a request
 * that found no copy) adds one; the endpoint's managed instance scaling then starts an instance.
 */
export class ComponentScaling extends Construct {
  readonly target: appscaling.ScalableTarget;
  /** Raised by a request that found no copy to serve it; only where the component scales to zero. */
  readonly wakeUpAlarm?: cloudwatch.Alarm;

  constructor(scope: Construct, id: string, props: ComponentScalingProps) {
    super(scope, id);
    this.target = new appscaling.ScalableTarget(this, 'Target', {
      serviceNamespace: appscaling.ServiceNamespace.SAGEMAKER,
      resourceId: `inference-component/${props.componentName}`,
      scalableDimension: 'sagemaker:inference-component:DesiredCopyCount',
      minCapacity: props.scaleToZero ? 0 : 1,
      maxCapacity: props.maxCopies,
    });
    this.target.scaleToTrackMetric('ConcurrentRequests', {
      predefinedMetric:
        appscaling.PredefinedMetric.SAGEMAKER_INFERENCE_COMPONENT_CONCURRENT_REQUESTS_PER_COPY_HIGH_RESOLUTION,
      targetValue: props.targetConcurrentRequestsPerCopy,
      scaleInCooldown: DEFAULT_SCALE_IN_COOLDOWN,
      scaleOutCooldown: DEFAULT_SCALE_OUT_COOLDOWN,
    });
    if (props.scaleToZero) this.wakeUpAlarm = this.addWakeUp(props.componentName);
  }

  /** One copy when a request finds none: the step policy AWS documents for scaling out from zero. */
  private addWakeUp(componentName: string): cloudwatch.Alarm {
    const policy = new appscaling.StepScalingAction(this, 'WakeUp', {
      scalingTarget: this.target,
      adjustmentType: appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
      cooldown: DEFAULT_WAKE_UP_COOLDOWN,
    });
    policy.addAdjustment({ lowerBound: 0, adjustment: 1 });
    const alarm = new cloudwatch.Alarm(this, 'NoCapacity', {
      alarmDescription: `A request to ${componentName} found no copy running; adds one (scale out from zero)`,
      metric: new cloudwatch.Metric({
        namespace: 'AWS/SageMaker',
        metricName: 'NoCapacityInvocationFailures',
        dimensionsMap: { InferenceComponentName: componentName },
        statistic: cloudwatch.Stats.MAXIMUM,
        period: Duration.minutes(1),
      }),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    alarm.addAlarmAction(new cwActions.ApplicationScalingAction(policy));
    return alarm;
  }
}

/** An idle copy goes after 15 quiet minutes: a cold start costs minutes, so not sooner. */
const DEFAULT_SCALE_IN_COOLDOWN = Duration.minutes(15);
const DEFAULT_SCALE_OUT_COOLDOWN = Duration.minutes(1);
/** A new copy takes minutes to load; one wake-up per cold start. */
const DEFAULT_WAKE_UP_COOLDOWN = Duration.minutes(5);
