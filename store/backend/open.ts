/** Opens the backend a spec names: how worker threads reach the same store as their parent. */
import type { Backend, BackendSpec } from './backend.js';
import { FsBackend } from './fs.js';
import { S3Backend } from './s3.js';
import { resolveS3Options, type S3Input } from './s3-options.js';

export function openBackend(spec: BackendSpec): Backend {
  switch (spec.kind) {
    case 'fs':
      return new FsBackend(spec.dir);
    case 's3':
      return new S3Backend(resolveS3Options(spec.options as S3Input));
  }
}
