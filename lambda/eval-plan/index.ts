/** Plan Lambda entry point: wiring only; the logic is in ./plan.ts and ../shared/. */
import { S3Client } from '@aws-sdk/client-s3';
import { Logger } from '@aws-lambda-powertools/logger';
import { AWS_HTTP } from '../shared/aws-http';
import { requireEnv } from '../shared/env';
import { createPlanHandler } from './plan';

const env = requireEnv(['EVAL_BUCKET', 'POWERTOOLS_SERVICE_NAME'] as const);

export const handler = createPlanHandler({
  s3: new S3Client({ requestHandler: AWS_HTTP }),
  bucket: env.EVAL_BUCKET,
  logger: new Logger(),
});
