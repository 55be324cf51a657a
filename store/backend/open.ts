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

/** What the command line may say about an s3:// store; the rest comes from the AWS variables and files. */
export interface S3Access {
  endpoint?: string;
  region?: string;
}

/** The backend of a --store value: `s3://BUCKET/PREFIX`, else a local directory. */
export function backendAt(location: string, access: S3Access = {}): Backend {
  if (!location.startsWith('s3://')) return new FsBackend(location);
  return new S3Backend(resolveS3Options({ location, ...definedOnly(access) }));
}

function definedOnly(access: S3Access): S3Access {
  return Object.fromEntries(Object.entries(access).filter(([, value]) => value !== undefined));
}
