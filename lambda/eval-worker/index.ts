/** Worker Lambda entry point: wiring only; the logic is in ./worker.ts and ../shared/. */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { S3Client } from '@aws-sdk/client-s3';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { AWS_HTTP } from '../shared/aws-http';
import { requireEnv } from '../shared/env';
import { createWorkerHandler } from './worker';

const env = requireEnv([
  'EVAL_BUCKET',
  'IDEMPOTENCY_TABLE',
  'POWERTOOLS_SERVICE_NAME',
  'POWERTOOLS_METRICS_NAMESPACE',
] as const);

export const handler = createWorkerHandler({
  s3: new S3Client({ requestHandler: AWS_HTTP }),
  dynamodb: new DynamoDBClient({ requestHandler: AWS_HTTP }),
  bucket: env.EVAL_BUCKET,
  idempotencyTable: env.IDEMPOTENCY_TABLE,
  logger: new Logger(),
  metrics: new Metrics(),
});
