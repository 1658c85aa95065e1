import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as sagemaker from 'aws-cdk-lib/aws-sagemaker';
import { Construct } from 'constructs';
import type { BaseModelComponent } from './base-model-component';
import type { ServingEndpoint } from './serving-endpoint';

export interface AdapterComponentProps {
  /** The adapter's component name, `<prefix>-<envId>-<adapter name>`; requests name it to use the adapter. */
  readonly componentName: string;
  /** Key prefix of the adapter in the models zone (a PEFT adapter: adapter_config.json and weights). */
  readonly artifact: string;
  /** The base model the adapter was trained on; it shares the base's copies and scales with them. */
  readonly base: BaseModelComponent;
  /** The endpoint the base is placed on. */
  readonly endpoint: ServingEndpoint;
  /** The models zone holding the artifact. */
  readonly modelsBucket: s3.IBucket;
}

/**
 * One LoRA adapter as an inference component on its base: no compute of its own and no copies
 * (it is loaded into the base's copies when a request names it), so adding an adapter costs
 * nothing while idle.
 */
export class AdapterComponent extends Construct {
  readonly component: sagemaker.CfnInferenceComponent;

  constructor(scope: Construct, id: string, props: AdapterComponentProps) {
    super(scope, id);
    this.component = new sagemaker.CfnInferenceComponent(this, 'Component', {
      inferenceComponentName: props.componentName,
      endpointName: props.endpoint.endpoint.attrEndpointName,
      variantName: props.endpoint.variantName,
      specification: {
        baseInferenceComponentName: props.base.componentName,
        container: { artifactUrl: props.modelsBucket.s3UrlForObject(props.artifact) },
      },
    });
    // Named, not referenced (the resource has no name attribute): the base must exist first.
    this.component.node.addDependency(props.base.component);
  }
}
