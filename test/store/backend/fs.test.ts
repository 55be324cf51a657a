import t from 'tap';
import { join } from 'node:path';
import { FsBackend } from '../../../store/backend/fs.js';
import { tempDir } from '../../helpers/index.js';
import { backendConformance } from './conformance.js';

backendConformance(t, async (t) => {
  const backend = new FsBackend(join(await tempDir(t), 'store'));
  t.teardown(() => backend.close());
  return backend;
});
