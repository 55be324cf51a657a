/**
 * `mount --files`: the filesystems inside the disks, next to the images.
 *
 *   files/<name>/<time>/<label>/...      the filesystem of an unpartitioned disk
 *   files/<name>/<time>/<label>/pN/...   the filesystem in partition N
 *   files/<name>/latest -> <time>
 *
 * A reader (fs-readers.ts) is started on first access, on the disk or partition file this very
 * mount serves, mounted on a private directory; operations pass through to it asynchronously
 * (never blocking the FUSE loop), at most a few at a time; it is closed after `idleMs` unused.
 * Only readers that mount (fuse2fs, kernel xfs/btrfs) can be shown: vfat's mtools cannot.
 */
import { promises as fs, type Stats } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import { identifyFilesystem, isDamaged } from '../engine/filesystems.js';
import { Fuse, type Attributes, type FuseOperations } from './fuse-native.js';
import { openReader, readerFor, type FsReader } from './fs-readers.js';
import { BY_NAME, IMAGE_SUFFIX, lookup, partitionFileName, type DirNode, type LiveTree } from './tree.js';

export const FILES = 'files';
/** Readers that cannot mount: their filesystems are only for `chunkvault files`. */
const UNMOUNTABLE = new Set(['vfat']);
/**
 * Every pass-through call holds a libuv thread until the reader answers, and the reader reads
 * its image from this process, which needs threads to answer it: a few at a time leaves them.
 */
const MAX_PASSING = 2;

export interface FilesViewOptions {
  mountpoint: string;
  /** Private directory the readers are mounted under. */
  hiddenDir: string;
  idleMs: number;
  timeoutMs: number;
  log: (line: string) => void;
}

interface Reader {
  root: string;
  reader: FsReader;
  lastUsed: number;
  open: number;
}

/** Where a path under files/ leads: a directory of ours, `latest`, or into a filesystem. */
type Place = { kind: 'dir'; entries: string[] } | { kind: 'link'; target: string } | { kind: 'fs'; key: string; image: string; rest: string };

class Gate {
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly limit: number) {}
  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.running >= this.limit) await new Promise<void>((r) => this.waiting.push(r));
    this.running++;
    try {
      return await work();
    } finally {
      this.running--;
      this.waiting.shift()?.();
    }
  }
}

function attributesOf(s: Stats): Attributes {
  return { mode: s.mode, size: s.size, blocks: s.blocks, nlink: s.nlink, uid: s.uid, gid: s.gid, mtime: s.mtime, atime: s.atime, ctime: s.ctime };
}

const DIR_ATTRIBUTES = (mtime: Date): Attributes => ({ mode: 0o040555, size: 4096, blocks: 8, nlink: 2, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, mtime, atime: mtime, ctime: mtime });

export class FilesView {
  private readonly readers = new Map<string, Promise<Reader>>();
  private readonly handles = new Map<number, { handle: fs.FileHandle; reader: Reader }>();
  private readonly gate = new Gate(MAX_PASSING);
  private nextHandle = 1;
  private readonly sweep: NodeJS.Timeout;

  constructor(
    private readonly tree: LiveTree,
    /** The mount's own readdir, which reads a restore point's partition tables. */
    private readonly listPoint: (id: string) => Promise<string[]>,
    private readonly options: FilesViewOptions,
  ) {
    this.sweep = setInterval(() => void this.closeIdle(), Math.max(500, options.idleMs / 4));
  }

  private async place(path: string): Promise<Place | null> {
    const [, name, time, label, ...rest] = path.split('/').filter((p) => p !== '');
    const names = lookup(this.tree.current, BY_NAME) as DirNode;
    if (name === undefined) return { kind: 'dir', entries: [...names.entries.keys()] };
    const named = names.entries.get(name);
    if (named?.kind !== 'dir') return null;
    if (time === undefined) return { kind: 'dir', entries: [...named.entries.keys()] };
    const at = named.entries.get(time);
    if (at?.kind === 'link') return label === undefined ? { kind: 'link', target: at.target } : null;
    const point = at?.kind === 'dir' ? at.point : undefined;
    if (!point) return null;
    if (label === undefined) return { kind: 'dir', entries: point.disks.map((d) => d.label) };
    if (!point.disks.some((d) => d.label === label)) return null;
    const partitions = (await this.listPoint(point.id))
      .filter((n) => n.startsWith(`${label}.p`) && n.endsWith(IMAGE_SUFFIX))
      .map((n) => n.slice(label.length + 1, -IMAGE_SUFFIX.length))
      .filter((p) => /^p\d+$/.test(p));
    const image = (file: string): string => join(this.options.mountpoint, point.id, file);
    if (partitions.length === 0) return { kind: 'fs', key: `${point.id}-${label}`, image: image(`${label}${IMAGE_SUFFIX}`), rest: rest.join('/') };
    const [partition, ...inside] = rest;
    if (partition === undefined) return { kind: 'dir', entries: partitions };
    if (!partitions.includes(partition)) return null;
    return { kind: 'fs', key: `${point.id}-${label}-${partition}`, image: image(partitionFileName(label, Number(partition.slice(1)))), rest: inside.join('/') };
  }

  private reader(key: string, image: string): Promise<Reader> {
    let opening = this.readers.get(key);
    if (!opening) {
      opening = this.start(key, image);
      this.readers.set(key, opening);
      // A reader that failed to start is tried again on the next access.
      opening.catch(() => this.readers.delete(key));
    }
    return opening.then((r) => ((r.lastUsed = Date.now()), r));
  }

  private async start(key: string, image: string): Promise<Reader> {
    const handle = await fs.open(image, 'r');
    const found = await identifyFilesystem(async (offset, length) => {
      const buf = Buffer.alloc(length);
      return buf.subarray(0, (await handle.read(buf, 0, length, offset)).bytesRead);
    }).finally(() => handle.close());
    if (found === null || isDamaged(found)) throw new Error(`${image}: ${found ? `damaged ${found.type} superblock` : 'no filesystem'}`);
    const missing = readerFor(found.type) ?? (UNMOUNTABLE.has(found.type) ? `${found.type} is read by mtools, which does not mount: use chunkvault files` : null);
    if (missing) throw new Error(`${image}: ${found.type}: ${missing}`);
    const root = join(this.options.hiddenDir, key);
    const reader = await openReader(found.type, image, root, this.options.timeoutMs);
    return { root, reader, lastUsed: Date.now(), open: 0 };
  }

  private async closeIdle(): Promise<void> {
    const now = Date.now();
    for (const [key, opening] of this.readers) {
      const r = await opening.catch(() => null);
      if (!r || r.open > 0 || now - r.lastUsed < this.options.idleMs || this.readers.get(key) !== opening) continue;
      this.readers.delete(key);
      await r.reader.close();
    }
  }

  async close(): Promise<void> {
    clearInterval(this.sweep);
    for (const { handle } of this.handles.values()) await handle.close().catch(() => undefined);
    this.handles.clear();
    const readers = [...this.readers.values()];
    this.readers.clear();
    for (const opening of readers) await (await opening.catch(() => null))?.reader.close();
    await fs.rm(this.options.hiddenDir, { recursive: true, force: true });
  }

  /** Runs `work` on the host path a filesystem path leads to; errno of a failure, logged once if it is not the reader's answer. */
  private pass<T>(path: string, work: (host: string, reader: Reader) => Promise<T>, done: (err: number, value?: T) => void): void {
    this.place(path)
      .then(async (place) => {
        if (place?.kind !== 'fs') throw Object.assign(new Error('not in a filesystem'), { code: 'ENOENT' });
        const reader = await this.reader(place.key, place.image);
        return this.bounded(this.gate.run(() => work(join(reader.root, place.rest), reader)));
      })
      .then(
        (value) => done(0, value),
        (err: NodeJS.ErrnoException) => {
          // The reader's own answer (ENOENT, EACCES...) is passed on as it is; anything else is ours to report.
          const errno = err.code ? (constants.errno as Record<string, number>)[err.code] : undefined;
          if (errno !== undefined) return done(-errno);
          this.options.log(`${path}: ${err.message}`);
          done(Fuse.EIO);
        },
      );
  }

  /** A reader that does not answer in time fails the request (EIO, logged) instead of holding it forever. */
  private bounded<T>(work: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, fail) => (timer = setTimeout(() => fail(new Error(`no answer from the reader within ${this.options.timeoutMs / 1000} s`)), this.options.timeoutMs)));
    return Promise.race([work, late]).finally(() => clearTimeout(timer));
  }

  operations(inner: FuseOperations): FuseOperations {
    const ours = (path: string): boolean => path === `/${FILES}` || path.startsWith(`/${FILES}/`);
    const virtual = (path: string, cb: (place: Place | null) => void, fallback: () => void): void => {
      this.place(path).then((place) => (place && place.kind !== 'fs' ? cb(place) : fallback()), () => fallback());
    };
    return {
      ...inner,
      getattr: (path, cb) => {
        if (!ours(path)) return inner.getattr(path, cb);
        virtual(
          path,
          (place) => (place ? cb(0, place.kind === 'link' ? { ...DIR_ATTRIBUTES(this.tree.current.mtime), mode: 0o120777, size: place.target.length, nlink: 1 } : DIR_ATTRIBUTES(this.tree.current.mtime)) : cb(Fuse.ENOENT)),
          () => this.pass(path, (host) => fs.lstat(host).then(attributesOf), (err, attrs) => cb(err, attrs)),
        );
      },
      readdir: (path, cb) => {
        if (path === '/') return inner.readdir(path, (err, names) => (err ? cb(err) : cb(0, [...names!, FILES])));
        if (!ours(path)) return inner.readdir(path, cb);
        virtual(
          path,
          (place) => (place?.kind === 'dir' ? cb(0, ['.', '..', ...place.entries]) : cb(Fuse.ENOTDIR)),
          () => this.pass(path, (host) => fs.readdir(host), (err, names) => cb(err, names && ['.', '..', ...names])),
        );
      },
      readlink: (path, cb) => {
        if (!ours(path)) return inner.readlink(path, cb);
        virtual(
          path,
          (place) => (place?.kind === 'link' ? cb(0, place.target) : cb(Fuse.EINVAL)),
          () => this.pass(path, (host) => fs.readlink(host), (err, target) => cb(err, target)),
        );
      },
      open: (path, flags, cb) => {
        if (!ours(path)) return inner.open(path, flags, cb);
        this.pass(
          path,
          async (host, reader) => {
            const handle = await fs.open(host, 'r');
            reader.open++;
            const fd = this.nextHandle++;
            this.handles.set(fd, { handle, reader });
            return fd;
          },
          (err, fd) => cb(err, fd),
        );
      },
      read: (path, fd, buf, len, pos, cb) => {
        if (!ours(path)) return inner.read(path, fd, buf, len, pos, cb);
        const open = this.handles.get(fd);
        if (!open) return cb(Fuse.EBADF);
        open.reader.lastUsed = Date.now();
        this.bounded(this.gate.run(() => open.handle.read(buf, 0, len, pos))).then(
          ({ bytesRead }) => cb(bytesRead),
          () => cb(Fuse.EIO),
        );
      },
      release: (path, fd, cb) => {
        if (!ours(path)) return inner.release(path, fd, cb);
        const open = this.handles.get(fd);
        this.handles.delete(fd);
        if (!open) return cb(0);
        open.reader.open--;
        open.reader.lastUsed = Date.now();
        open.handle.close().then(() => cb(0), () => cb(0));
      },
    };
  }
}
