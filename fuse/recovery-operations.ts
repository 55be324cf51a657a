/**
 * The FUSE callbacks of a recovery session: one directory holding one writable disk image.
 * fsync and flush make the writes so far durable (CowDisk.sync); a failed write answers the
 * errno it met (ENOSPC on a full delta) and touches nothing else.
 */
import { errnoOf } from '../engine/errors.js';
import type { CowDisk } from '../engine/session/cow-disk.js';
import { Fuse, type Attributes, type FuseOperations } from './fuse-native.js';
import type { Probe } from './operations.js';

export interface WritableFuseOperations extends FuseOperations {
  write(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErr: number) => void): void;
  fsync(path: string, datasync: boolean, fd: number, cb: (err: number) => void): void;
  flush(path: string, fd: number, cb: (err: number) => void): void;
  truncate(path: string, size: number, cb: (err: number) => void): void;
  ftruncate(path: string, fd: number, size: number, cb: (err: number) => void): void;
}

/** Errnos a guest can act on are passed on; anything else is an I/O error. */
const PASSED_ON: Record<string, number> = { ENOSPC: Fuse.ENOSPC, EDQUOT: Fuse.ENOSPC };

function errnoFor(err: unknown): number {
  return PASSED_ON[errnoOf(err) ?? ''] ?? Fuse.EIO;
}

export function recoveryOperations(disk: CowDisk, imageName: string, created: Date, probe: Probe, log: (line: string) => void): WritableFuseOperations {
  const image = `/${imageName}`;
  const reported = new Set<string>();
  // Kernel retries repeat a failing request: each problem is logged once.
  const report = (err: unknown, what: string): void => {
    const line = `${what}: ${err instanceof Error ? err.message : String(err)}`;
    if (reported.has(line)) return;
    reported.add(line);
    log(line);
  };
  const attributes = (mode: number, size: number): Attributes => ({
    mode,
    size,
    blocks: Math.ceil(size / 512),
    nlink: mode & 0o040000 ? 2 : 1,
    mtime: created,
    atime: created,
    ctime: created,
    uid: process.getuid?.() ?? 0,
    gid: process.getgid?.() ?? 0,
  });
  const durable = (cb: (err: number) => void): void => {
    disk.sync().then(
      () => cb(0),
      (err) => (report(err, 'sync'), cb(errnoFor(err))),
    );
  };
  // The disk keeps its size: a truncate to it is a no-op, any other is refused.
  const resize = (size: number, cb: (err: number) => void): void => cb(size === disk.size ? 0 : Fuse.EPERM);
  let nextHandle = 1;

  return {
    getattr(path, cb) {
      if (path === probe.path) return (probe.answered(), cb(Fuse.ENOENT));
      if (path === '/') return cb(0, attributes(0o040755, 4096));
      if (path === image) return cb(0, attributes(0o100600, disk.size));
      cb(Fuse.ENOENT);
    },
    readdir(path, cb) {
      if (path !== '/') return cb(path === image ? Fuse.ENOTDIR : Fuse.ENOENT);
      cb(0, ['.', '..', imageName]);
    },
    readlink(path, cb) {
      cb(path === image || path === '/' ? Fuse.EINVAL : Fuse.ENOENT);
    },
    open(path, _flags, cb) {
      if (path !== image) return cb(path === '/' ? Fuse.EINVAL : Fuse.ENOENT);
      cb(0, nextHandle++);
    },
    read(_path, _fd, buf, len, pos, cb) {
      disk.read(buf, len, pos).then(cb, (err) => (report(err, `read of ${len} bytes at ${pos}`), cb(Fuse.EIO)));
    },
    write(_path, _fd, buf, len, pos, cb) {
      disk.write(buf, len, pos).then(cb, (err) => (report(err, `write of ${len} bytes at ${pos}`), cb(errnoFor(err))));
    },
    fsync(_path, _datasync, _fd, cb) {
      durable(cb);
    },
    flush(_path, _fd, cb) {
      durable(cb);
    },
    truncate(_path, size, cb) {
      resize(size, cb);
    },
    ftruncate(_path, _fd, size, cb) {
      resize(size, cb);
    },
    release(_path, _fd, cb) {
      cb(0);
    },
    statfs(_path, cb) {
      const blocks = Math.ceil(disk.size / 4096);
      cb(0, { bsize: 4096, frsize: 4096, blocks, bfree: 0, bavail: 0, files: 1, ffree: 0, favail: 0, fsid: 0, flag: 0, namemax: 255 });
    },
  };
}
