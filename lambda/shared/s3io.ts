/** Small S3 helpers: read an object as text/bytes (a missing key names bucket and key), write text. */
import { GetObjectCommand, NoSuchKey, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';

/** The object is missing. */
export class MissingObjectError extends Error {
  override readonly name = 'MissingObjectError';
}

export async function getBytes(s3: S3Client, bucket: string, key: string): Promise<Uint8Array> {
  try {
    const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return (await response.Body?.transformToByteArray()) ?? new Uint8Array();
  } catch (err) {
    if (err instanceof NoSuchKey || (err as { name?: string }).name === 'NoSuchKey') {
      throw new MissingObjectError(`s3://${bucket}/${key} does not exist`);
    }
    throw err;
  }
}

export async function getText(s3: S3Client, bucket: string, key: string): Promise<string> {
  return new TextDecoder('utf-8', { fatal: true }).decode(await getBytes(s3, bucket, key));
}

export async function putText(
  s3: S3Client,
  bucket: string,
  key: string,
  body: string,
  contentType = 'application/json',
): Promise<void> {
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentType: contentType }));
}
