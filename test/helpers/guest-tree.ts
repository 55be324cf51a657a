/** A guest's file tree for the files tests, the images holding it, and what a copy of it must keep. */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { MiB, compressibleText, seededBytes, sha256File } from './index.js';

export const GiB = 1024 * MiB;
export const BIG_SIZE = 4 * GiB + 64 * 1024;
export const DEEP_LEVELS = 40;
export const ODD_NAME = 'naïve café ✓ 日本.txt';
export const SPACED_DIR = 'dir with spaces';

const T = (iso: string): Date => new Date(iso);

function deepPath(levels: number): string {
  return Array.from({ length: levels }, (_, i) => `level-${String(i + 1).padStart(2, '0')}`).join('/');
}

export interface TreeOptions {
  /** A sparse file over 4 GiB with data at its end. */
  big: boolean;
  /** Symlinks, hard links, owners and modes: not for vfat. */
  posix: boolean;
}

/**
 * Names with spaces and non-ASCII, a 40-level tree, sparse files; with posix: hard links,
 * symlinks (one absolute, out of the guest), owners, setuid and odd modes. Times are whole seconds.
 */
export async function buildGuestTree(root: string, options: TreeOptions): Promise<void> {
  await fs.mkdir(join(root, SPACED_DIR), { recursive: true });
  await fs.mkdir(join(root, deepPath(DEEP_LEVELS)), { recursive: true });
  await fs.mkdir(join(root, 'etc'));
  await fs.writeFile(join(root, SPACED_DIR, ODD_NAME), compressibleText(10_000, 3));
  await fs.writeFile(join(root, deepPath(DEEP_LEVELS), 'leaf.txt'), 'at the bottom\n');
  for (let i = 0; i < 5; i++) await fs.writeFile(join(root, 'etc', `conf-${i}`), compressibleText(2_000 + i * 333, i));
  await fs.writeFile(join(root, 'random.bin'), seededBytes(7, 3 * MiB + 17));
  const sparse = await fs.open(join(root, 'sparse.bin'), 'w');
  await sparse.write(seededBytes(8, 64 * 1024), 0, 64 * 1024, 4 * MiB);
  await sparse.truncate(16 * MiB);
  await sparse.close();
  if (options.big) {
    const big = await fs.open(join(root, 'big.img'), 'w');
    await big.write(seededBytes(9, 64 * 1024), 0, 64 * 1024, BIG_SIZE - 64 * 1024);
    await big.close();
  }
  if (options.posix) {
    await fs.link(join(root, 'etc', 'conf-0'), join(root, SPACED_DIR, 'hard link to conf-0'));
    await fs.symlink('/etc/passwd', join(root, 'abs-link'));
    await fs.symlink('/etc', join(root, 'host-etc'));
    await fs.symlink(`../${SPACED_DIR}/${ODD_NAME}`, join(root, 'etc', 'rel-link'));
    await fs.writeFile(join(root, 'etc', 'secret'), 'owned by 1234:5678, mode 0640\n');
    await fs.chown(join(root, 'etc', 'secret'), 1234, 5678);
    await fs.chmod(join(root, 'etc', 'secret'), 0o640);
    await fs.writeFile(join(root, 'setuid-tool'), '#!/bin/sh\n');
    await fs.chmod(join(root, 'setuid-tool'), 0o4755);
    await fs.chown(join(root, SPACED_DIR), 42, 43);
    await fs.chmod(join(root, SPACED_DIR), 0o750);
    await fs.lutimes(join(root, 'abs-link'), T('2019-05-06T07:08:09Z'), T('2019-05-06T07:08:09Z'));
  }
  await fs.utimes(join(root, 'etc', 'conf-1'), T('2020-01-02T03:04:06Z'), T('2020-01-02T03:04:06Z'));
  // Directories last: filling them changed their times.
  for (const dir of [join(root, SPACED_DIR), join(root, 'etc'), join(root, deepPath(DEEP_LEVELS))]) await fs.utimes(dir, T('2021-02-03T04:05:06Z'), T('2021-02-03T04:05:06Z'));
}

export interface Meta {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeSeconds: number;
  target: string | null;
  /** The first path (sorted) of the inode's hard links: equal for paths linked together. */
  linkGroup: string;
}

function typeName(s: import('node:fs').Stats): string {
  return s.isDirectory() ? 'dir' : s.isSymbolicLink() ? 'symlink' : s.isFile() ? 'file' : 'other';
}

/** Metadata of every path below root, except lost+found; directories' sizes depend on the filesystem and are left out. */
export async function describeTree(root: string, skew = 1): Promise<Record<string, Meta>> {
  const out: Record<string, Meta> = {};
  const firstOf = new Map<number, string>();
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await fs.readdir(join(root, rel))).sort()) {
      const path = rel === '' ? name : `${rel}/${name}`;
      if (path === 'lost+found') continue;
      const s = await fs.lstat(join(root, path));
      if (!firstOf.has(s.ino)) firstOf.set(s.ino, path);
      out[path] = {
        type: typeName(s),
        mode: s.mode & 0o7777,
        uid: s.uid,
        gid: s.gid,
        size: s.isDirectory() ? 0 : s.size,
        mtimeSeconds: Math.floor(s.mtimeMs / 1000 / skew) * skew,
        target: s.isSymbolicLink() ? await fs.readlink(join(root, path)) : null,
        linkGroup: firstOf.get(s.ino)!,
      };
      if (s.isDirectory()) await walk(path);
    }
  };
  await walk('');
  return out;
}

/** sha256 of every regular file, as `files --get --json` lists them. */
export async function manifestOf(root: string, known: Record<string, string> = {}): Promise<{ path: string; size: number; sha256: string }[]> {
  const meta = await describeTree(root);
  const files = Object.entries(meta).filter(([, m]) => m.type === 'file');
  const out = [];
  for (const [path, m] of files) out.push({ path, size: m.size, sha256: known[path] ?? (await sha256File(join(root, path))) });
  return out.sort((a, b) => (a.path < b.path ? -1 : 1));
}

/** Allocated bytes of a file: a sparse file keeps this small. */
export async function allocatedBytes(path: string): Promise<number> {
  return (await fs.stat(path)).blocks * 512;
}

/** An xfs image holding a copy of `tree`, written through a loop mount (root). */
export async function xfsImage(path: string, sizeMiB: number, tree: string, mountAt: string): Promise<void> {
  const handle = await fs.open(path, 'w');
  await handle.truncate(sizeMiB * MiB);
  await handle.close();
  execFileSync('mkfs.xfs', ['-q', path]);
  await fs.mkdir(mountAt, { recursive: true });
  execFileSync('mount', ['-o', 'loop', path, mountAt]);
  try {
    execFileSync('cp', ['-a', `${tree}/.`, mountAt]);
  } finally {
    execFileSync('umount', [mountAt]);
  }
}

/** A FAT32 image holding a copy of `tree`, with mtools (no mount). */
export async function vfatImage(path: string, sizeMiB: number, tree: string): Promise<void> {
  const handle = await fs.open(path, 'w');
  await handle.truncate(sizeMiB * MiB);
  await handle.close();
  execFileSync('mformat', ['-i', path, '-F', '::']);
  const entries = (await fs.readdir(tree)).map((e) => join(tree, e));
  execFileSync('mcopy', ['-s', '-p', '-m', '-i', path, ...entries, '::'], { env: { ...process.env, LC_ALL: 'C.UTF-8', MTOOLS_SKIP_CHECK: '1' } });
}
