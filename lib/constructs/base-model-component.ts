import { Aws, Stack } from 'aws-cdk-lib';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as sagemaker from 'aws-cdk-lib/aws-sagemaker';
import { Construct } from 'constructs';
import type { ServingConfig } from '../config/schema';
import { ComponentScaling } from './component-scaling';
import type { ServingEndpoint } from './serving-endpoint';

export interface BaseModelComponentProps {
  /** The `serving` section of the stage config: the base model, image, copy size, LoRA limits, scaling. */
  readonly serving: ServingConfig;
  /** The endpoint the component is placed on. */
  readonly endpoint: ServingEndpoint;
  /** The component's name, `<prefix>-<envId>-<baseModel.name>`. */
  readonly componentName: string;
  /** The models zone holding `serving.baseModel.artifact`. */
  readonly modelsBucket: s3.IBucket;
  /** Scale in to zero copies when idle (experiments). */
  readonly scaleToZero: boolean;
}

/**
 * The base model on the endpoint: a SageMaker model running the pinned large-model-inference
 * image over the uncompressed artifact in the models zone, with LoRA adapters enabled at run time,
 * as an inference component with its GPUs and memory per copy, scaled by `ComponentScaling`.
 */
export class BaseModelComponent extends Construct {
  readonly component: sagemaker.CfnInferenceComponent;
  readonly componentName: string;
  readonly scaling: ComponentScaling;

  constructor(scope: Construct, id: string, props: BaseModelComponentProps) {
    super(scope, id);
    const { serving } = props;
    this.componentName = props.componentName;
    const model = new sagemaker.CfnModel(this, 'Model', {
      executionRoleArn: props.endpoint.executionRole.roleArn,
      enableNetworkIsolation: true,
      primaryContainer: {
        image: servingImageUri(this, serving),
        modelDataSource: {
          s3DataSource: {
            s3Uri: props.modelsBucket.s3UrlForObject(serving.baseModel.artifact),
            s3DataType: 'S3Prefix',
            compressionType: 'None',
          },
        },
        environment: loraEnvironment(serving),
      },
    });
    // The role's policy must exist before SageMaker uses the role to pull the image and weights.
    model.node.addDependency(props.endpoint.executionPolicy);
    this.component = new sagemaker.CfnInferenceComponent(this, 'Component', {
      inferenceComponentName: props.componentName,
      endpointName: props.endpoint.endpoint.attrEndpointName,
      variantName: props.endpoint.variantName,
      specification: {
        modelName: model.attrModelName,
        computeResourceRequirements: {
          numberOfAcceleratorDevicesRequired: serving.acceleratorsPerCopy,
          minMemoryRequiredInMb: serving.memoryPerCopyMb,
        },
      },
      runtimeConfig: { copyCount: 1 },
    });
    this.scaling = new ComponentScaling(this, 'Scaling', {
      componentName: props.componentName,
      scaleToZero: props.scaleToZero,
      maxCopies: serving.maxCopies,
      targetConcurrentRequestsPerCopy: serving.targetConcurrentRequestsPerCopy,
    });
    this.scaling.target.node.addDependency(this.component);
  }
}

/** The pinned image's URI in this stack's region (AWS publishes the LMI images per region). */
export function servingImageUri(scope: Construct, serving: ServingConfig): string {
  const { account, repository, tag } = serving.image;
  return `${account}.dkr.ecr.${Stack.of(scope).region}.${Aws.URL_SUFFIX}/${repository}:${tag}`;
}

/** LMI (vLLM) settings that serve adapters at run time beside the base model. */
function loraEnvironment(serving: ServingConfig): Record<string, string> {
  return {
    OPTION_ROLLING_BATCH: 'vllm',
    OPTION_ENABLE_LORA: 'true',
    OPTION_MAX_LORAS: String(serving.maxLoadedAdapters),
    OPTION_MAX_LORA_RANK: String(serving.maxLoraRank),
    OPTION_TENSOR_PARALLEL_DEGREE: String(serving.acceleratorsPerCopy),
  };
}
