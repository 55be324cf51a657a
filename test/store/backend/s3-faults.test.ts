/** Bad input and faults against a real radosgw: one line naming the problem, a stable code, nothing written. */
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { S3Backend } from '../../../store/backend/s3.js';
import { resolveS3Options } from '../../../store/backend/s3-options.js';
import { ChunkvaultError } from '../../../store/errors.js';
import { requireCapability, tempDir } from '../../helpers/index.js';
import { freePort } from '../../helpers/ceph.js';
import { hasRgw, startRgw } from '../../helpers/rgw.js';
import { createBucket } from './s3-bucket.js';

async function failureOf(work: Promise<unknown>): Promise<ChunkvaultError> {
  const err = await work.then(() => null, (e: unknown) => e);
  if (!(err instanceof ChunkvaultError)) throw new Error(`expected a ChunkvaultError, got ${String(err)}`);
  return err;
}

if (requireCapability(t, hasRgw(), 'needs radosgw, radosgw-admin, ceph-mon, ceph-osd, ceph and monmaptool (radosgw ceph-mon ceph-osd ceph-common)')) {
  const dir = await tempDir(t, 'cv-rgw-');
  const rgw = await startRgw(join(dir, 'ceph'));
  t.teardown(() => rgw.stop());
  const env = { AWS_ACCESS_KEY_ID: rgw.accessKeyId, AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey, AWS_ENDPOINT_URL: rgw.endpoint, HOME: dir };
  await createBucket(resolveS3Options({ location: 's3://faults' }, env));
  const good = new S3Backend(resolveS3Options({ location: 's3://faults/store' }, env));
  t.teardown(() => good.close());

  const noSecretIn = (t: Test, err: ChunkvaultError, secret: string): void => {
    t.notOk(err.message.includes(secret) || JSON.stringify(err.toJSON()).includes(secret), 'the secret is in neither the message nor toJSON');
    t.notOk(err.message.includes('\n'), 'the message is one line');
  };

  for (const [what, keys] of [
    ['an unknown access key', { accessKeyId: 'CVNOSUCHKEY000000000', secretAccessKey: rgw.secretAccessKey }],
    ['a wrong secret key', { accessKeyId: rgw.accessKeyId, secretAccessKey: 'not-the-secret-key-0123456789' }],
  ] as const) {
    t.test(`${what}: CV_BACKEND_AUTH, not retried, nothing written`, async (t) => {
      const backend = new S3Backend(resolveS3Options({ location: 's3://faults/store', ...keys }, env));
      t.teardown(() => backend.close());
      const err = await failureOf(backend.put('chunkvault.json', Buffer.from('{}')));
      t.equal(err.code, 'CV_BACKEND_AUTH');
      t.equal(err.exitCode, 2);
      t.match(err.message, /^s3:\/\/faults\/store: http:\/\/127\.0\.0\.1:\d+ refused the credentials \((InvalidAccessKeyId|SignatureDoesNotMatch)\); check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or the AWS profile$/);
      noSecretIn(t, err, keys.secretAccessKey);
      t.same(backend.stats().requests, { put: 1 }, 'a 4xx is not retried');
      t.equal((await failureOf(backend.get('chunkvault.json'))).code, 'CV_BACKEND_AUTH', 'a read is refused alike');
      t.same(await good.list(''), [], 'nothing was written');
    });
  }

  t.test('a missing bucket: CV_NO_SUCH_BUCKET from reads, stat, list and writes', async (t) => {
    const backend = new S3Backend(resolveS3Options({ location: 's3://no-such-bucket/store' }, env));
    t.teardown(() => backend.close());
    for (const [op, work] of [
      ['get', () => backend.get('chunkvault.json')],
      ['stat', () => backend.stat('chunkvault.json')],
      ['readInto', () => backend.readInto('packs/1.pack', 0, Buffer.alloc(8))],
      ['list', () => backend.list('')],
      ['put', () => backend.put('chunkvault.json', Buffer.from('{}'))],
      ['create', () => backend.create('catalog/1.json', Buffer.from('{}'))],
    ] as const) {
      const err = await failureOf(work());
      t.equal(err.code, 'CV_NO_SUCH_BUCKET', `${op}: ${err.message}`);
      t.match(err.message, /^s3:\/\/no-such-bucket\/store: no bucket 'no-such-bucket' at http:\/\/127\.0\.0\.1:\d+; create it or check the --store name and the endpoint$/);
    }
  });

  t.test('an unreachable endpoint (a closed port): CV_BACKEND_UNREACHABLE after the bounded retries, quickly', async (t) => {
    const port = await freePort();
    const backend = new S3Backend(resolveS3Options({ location: 's3://faults/store', endpoint: `http://127.0.0.1:${port}` }, env));
    t.teardown(() => backend.close());
    const started = Date.now();
    const err = await failureOf(backend.get('chunkvault.json'));
    const elapsed = Date.now() - started;
    t.equal(err.code, 'CV_BACKEND_UNREACHABLE');
    t.equal(err.message, `s3://faults/store: cannot reach http://127.0.0.1:${port} (ECONNREFUSED, 5 attempts); check the endpoint (--s3-endpoint, AWS_ENDPOINT_URL_S3) and that the server runs`);
    noSecretIn(t, err, rgw.secretAccessKey);
    t.equal(backend.stats().requests.get, 5, 'five attempts');
    t.equal(backend.stats().retries, 4);
    // Backoff 100 + 200 + 400 + 800 ms between the five attempts.
    t.ok(elapsed >= 1400 && elapsed < 5000, `gave up after ${elapsed} ms`);
  });

  t.test('stats count requests by kind and bytes both ways', async (t) => {
    const backend = new S3Backend(resolveS3Options({ location: 's3://faults/stats' }, env));
    t.teardown(() => backend.close());
    await backend.put('a', Buffer.alloc(1000, 1));
    await backend.readInto('a', 100, Buffer.alloc(200));
    await backend.stat('a');
    const stats = backend.stats();
    t.same(stats.requests, { put: 1, range: 1, head: 1 });
    t.equal(stats.bytesSent, 1000);
    t.equal(stats.bytesReceived, 200);
    t.equal(stats.retries, 0);
  });
}
