/**
 * Where a restore may write, checked before anything is written: never a file of the store
 * (by path, symlink or hard link), never a chunkvault mount, never a device in use or one that
 * stores its bytes in such a file (a loop device over a pack).
 */
import { promises as fs, constants, type BigIntStats, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import type { Store } from '../store/store.js';
import { TargetError, errnoOf, isAbsent, storeReadError } from './errors.js';
import { chunkvaultMountOf } from './mounts.js';
import { deviceSize, majorMinor } from './source.js';

export interface Target {
  /** What the restore writes: the target with its symlinks followed. */
  path: string;
  isDevice: boolean;
  /** A regular file that is there already (it keeps its mode unless one is asked for). */
  exists: boolean;
  /** Bytes it holds now: a device's size, an existing file's length, 0 for a file still to be created. */
  bytes: number;
  /** Ends the exclusive claim on a device, held so nobody mounts it while it is restored. */
  release(): Promise<void>;
}

function refused(target: string, why: string): TargetError {
  return new TargetError(`target ${target} ${why}; restore never writes there: choose another target (nothing was written)`, { target, why });
}

function unusable(target: string, err: unknown): TargetError {
  return new TargetError(`target ${target}: ${errnoOf(err) ?? String(err)} (nothing was written)`, { target, code: errnoOf(err) }, err);
}

/** `promise`, with its failure reported as the target's. */
function asTarget<T>(target: string, promise: Promise<T>): Promise<T> {
  return promise.catch((err: unknown) => {
    throw unusable(target, err);
  });
}

/** The path a write to `path` reaches: symlinks followed, a dangling one too (the write would create its destination). */
async function reachedPath(path: string): Promise<string> {
  try {
    return await fs.realpath(path);
  } catch (err) {
    if (!isAbsent(err)) throw unusable(path, err);
  }
  // EINVAL: not a symlink; ENOENT: nothing there.
  const link = await fs.readlink(path).catch((err: unknown) => {
    if (errnoOf(err) === 'EINVAL' || isAbsent(err)) return null;
    throw unusable(path, err);
  });
  if (link !== null) return reachedPath(resolve(dirname(path), link));
  const parent = await fs.realpath(dirname(path)).catch(() => null);
  if (parent === null) throw new TargetError(`target ${path}: directory ${dirname(path)} does not exist or is not writable`, { target: path });
  return join(parent, basename(path));
}

export function isWithin(path: string, dir: string): boolean {
  return path.startsWith(dir.endsWith(sep) ? dir : dir + sep);
}

/** A file below `dir` that is the same inode as `stats`. */
async function sameInodeBelow(dir: string, stats: BigIntStats): Promise<string | null> {
  const entries = await fs.readdir(dir, { withFileTypes: true }).catch((err: unknown) => {
    throw storeReadError(dir, err);
  });
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      const found = await sameInodeBelow(path, stats);
      if (found) return found;
    } else if (entry.isFile()) {
      const other = await fs.lstat(path, { bigint: true }).catch((err: unknown) => {
        if (isAbsent(err)) return null;
        throw storeReadError(path, err);
      });
      if (other && other.ino === stats.ino && other.dev === stats.dev) return path;
    }
  }
  return null;
}

/**
 * Why writing `path` (symlinks already followed; `stats` null when it does not exist yet) would
 * overwrite the store's own files, as the rest of a sentence about it, or null when it would not.
 */
async function storeOwnership(storeRoot: string, path: string, stats: Stats | null): Promise<string | null> {
  if (path === storeRoot) return 'is the store directory';
  if (isWithin(path, storeRoot)) return `is inside the store ${storeRoot}`;
  // A file with one link is not a store file by another name; walking the store is only worth it otherwise.
  if (stats?.isFile() && stats.nlink > 1) {
    const twin = await sameInodeBelow(storeRoot, await asTarget(path, fs.stat(path, { bigint: true })));
    if (twin) return `is a hard link to the store's file ${twin}`;
  }
  const mount = await chunkvaultMountOf((stats ?? (await asTarget(path, fs.stat(dirname(path))))).dev);
  if (mount) return `is inside the chunkvault mount ${mount.mountpoint}, whose files are a store's own disk images (read-only)`;
  return null;
}

async function sysfsText(path: string, target: string): Promise<string | null> {
  try {
    return (await fs.readFile(path, 'utf8')).replace(/\n$/, '');
  } catch (err) {
    if (isAbsent(err)) return null;
    throw unusable(target, err);
  }
}

/** The files a block device keeps its bytes in: its loop backing file, and those under the devices it is built on (device-mapper, md). */
async function backingFiles(sysDir: string, target: string): Promise<string[]> {
  const whole = (await sysfsText(join(sysDir, 'partition'), target)) === null ? sysDir : dirname(sysDir);
  const own = await sysfsText(join(whole, 'loop', 'backing_file'), target);
  const below = await fs.readdir(join(whole, 'slaves')).catch((err: unknown) => {
    if (isAbsent(err)) return [];
    throw unusable(target, err);
  });
  const nested = await Promise.all(below.map(async (name) => backingFiles(await asTarget(target, fs.realpath(join(whole, 'slaves', name))), target)));
  return [...(own === null ? [] : [own]), ...nested.flat()];
}

async function refuseStoreBackedDevice(storeRoot: string, target: string, stats: Stats): Promise<void> {
  const sysDir = await asTarget(target, fs.realpath(`/sys/dev/block/${majorMinor(stats.rdev)}`));
  for (const file of await backingFiles(sysDir, target)) {
    const path = await fs.realpath(file).catch(() => file);
    const why = await storeOwnership(storeRoot, path, await fs.stat(path).catch(() => null));
    if (why) throw refused(target, `is a loop device over ${file}, which ${why}`);
  }
}

/**
 * O_EXCL on a block device is Linux's exclusive claim: refused (EBUSY) while the device is mounted
 * or held (device-mapper, md, another claim), and while we hold it nobody can mount it.
 */
async function claimDevice(target: string, path: string): Promise<FileHandle> {
  try {
    return await fs.open(path, constants.O_RDWR | constants.O_EXCL);
  } catch (err) {
    if (errnoOf(err) === 'EBUSY') throw refused(target, 'is in use (mounted, or held by device-mapper, md or another program)');
    throw unusable(target, err);
  }
}

async function checkWritable(target: string, probe: string, exists: boolean): Promise<void> {
  try {
    await fs.access(probe, fs.constants.W_OK);
  } catch {
    throw new TargetError(`target ${target}: ${exists ? 'not writable' : `directory ${probe} does not exist or is not writable`}`, { target });
  }
}

/** The real path of the store's directory; null when the store is not local, so that no target can be inside it. */
async function localStoreRoot(store: Store): Promise<string | null> {
  const dir = store.localDir;
  if (dir === null) return null;
  return fs.realpath(dir).catch((err: unknown) => {
    throw storeReadError(dir, err);
  });
}

/** Checks `target` can take a disk of `size` bytes and is none of the store's own; a device comes back claimed. */
export async function openTarget(store: Store, target: string, size: number): Promise<Target> {
  const path = await reachedPath(target);
  const storeRoot = await localStoreRoot(store);
  const stats = await fs.stat(path).catch((err: unknown) => {
    if (isAbsent(err)) return null;
    throw unusable(target, err);
  });
  const why = storeRoot === null ? null : await storeOwnership(storeRoot, path, stats);
  if (why) throw refused(target, path === target ? why : `(resolves to ${path}) ${why}`);
  await checkWritable(target, stats ? path : dirname(path), stats !== null);
  if (stats?.isBlockDevice()) {
    if (storeRoot !== null) await refuseStoreBackedDevice(storeRoot, target, stats);
    const deviceBytes = await deviceSize(stats, target);
    if (deviceBytes < size) throw new TargetError(`target ${target} holds ${deviceBytes} bytes, the disk needs ${size}`, { target, size: deviceBytes, needed: size });
    const claim = await claimDevice(target, path);
    return { path, isDevice: true, exists: true, bytes: deviceBytes, release: () => claim.close() };
  }
  if (stats && !stats.isFile()) throw new TargetError(`target ${target} is not a regular file or block device`, { target });
  return { path, isDevice: false, exists: stats !== null, bytes: stats?.size ?? 0, release: async () => undefined };
}
