/** fuse-native (CommonJS, untyped): the part of its API the mount uses, typed. */
import { createRequire } from 'node:module';

export interface Attributes {
  mode: number;
  size: number;
  mtime: Date;
  atime: Date;
  ctime: Date;
  nlink: number;
  uid: number;
  gid: number;
  blocks?: number;
}

export interface FsStats {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail: number;
  fsid: number;
  flag: number;
  namemax: number;
}

/** Every callback takes 0 or a negative errno first; read's "error" is the byte count. */
export interface FuseOperations {
  getattr(path: string, cb: (err: number, attr?: Attributes) => void): void;
  readdir(path: string, cb: (err: number, names?: string[]) => void): void;
  readlink(path: string, cb: (err: number, target?: string) => void): void;
  open(path: string, flags: number, cb: (err: number, fd?: number) => void): void;
  read(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErr: number) => void): void;
  release(path: string, fd: number, cb: (err: number) => void): void;
  statfs(path: string, cb: (err: number, stats?: FsStats) => void): void;
}

export interface FuseOptions {
  timeout: false;
  allowOther?: boolean;
  fsname?: string;
  subtype?: string;
}

export interface FuseMount {
  mount(cb: (err: Error | null) => void): void;
  unmount(cb: (err: Error | null) => void): void;
}

interface FuseModule {
  new (mountpoint: string, ops: FuseOperations, options: FuseOptions): FuseMount;
  ENOENT: number;
  EIO: number;
  EBUSY: number;
  EBADF: number;
  EINVAL: number;
  ENOTDIR: number;
  EPERM: number;
  ENOSPC: number;
}

const require = createRequire(import.meta.url);
export const Fuse = require('fuse-native') as FuseModule;

/**
 * fuse-native builds its `-o` list only from the options it knows; `extra` are libfuse
 * mount options it has no name for (e.g. `ro`, `direct_io`), appended to that list.
 */
export function createFuse(mountpoint: string, ops: FuseOperations, options: FuseOptions, extra: string[]): FuseMount {
  const WithExtraOptions = class extends (Fuse as unknown as new (...args: unknown[]) => { _fuseOptions(): string }) {
    _fuseOptions(): string {
      const known = super._fuseOptions();
      return known === '' ? `-o${extra.join(',')}` : [known, ...extra].join(',');
    }
  };
  return new WithExtraOptions(mountpoint, ops, options) as unknown as FuseMount;
}
