import t from 'tap';
import { join } from 'node:path';
import { S3Backend } from '../../../store/backend/s3.js';
import { resolveS3Options } from '../../../store/backend/s3-options.js';
import { requireCapability, tempDir } from '../../helpers/index.js';
import { hasRgw, startRgw, type Rgw } from '../../helpers/rgw.js';
import { backendConformance } from './conformance.js';
import { createBucket } from './s3-bucket.js';

if (requireCapability(t, hasRgw(), 'needs radosgw, radosgw-admin, ceph-mon, ceph-osd, ceph and monmaptool (radosgw ceph-mon ceph-osd ceph-common)')) {
  const dir = await tempDir(t, 'cv-rgw-');
  const started = Date.now();
  const rgw: Rgw = await startRgw(join(dir, 'ceph'));
  t.comment(`radosgw (with its ceph cluster) answered after ${Date.now() - started} ms`);
  t.teardown(() => rgw.stop());
  const env = { AWS_ACCESS_KEY_ID: rgw.accessKeyId, AWS_SECRET_ACCESS_KEY: rgw.secretAccessKey, AWS_ENDPOINT_URL: rgw.endpoint, HOME: dir };
  await createBucket(resolveS3Options({ location: 's3://conformance' }, env));
  let stores = 0;
  backendConformance(t, async (t) => {
    const backend = new S3Backend(resolveS3Options({ location: `s3://conformance/store-${++stores}`, stageDir: await tempDir(t) }, env));
    t.teardown(() => backend.close());
    return backend;
  });
}
