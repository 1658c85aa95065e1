import { Stack, type StackProps } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as kms from 'aws-cdk-lib/aws-kms';
import type { Construct } from 'constructs';
import type { ResolvedConfig } from '../config/load';
import type { ServingConfig } from '../config/schema';
import { AdapterComponent } from '../constructs/adapter-component';
import { BaseModelComponent } from '../constructs/base-model-component';
import { LakeImports } from '../constructs/lake-imports';
import { ModelRegistry } from '../constructs/model-registry';
import { PlatformKey } from '../constructs/platform-key';
import { PlatformParameters } from '../constructs/platform-parameters';
import { ServingAlarms } from '../constructs/serving-alarms';
import { ServingEndpoint } from '../constructs/serving-endpoint';

export interface ServingStackProps extends StackProps {
  /** The resolved stage config; the stack reads `serving`, `stage`, `prefix`, `envId` and the CIDR. */
  readonly config: ResolvedConfig & { readonly serving: ServingConfig };
  /** The network stack's VPC; the endpoint's interfaces go in its isolated endpoint subnets. */
  readonly vpc: ec2.IVpc;
  /** Prefix list of the S3 gateway endpoint: model artifacts and image layers come from S3. */
  readonly s3PrefixListId: string;
}

/**
 * Serving: one SageMaker endpoint (`ServingEndpoint`) hosting the base model as an inference
 * component (`BaseModelComponent`) and each LoRA adapter as a component on it
 * (`AdapterComponent`), with alarms (`ServingAlarms`), and the domain's `ModelRegistry`. An experiment scales to zero instances when
 * idle and wakes on the first request; production keeps at least one copy. The lake is read
 * through SSM.
 */
export class ServingStack extends Stack {
  readonly endpoint: ServingEndpoint;
  readonly base: BaseModelComponent;
  readonly adapters: AdapterComponent[];
  readonly registry: ModelRegistry;

  constructor(scope: Construct, id: string, props: ServingStackProps) {
    super(scope, id, props);
    const { config } = props;
    const { serving } = config;
    const namePrefix = `${config.prefix}-${config.envId}`;
    const scaleToZero = config.stage !== 'production';
    const key = new PlatformKey(this, 'ServingKey', {
      alias: `${namePrefix}-serving`,
      description: `Encrypts the serving endpoint's volumes and alarm topic in ${namePrefix}`,
      destroyOnDelete: config.behaviour.destroyOnDelete,
    }).key;
    const lake = new LakeImports(this, config.ssmRoot);
    const modelsBucket = lake.bucket('models');
    this.endpoint = new ServingEndpoint(this, 'Endpoint', {
      serving,
      endpointName: `${namePrefix}-serving`,
      scaleToZero,
      vpc: props.vpc,
      vpcCidr: config.network.cidr,
      s3PrefixListId: props.s3PrefixListId,
      modelsBucket,
      evalBucket: lake.bucket('eval'),
      lakeKey: kms.Key.fromKeyArn(this, 'LakeKey', lake.keyArn()),
      volumeKey: key,
    });
    const component = (name: string): string => `${namePrefix}-${name}`;
    this.base = new BaseModelComponent(this, 'BaseModel', {
      serving,
      endpoint: this.endpoint,
      componentName: component(serving.baseModel.name),
      modelsBucket,
      scaleToZero,
    });
    this.adapters = serving.adapters.map(
      (adapter) =>
        new AdapterComponent(this, `Adapter-${adapter.name}`, {
          componentName: component(adapter.name),
          artifact: adapter.artifact,
          base: this.base,
          endpoint: this.endpoint,
          modelsBucket,
        }),
    );
    const alarms = new ServingAlarms(this, 'Alarms', {
      alarms: serving.alarms,
      componentNames: [this.base.componentName],
      key,
      topicName: `${namePrefix}-serving-alarms`,
    });
    this.registry = new ModelRegistry(this, 'Registry', {
      groupName: `${namePrefix}-${serving.domain}`,
      artifactsBucket: lake.bucket('artifacts'),
      modelsBucket,
      lakeKeyArn: lake.keyArn(),
      vpc: props.vpc,
      vpcCidr: config.network.cidr,
      s3PrefixListId: props.s3PrefixListId,
      encryptionKey: key,
      logRetentionDays: config.logRetentionDays,
      destroyOnDelete: config.behaviour.destroyOnDelete,
    });
    this.publishParameters(config.ssmRoot, alarms.topic.topicArn);
  }

  /** What the CLI (`dapt serve`) and the evaluation read about serving. */
  private publishParameters(ssmRoot: string, alarmTopicArn: string): void {
    const parameters = new PlatformParameters(this, 'Parameters', ssmRoot);
    parameters.publish(
      'servingModelPackageGroup',
      this.registry.group.modelPackageGroupName,
      "The domain's model package group",
    );
    parameters.publish(
      'servingRegistrarFunctionArn',
      this.registry.registrar.function.functionArn,
      'Lambda that gates and registers a trained model',
    );
    parameters.publish('servingEndpointName', this.endpoint.endpointName, 'SageMaker endpoint of the served models');
    parameters.publish('servingBaseComponent', this.base.componentName, 'Inference component of the base model');
    parameters.publish('servingAlarmTopicArn', alarmTopicArn, 'SNS topic the serving alarms notify');
  }
}
