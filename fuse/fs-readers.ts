/**
 * Readers of the filesystem inside a disk image, each run outside this process: an untrusted
 * guest filesystem is parsed in userspace where a reader exists (fuse2fs for ext2/3/4, mtools
 * for vfat), and by the kernel only for xfs and btrfs, which have no userspace reader here.
 * Nothing ever writes: journals and logs are not replayed, mounts are ro,nosuid,nodev,noexec.
 */
import { execFile, spawn } from 'node:child_process';
import { promises as fs, type Stats } from 'node:fs';
import { join, posix } from 'node:path';
import { InvalidInputError } from '../engine/errors.js';
import { readMounts } from '../engine/mounts.js';

export type EntryType = 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';

export interface FileEntry {
  name: string;
  type: EntryType;
  /** Permission bits, setuid/setgid/sticky included. */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: string;
  /** A symlink's target, as stored (never followed). */
  target: string | null;
}

export interface FsReader {
  /** What reads the filesystem, for messages. */
  readonly name: string;
  /** `path` is absolute and normalised (see files.ts); a directory lists its entries, anything else itself. */
  list(path: string): Promise<FileEntry[]>;
  /** Refuses a path that is not there, or that leads through a symlink, before anything is written. */
  check(path: string): Promise<void>;
  /** Copies each path (a file, link or whole tree) into `dir`, as `cp -a` does; fails after `idleMs` without progress, stops when `signal` fires. */
  extract(paths: string[], dir: string, idleMs: number, signal?: AbortSignal): Promise<void>;
  /** Releases the reader, also one that hangs; never throws. */
  close(): Promise<void>;
}

/** How the filesystems we know are read; a type missing here gets a message saying why. */
const READERS: Record<string, (image: string, at: string, timeoutMs: number) => Promise<FsReader>> = {
  ext2: openFuse2fs,
  ext3: openFuse2fs,
  ext4: openFuse2fs,
  vfat: openMtools,
  xfs: (image, at) => openKernel(image, at, 'xfs', 'norecovery'),
  btrfs: (image, at) => openKernel(image, at, 'btrfs', 'rescue=nologreplay'),
};

const NO_READER: Record<string, string> = {
  ntfs: 'ntfs-3g, its only reader, needs fuse3, which cannot be installed beside the libfuse2 chunkvault mounts with',
};

export function readerFor(type: string): string | null {
  return type in READERS ? null : (NO_READER[type] ?? `chunkvault has no reader for ${type}`);
}

export function openReader(type: string, image: string, at: string, timeoutMs: number): Promise<FsReader> {
  return READERS[type](image, at, timeoutMs);
}

const KILL_WAIT_MS = 5000;
const POLL_MS = 50;

function lastLine(text: string): string {
  return text.trim().split('\n').pop() ?? '';
}

/** Runs a tool to its end; its last line on stderr is the failure. */
function run(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((done, fail) => {
    execFile(command, args, { env, maxBuffer: 1 << 30, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err) fail(new Error(`${command}: ${lastLine(stderr) || err.message}`));
      else done(stdout);
    });
  });
}

/** Bytes a process read and wrote so far (/proc/PID/io), '' once it is gone. */
async function ioCounters(pid: number): Promise<string> {
  const text = await fs.readFile(`/proc/${pid}/io`, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((l) => l.startsWith('rchar') || l.startsWith('wchar'))
    .join(',');
}

/** Runs a copying tool, killed once it has neither read nor written for idleMs (a reader that hangs stops it), or on the signal. */
function runWatched(command: string, args: string[], idleMs: number, signal?: AbortSignal, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  return new Promise((done, fail) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'ignore', 'pipe'], signal, killSignal: 'SIGKILL' });
    let stderr = '';
    let last = '';
    let idleSince = Date.now();
    let idle = false;
    child.stderr.on('data', (d) => (stderr += d));
    const watch = setInterval(() => {
      void ioCounters(child.pid!).then((now) => {
        if (now !== last) [last, idleSince] = [now, Date.now()];
        else if (Date.now() - idleSince > idleMs && !idle) {
          // Not waiting for it to end: a process killed in a FUSE request its server never answers
          // stays until the server is gone, which closing the reader sees to.
          idle = true;
          clearInterval(watch);
          child.kill('SIGKILL');
          fail(new Error(`${command} made no progress for ${idleMs / 1000} s`));
        }
      });
    }, 500);
    // An abort arrives here as an AbortError, after the kill.
    child.on('error', (err) => (clearInterval(watch), fail(err)));
    child.on('close', (code) => {
      clearInterval(watch);
      if (code !== 0) fail(new Error(`${command}: ${lastLine(stderr) || `exit ${code}`}`));
      else done();
    });
  });
}

/** rmdir, not rm -r: if anything is still mounted there, its files are not ours to delete. */
async function removeMountDir(path: string): Promise<void> {
  await fs.rmdir(path).catch(() => undefined);
}

async function isMounted(path: string): Promise<boolean> {
  return (await readMounts()).some((m) => m.mountpoint === path);
}

/** Unref'd: a wait that lost a race does not keep the process alive. */
function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

function typeOf(stats: Stats): EntryType {
  if (stats.isDirectory()) return 'dir';
  if (stats.isSymbolicLink()) return 'symlink';
  if (stats.isCharacterDevice()) return 'char';
  if (stats.isBlockDevice()) return 'block';
  if (stats.isFIFO()) return 'fifo';
  if (stats.isSocket()) return 'socket';
  return 'file';
}

async function entryOf(name: string, path: string): Promise<FileEntry> {
  const stats = await fs.lstat(path);
  const type = typeOf(stats);
  return { name, type, mode: stats.mode & 0o7777, uid: stats.uid, gid: stats.gid, size: stats.size, mtime: stats.mtime.toISOString(), target: type === 'symlink' ? await fs.readlink(path) : null };
}

/**
 * The host path of `path` under `root`, never through a symlink: an absolute link in the guest
 * (`/etc`) would otherwise lead to the host's own files.
 */
async function hostPath(root: string, path: string): Promise<string> {
  let at = root;
  const parts = path.split('/').filter((p) => p !== '');
  for (const [i, part] of parts.entries()) {
    at = join(at, part);
    const stats = await fs.lstat(at).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR') throw new InvalidInputError(`PATH ${path}: no such file or directory in the filesystem`, { path });
      throw err;
    });
    if (i < parts.length - 1 && stats.isSymbolicLink()) {
      throw new InvalidInputError(`PATH ${path}: /${parts.slice(0, i + 1).join('/')} is a symlink (to ${await fs.readlink(at)}); give the path it points to`, { path });
    }
  }
  return at;
}

/** A filesystem mounted on a directory (by fuse2fs or the kernel): listed with lstat, copied with cp -a. */
function mountedReader(name: string, root: string, release: () => Promise<void>): FsReader {
  return {
    name,
    check: async (path) => void (await hostPath(root, path)),
    async list(path) {
      const at = await hostPath(root, path);
      const self = await entryOf(posix.basename(path) || '/', at);
      if (self.type !== 'dir') return [self];
      const entries: FileEntry[] = [];
      // One at a time: every lstat holds a libuv thread until the reader answers, and the reader
      // reads the image from this very process, which needs threads to answer it.
      for (const entry of (await fs.readdir(at)).sort()) entries.push(await entryOf(entry, join(at, entry)));
      return entries;
    },
    async extract(paths, dir, idleMs, signal) {
      const sources: string[] = [];
      for (const path of paths) sources.push(path === '/' ? `${root}/.` : await hostPath(root, path));
      // One cp for all paths: hard links between them stay links. --sparse=always: FUSE (libfuse2) has no SEEK_HOLE, zeros become holes again.
      await runWatched('cp', ['-a', '--sparse=always', '-t', dir, '--', ...sources], idleMs, signal);
    },
    close: release,
  };
}

/** A read-only loop device of `image`, and how to let go of it. */
async function readOnlyLoop(image: string): Promise<{ device: string; detach: () => Promise<unknown> }> {
  const device = (await run('losetup', ['-r', '-f', '--show', image])).trim();
  return { device, detach: () => run('losetup', ['-d', device]).catch(() => undefined) };
}

/**
 * fuse2fs (e2fsprogs, libfuse2) in the foreground, as our child: the journal is not replayed
 * (norecovery). As root it reads a read-only loop device of the image: on the file itself every
 * 4 KiB block it reads is one FUSE request to the mount, and the block device's read-ahead makes
 * its reads 5x faster (measured: 256 MiB in 2.4 s instead of 13.3 s). It is still fuse2fs, in
 * userspace, that parses the filesystem; the kernel only moves the image's bytes.
 */
async function openFuse2fs(image: string, at: string, timeoutMs: number): Promise<FsReader> {
  await fs.mkdir(at, { mode: 0o700 });
  const loop = process.getuid?.() === 0 ? await readOnlyLoop(image).catch(() => null) : null;
  const child = spawn('fuse2fs', [loop?.device ?? image, at, '-f', '-o', 'ro,norecovery,nosuid,nodev,noexec,default_permissions'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<void>((r) => child.on('close', () => r()));
  let gone = false;
  void exited.then(() => (gone = true));
  const release = async (): Promise<void> => {
    if (await isMounted(at)) await run('fusermount', ['-u', at]).catch(() => run('fusermount', ['-uz', at]).catch(() => undefined));
    await Promise.race([exited, sleep(KILL_WAIT_MS)]);
    if (!gone) {
      child.kill('SIGKILL');
      await exited;
    }
    if (await isMounted(at)) await run('fusermount', ['-uz', at]).catch(() => undefined);
    await loop?.detach();
    await removeMountDir(at);
  };
  const deadline = Date.now() + timeoutMs;
  child.on('error', (err) => (stderr += err.message));
  while (!(await isMounted(at))) {
    if (gone || Date.now() > deadline) {
      await release();
      throw new Error(gone ? `fuse2fs: ${lastLine(stderr.replace(/^Mounting read-only\.$/m, '')) || 'exited'}` : `fuse2fs did not mount it within ${timeoutMs / 1000} s`);
    }
    await sleep(POLL_MS);
  }
  return mountedReader('fuse2fs', at, release);
}

/** xfs and btrfs: a read-only loop device and a kernel mount that replays nothing; root only. */
async function openKernel(image: string, at: string, type: string, noReplay: string): Promise<FsReader> {
  if (process.getuid?.() !== 0) throw new Error(`reading ${type} takes a kernel loop mount, which needs root (no userspace ${type} reader is installed)`);
  await fs.mkdir(at, { mode: 0o700 });
  const { device, detach } = await readOnlyLoop(image);
  try {
    await run('mount', ['-t', type, '-o', `ro,${noReplay},nosuid,nodev,noexec`, device, at]);
  } catch (err) {
    await detach();
    throw err;
  }
  return mountedReader(`kernel ${type}`, at, async () => {
    await run('umount', [at]).catch(() => run('umount', ['-l', at]).catch(() => undefined));
    await detach();
    await removeMountDir(at);
  });
}

/** mtools reads the FAT itself: no mount at all. Environment: UTF-8 names, and no geometry check of an image. */
const MTOOLS_ENV = { ...process.env, LC_ALL: 'C.UTF-8', MTOOLS_SKIP_CHECK: '1' };

/** One line of `mdir -a`: short name, extension, size or <DIR>, local date and time (to the minute), long name. */
const MDIR_LINE = /^(.{8}) (.{3}) +(<DIR>|\d+) +(\d{4})-(\d\d)-(\d\d) +(\d{1,2}):(\d\d) (?: (.+))?$/;

function mdirEntries(text: string): FileEntry[] {
  const entries: FileEntry[] = [];
  for (const line of text.split('\n')) {
    const m = MDIR_LINE.exec(line);
    if (!m) continue;
    const [, base, ext, size, y, mo, d, h, mi, long] = m;
    const name = long ?? (ext.trim() ? `${base.trim()}.${ext.trim()}` : base.trim());
    if (name === '.' || name === '..') continue;
    const dir = size === '<DIR>';
    // FAT has no owners or modes: these are what an extraction by this process gives.
    entries.push({ name, type: dir ? 'dir' : 'file', mode: dir ? 0o755 : 0o644, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, size: dir ? 0 : Number(size), mtime: new Date(+y, +mo - 1, +d, +h, +mi).toISOString(), target: null });
  }
  return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

async function openMtools(image: string): Promise<FsReader> {
  const mdir = async (path: string): Promise<FileEntry[]> => mdirEntries(await run('mdir', ['-a', '-i', image, `::${path}`], MTOOLS_ENV));
  /** FAT names are case-insensitive. */
  const find = async (path: string): Promise<FileEntry> => {
    const name = posix.basename(path);
    const siblings = await mdir(posix.dirname(path)).catch(() => []);
    const entry = siblings.find((e) => e.name === name) ?? siblings.find((e) => e.name.toLowerCase() === name.toLowerCase());
    if (!entry) throw new InvalidInputError(`PATH ${path}: no such file or directory in the filesystem`, { path });
    return entry;
  };
  return {
    name: 'mtools',
    check: async (path) => void (path === '/' || (await find(path))),
    async list(path) {
      if (path === '/') return mdir('/');
      const entry = await find(path);
      return entry.type === 'dir' ? mdir(path) : [entry];
    },
    async extract(paths, dir, idleMs, signal) {
      for (const path of paths) {
        if (path === '/' && (await mdir('/')).length === 0) continue;
        // -p -m: attributes and modification times; -s: trees. The root has no times of its own: its entries are copied.
        await runWatched('mcopy', ['-s', '-p', '-m', '-n', '-i', image, path === '/' ? '::/*' : `::${path}`, `${dir}/`], idleMs, signal, MTOOLS_ENV);
      }
    },
    close: async () => undefined,
  };
}
