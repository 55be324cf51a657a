/** The mountpoint: checked before mounting, recovered when a killed mount left it stale. */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { MountpointError } from '../engine/errors.js';
import { CHUNKVAULT_FSTYPE, readMounts, type MountEntry } from '../engine/mounts.js';

export { CHUNKVAULT_SUBTYPE as SUBTYPE } from '../engine/mounts.js';

async function mountAt(path: string): Promise<MountEntry | undefined> {
  return (await readMounts()).filter((m) => m.mountpoint === path).pop();
}

async function fusermount(args: string[]): Promise<void> {
  try {
    await promisify(execFile)('fusermount', args);
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new MountpointError(`fusermount ${args.join(' ')}: ${(e.stderr || e.message).trim()}`, { args });
  }
}

async function isStale(path: string): Promise<boolean> {
  try {
    await fs.stat(path);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOTCONN';
  }
}

/** Detaches a FUSE mount on `path` whose process is gone (ENOTCONN); returns what is mounted there otherwise. */
async function clearStale(path: string): Promise<MountEntry | undefined> {
  const mounted = await mountAt(path);
  if (!mounted || !(await isStale(path))) return mounted;
  await fusermount(['-uz', path]);
  return undefined;
}

export async function clearStaleMount(path: string): Promise<void> {
  await clearStale(path);
}

/** An existing, empty directory that nothing is mounted on; a stale FUSE mount is cleared first. */
export async function prepareMountpoint(path: string): Promise<void> {
  const mounted = await clearStale(path);
  if (mounted) throw new MountpointError(`${path} is busy: a ${mounted.fstype} filesystem is mounted there (unmount it first)`, { mountpoint: path });
  const stats = await fs.stat(path).catch((err: NodeJS.ErrnoException) => {
    throw new MountpointError(`mountpoint ${path}: ${err.code === 'ENOENT' ? 'does not exist' : err.code}`, { mountpoint: path });
  });
  if (!stats.isDirectory()) throw new MountpointError(`mountpoint ${path} is not a directory`, { mountpoint: path });
  if ((await fs.readdir(path)).length > 0) throw new MountpointError(`mountpoint ${path} is not empty`, { mountpoint: path });
}

/** Unmounts a chunkvault mount (not lazily: a mount in use stays up and says so). */
export async function unmountChunkvault(mountpoint: string): Promise<void> {
  const path = resolve(mountpoint);
  const mounted = await mountAt(path);
  if (mounted?.fstype !== CHUNKVAULT_FSTYPE) throw new MountpointError(`${path} is not a chunkvault mount`, { mountpoint: path });
  await fusermount(['-u', path]);
}
