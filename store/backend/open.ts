/** Opens the backend a spec names: how worker threads reach the same store as their parent. */
import type { Backend, BackendSpec } from './backend.js';
import { FsBackend } from './fs.js';

export function openBackend(spec: BackendSpec): Backend {
  switch (spec.kind) {
    case 'fs':
      return new FsBackend(spec.dir);
    case 's3':
      throw new Error('the s3 backend is not built yet');
  }
}
