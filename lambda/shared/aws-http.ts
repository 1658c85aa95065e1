/**
 * Timeouts for the Lambdas' own AWS calls (S3, DynamoDB). Without them a call on a connection
 * that went silent waits until the Lambda times out; with them it fails fast and the SDK's own
 * retries (3 attempts by default) try again. Model calls have their own, longer timeout
 * (providers/factory.ts).
 */
// throwOnRequestTimeout: without it this SDK only logs a warning when requestTimeout passes.
export const AWS_HTTP = { connectionTimeout: 3_000, requestTimeout: 30_000, throwOnRequestTimeout: true } as const;
