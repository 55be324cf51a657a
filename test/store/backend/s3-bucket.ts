/** Makes a bucket on a test server: chunkvault itself never creates buckets (they are the operator's). */
import { S3Client } from '../../../store/backend/s3-client.js';
import type { S3Options } from '../../../store/backend/s3-options.js';

export async function createBucket(options: S3Options): Promise<void> {
  const client = new S3Client(options);
  try {
    const res = await client.send({ kind: 'createBucket', method: 'PUT', key: '' });
    if (res.status !== 200) throw client.failure({ kind: 'createBucket', method: 'PUT', key: '' }, res);
  } finally {
    client.close();
  }
}
