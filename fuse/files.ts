/**
 * Files inside a restore point's disk: a private chunkvault mount (the code `chunkvault mount`
 * runs) in a 0700 temp dir, a reader of the filesystem in the image it serves (fs-readers.ts),
 * the work, then everything torn down again, also on a failure, a time-out or a signal.
 */
import { createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import type { Store } from '../store/store.js';
import type { RestorePoint } from '../store/catalog.js';
import { FilesystemError, InterruptedError, InvalidInputError, TargetError, errnoOf, isAbsent } from '../engine/errors.js';
import { resolveRef } from '../engine/refs.js';
import { pickDisk } from '../engine/restore.js';
import { chunkvaultMountOf } from '../engine/mounts.js';
import { DEFAULT_CACHE_BYTES, mount } from './mount.js';
import { IMAGE_SUFFIX, partitionFileName } from './tree.js';
import { identifyFilesystem, isDamaged, type FilesystemProbe } from '../engine/filesystems.js';
import { openReader, readerFor, type FileEntry, type FsReader } from './fs-readers.js';

export type { FileEntry } from './fs-readers.js';

/** REF[:LABEL[:pN]]; REF may be NAME@latest, and a name may hold ':' (a label never does). */
export interface FilesTarget {
  ref: string;
  label?: string;
  partition?: number;
}

export const DEFAULT_TIMEOUT_MS = 60_000;

export function parseFilesTarget(text: string): FilesTarget {
  const at = text.lastIndexOf('@latest');
  const [ref, rest] = at >= 0 ? [text.slice(0, at + '@latest'.length), text.slice(at + '@latest'.length)] : [text.split(':')[0], text.slice(text.split(':')[0].length)];
  const m = /^(?::([A-Za-z0-9][A-Za-z0-9._-]*)(?::p([1-9]\d{0,2}))?)?$/.exec(rest);
  if (!m || ref === '') throw new InvalidInputError(`'${text}' is not REF[:LABEL[:pN]] (e.g. latest:root:p2, web@latest:disk0)`, { value: text });
  return { ref, label: m[1], partition: m[2] === undefined ? undefined : Number(m[2]) };
}

/** PATH inside the filesystem, absolute and without `.` or `..`; `..` above its root is refused. */
export function fsPath(text: string): string {
  const parts: string[] = [];
  for (const part of text.split('/')) {
    if (part === '' || part === '.') continue;
    if (part !== '..') parts.push(part);
    else if (parts.pop() === undefined) throw new InvalidInputError(`PATH ${text}: leads outside the filesystem ('..' above its root)`, { path: text });
  }
  return '/' + parts.join('/');
}

export interface FilesOptions {
  /** How long the reader may take to open, list, or go without copying a byte. */
  timeoutMs?: number;
  /** Aborted (with the signal's name as reason) on SIGINT/SIGTERM: the work stops and everything is torn down. */
  signal?: AbortSignal;
}

export interface OpenFilesystem {
  point: RestorePoint;
  disk: string;
  partition?: number;
  type: string;
  reader: string;
  list(path: string): Promise<FileEntry[]>;
  /** Copies the paths into dir (created if absent); the regular files written, with their sha256 if asked. */
  extract(paths: string[], dir: string, hash: boolean): Promise<ManifestEntry[]>;
}

export interface ManifestEntry {
  path: string;
  size: number;
  sha256?: string;
}

function where(point: RestorePoint, disk: string, partition?: number): string {
  return `restore point ${point.id} disk ${disk}${partition === undefined ? '' : ` partition p${partition}`}`;
}

/** Settles as `work` does, unless the time (if any) runs out or the signal fires first. */
function bounded<T>(work: Promise<T>, timeoutMs: number | null, onTimeout: () => Error, signal?: AbortSignal): Promise<T> {
  return new Promise<T>((done, fail) => {
    const timer = timeoutMs === null ? undefined : setTimeout(() => fail(onTimeout()), timeoutMs);
    const abort = (): void => fail(new InterruptedError(signal!.reason as string));
    if (signal?.aborted) abort();
    signal?.addEventListener('abort', abort, { once: true });
    work.then(done, fail).finally(() => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', abort);
    });
  });
}

/** The directory to extract into: not inside the store or any chunkvault mount; new, or empty when `/` is extracted. */
export async function checkTargetDir(store: Store, dir: string, paths: string[]): Promise<string> {
  const target = resolve(dir);
  let existing = target;
  while (true) {
    const stats = await fs.stat(existing).catch((err: unknown) => {
      if (isAbsent(err)) return null;
      throw new TargetError(`--to ${dir}: ${(err as NodeJS.ErrnoException).code}`, { target: dir });
    });
    if (stats) {
      if (existing === target && !stats.isDirectory()) throw new TargetError(`--to ${dir}: not a directory`, { target: dir });
      if (await chunkvaultMountOf(stats.dev)) throw new TargetError(`--to ${dir}: inside a chunkvault mount, which is read-only; choose a directory outside it`, { target: dir });
      break;
    }
    existing = dirname(existing);
  }
  const real = join(await fs.realpath(existing), relative(existing, target));
  const storeDir = store.localDir === null ? null : await fs.realpath(store.localDir);
  if (storeDir !== null && (real === storeDir || real.startsWith(storeDir + sep))) throw new TargetError(`--to ${dir}: inside the store ${store.location}; choose a directory outside it`, { target: dir });
  for (const path of paths) {
    const into = path === '/' ? target : join(target, basename(path));
    // Only ENOENT means free: a name that cannot be examined (EACCES, EIO) is not written over.
    const absent = (err: unknown): null => {
      if (isAbsent(err)) return null;
      throw new TargetError(`--to ${dir}: cannot examine ${into} (${errnoOf(err) ?? String(err)}); nothing was written`, { target: dir });
    };
    const taken = path === '/' ? ((await fs.readdir(target).catch(absent))?.length ?? 0) > 0 : (await fs.lstat(into).catch(absent)) !== null;
    if (taken) throw new TargetError(`--to ${dir}: ${path === '/' ? 'is not empty' : `${into} exists`}; nothing is overwritten, choose a new or empty directory`, { target: dir });
  }
  return target;
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Every regular file at or below `rel` in `dir`, sorted by path; hashing reads them all (a sparse file's holes too). */
async function manifest(dir: string, rel: string, hash: boolean): Promise<ManifestEntry[]> {
  const stats = await fs.lstat(join(dir, rel));
  if (stats.isFile()) return [{ path: rel, size: stats.size, ...(hash ? { sha256: await sha256File(join(dir, rel)) } : {}) }];
  if (!stats.isDirectory()) return [];
  const out: ManifestEntry[] = [];
  for (const name of (await fs.readdir(join(dir, rel))).sort()) out.push(...(await manifest(dir, join(rel, name), hash)));
  return out;
}

/** Probes the filesystem (one read: this process serves the image it reads). */
async function probe(image: string): Promise<FilesystemProbe | null> {
  const handle = await fs.open(image, 'r');
  try {
    return await identifyFilesystem(async (offset, length) => {
      const buf = Buffer.alloc(length);
      const { bytesRead } = await handle.read(buf, 0, length, offset);
      return buf.subarray(0, bytesRead);
    });
  } finally {
    await handle.close();
  }
}

/** The partitions the mount shows for a disk, as p1, p2... */
async function partitionsOf(pointDir: string, disk: string): Promise<string[]> {
  const prefix = `${disk}.`;
  return (await fs.readdir(pointDir))
    .filter((n) => n.startsWith(prefix) && n.endsWith(IMAGE_SUFFIX))
    .map((n) => n.slice(prefix.length, -IMAGE_SUFFIX.length))
    .filter((p) => /^p\d+$/.test(p))
    .sort((a, b) => Number(a.slice(1)) - Number(b.slice(1)));
}

/** The disk or partition file in the mount; a partition that is not there is bad input, named with those that are. */
async function imageOf(mountpoint: string, point: RestorePoint, disk: string, partition?: number): Promise<string> {
  const pointDir = join(mountpoint, point.id);
  if (partition === undefined) return join(pointDir, `${disk}${IMAGE_SUFFIX}`);
  const image = join(pointDir, partitionFileName(disk, partition));
  const found = await fs.stat(image).then(
    () => true,
    (err: unknown) => {
      if (isAbsent(err)) return false;
      throw err;
    },
  );
  if (found) return image;
  const present = await partitionsOf(pointDir, disk);
  throw new InvalidInputError(`restore point ${point.id} disk ${disk} has no partition p${partition} (${present.length > 0 ? `it has ${present.join(', ')}` : 'it has no partition table chunkvault can read'})`, { restorePoint: point.id, disk, partition });
}

export async function withFilesystem<T>(store: Store, target: FilesTarget, options: FilesOptions, work: (fs: OpenFilesystem) => Promise<T>): Promise<T> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const { points, problems } = await store.catalog.list();
  const point = resolveRef(points, target.ref, problems.map((p) => p.id));
  const disk = pickDisk(point, target.label, 'choose one with REF:LABEL').label;
  const at = where(point, disk, target.partition);
  const bound = <R>(step: Promise<R>, onTimeout: () => Error): Promise<R> => bounded(step, timeoutMs, onTimeout, options.signal);

  const temp = await fs.mkdtemp(join(tmpdir(), 'chunkvault-files-'));
  const served: string[] = [];
  let opening: Promise<FsReader> | null = null;
  let session: Awaited<ReturnType<typeof mount>> | null = null;
  let readerName: string | null = null;
  try {
    await fs.mkdir(join(temp, 'store'));
    session = await mount(store, join(temp, 'store'), { cacheBytes: DEFAULT_CACHE_BYTES, log: (line) => served.push(line) });
    const failed = (what: string) => (err: unknown): never => {
      if (!(err instanceof Error) || err instanceof InvalidInputError || err instanceof InterruptedError || err instanceof FilesystemError) throw err;
      const mountSaid = served.length > 0 ? `; the mount said: ${served[0]}` : '';
      // A system call's error names our temp dir, which means nothing to anyone: the errno and who answered it do.
      const why = errnoOf(err) && readerName ? `${errnoOf(err)} from ${readerName}` : err.message;
      throw new FilesystemError(`${at}: ${what} (${why})${mountSaid}`, { restorePoint: point.id, disk, partition: target.partition ?? null }, err);
    };
    const image = await imageOf(session.mountpoint, point, disk, target.partition).catch(failed('cannot open the disk image'));
    const found = await bound(probe(image), () => new Error(`no answer within ${timeoutMs / 1000} s`)).catch(failed('cannot read the disk image'));
    const data = { restorePoint: point.id, disk, partition: target.partition ?? null };
    if (found === null) {
      const partitions = target.partition === undefined ? await partitionsOf(join(session.mountpoint, point.id), disk) : [];
      if (partitions.length > 0) throw new InvalidInputError(`${at} is partitioned: give REF:${disk}:pN with one of its partitions (${partitions.join(', ')})`, data);
      throw new FilesystemError(`${at}: holds no filesystem chunkvault knows (ext2/3/4, xfs, btrfs, vfat)`, data);
    }
    if (isDamaged(found)) throw new FilesystemError(`${at}: its ${found.type} superblock is damaged (${found.damaged}); no reader was started`, data);
    const type = found.type;
    const missing = readerFor(type);
    if (missing) throw new FilesystemError(`${at}: holds ${type}, which cannot be read here: ${missing}`, { ...data, type });
    opening = openReader(type, image, join(temp, 'fs'), timeoutMs);
    const open = await bound(opening, () => new Error(`the reader did not open it within ${timeoutMs / 1000} s`)).catch(failed(`the ${type} filesystem cannot be read`));
    readerName = open.name;
    const hung = (): Error => new Error(`${open.name} did not answer within ${timeoutMs / 1000} s`);
    return await work({
      point,
      disk,
      partition: target.partition,
      type,
      reader: open.name,
      list: (path) => bound(open.list(path), hung).catch(failed(`cannot list ${path} in the ${type} filesystem`)),
      extract: async (paths, dir, hash) => {
        // The copy has no time limit, only one on being idle (no byte copied for timeoutMs), which the reader keeps.
        for (const path of paths) await bound(open.check(path), hung).catch(failed(`cannot read ${path} in the ${type} filesystem`));
        await fs.mkdir(dir, { recursive: true });
        await bounded(open.extract(paths, dir, timeoutMs, options.signal), null, hung, options.signal).catch(failed(`cannot copy from the ${type} filesystem`));
        const entries: ManifestEntry[] = [];
        for (const path of paths) entries.push(...(await manifest(dir, path === '/' ? '' : basename(path), hash)));
        return entries;
      },
    });
  } finally {
    // Also a reader that opened after its time-out or a signal: fuse2fs gives up by itself after timeoutMs.
    const reader = await opening?.catch(() => null);
    await reader?.close();
    if (session) await session.unmount();
    await fs.rm(temp, { recursive: true, force: true });
  }
}
