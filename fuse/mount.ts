/**
 * A mount's lifecycle: check the mountpoint, register in the store's locks (so gc sees a
 * reader), mount, follow the catalog, and unmount on a signal or when someone else
 * unmounted it. The LevelDB index is never held here; readers open it briefly.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Store } from '../store/store.js';
import { ChunkvaultError, InvalidInputError } from '../engine/errors.js';
import { WorkerPool } from '../engine/pool.js';
import { ChunkFetcher } from '../engine/reader.js';
import { LruChunkCache } from './chunk-cache.js';
import { createFuse, type FuseMount, type FuseOperations } from './fuse-native.js';
import { FilesView } from './files-view.js';
import { ImageFiles } from './image-file.js';
import { operations, type Probe } from './operations.js';
import { OpenPins } from './pins.js';
import { SUBTYPE, prepareMountpoint } from './mountpoint.js';
import { LiveTree, type TimeNames } from './tree.js';
import { ViewFiles } from './view-file.js';

export { DEFAULT_CACHE_BYTES } from './chunk-cache.js';

export interface MountOptions {
  cacheBytes: number;
  allowOther?: boolean;
  /** Show files/... (files-view.ts), each reader closed after this many ms unused. */
  filesIdleMs?: number;
  /** Damage and errors met while serving: the mount stays up and says so here. */
  log?: (line: string) => void;
  /** How by-name/ and files/ spell snapshot times (default: as restore points have them). */
  timeNames?: TimeNames;
}

export interface MountSession {
  readonly mountpoint: string;
  /** Settles once unmounted, by unmount() or from outside (chunkvault umount, fusermount -u). */
  readonly closed: Promise<void>;
  unmount(): Promise<void>;
}

/** A backup holds the index for its whole run: an open waits briefly, then fails with EBUSY naming it. */
export const INDEX_WAIT_MS = 3000;
/** fuse-native's unmount runs fusermount and may never call back: the mount stops waiting after this. */
const UNMOUNT_WAIT_MS = 5000;
/** How often the catalog is checked for new and pruned restore points, and the mount for being there. */
export const POLL_MS = 1000;
/** Read-ahead per sequential reader, at most a quarter of the cache so it is not evicted unread. */
const MAX_READ_AHEAD_BYTES = 32 * 1024 * 1024;
/** How long a reader behind files/ may take to start or answer. */
const FILES_TIMEOUT_MS = 60_000;

/**
 * `ro`: the kernel refuses every write with EROFS before it reaches us.
 * `direct_io`: reads bypass the kernel page cache and come here as they were issued. With
 * the page cache the kernel splits them into read-ahead requests that cost this process
 * twice the CPU per byte and halve sequential throughput; re-reads are served from the
 * chunk cache instead. The price: a shared mmap of an image fails (ENODEV); private
 * mmaps, read(2), loop devices, fsck and qemu-img work.
 */
const MOUNT_OPTIONS = ['ro', 'direct_io'];

export function readAheadChunks(cacheBytes: number, chunkSize: number): number {
  return Math.max(1, Math.floor(Math.min(MAX_READ_AHEAD_BYTES, cacheBytes / 4) / chunkSize));
}

export function mountFuse(fuse: FuseMount): Promise<void> {
  return new Promise((done, fail) => fuse.mount((err) => (err ? fail(err) : done())));
}

/** Resolves with fuse-native's answer, or with a timeout error: never waits forever. */
export function unmountFuse(fuse: FuseMount): Promise<Error | null> {
  return new Promise((done) => {
    const timer = setTimeout(() => done(new Error(`no answer from fuse-native within ${UNMOUNT_WAIT_MS} ms`)), UNMOUNT_WAIT_MS);
    fuse.unmount((err) => {
      clearTimeout(timer);
      done(err);
    });
  });
}

/**
 * A name no one else looks up, answered ENOENT like any other: the mount on the path is this
 * one while a lookup of it under the path reaches this process. Neither the path in mountinfo
 * nor the device tells: a filesystem mounted there since may even get the freed device number.
 */
export class MountProbe implements Probe {
  readonly path = `/.chunkvault-probe-${randomBytes(8).toString('hex')}`;
  private answers = 0;

  constructor(private readonly mountpoint: string) {}

  answered(): void {
    this.answers++;
  }

  async isOurs(): Promise<boolean> {
    const before = this.answers;
    await fs.stat(join(this.mountpoint, this.path)).catch(() => undefined);
    return this.answers > before;
  }
}

export async function mount(store: Store, mountpoint: string, options: MountOptions): Promise<MountSession> {
  if (options.cacheBytes < store.chunkSize) {
    throw new InvalidInputError(`--cache: ${options.cacheBytes} bytes cannot hold one ${store.chunkSize}-byte chunk`, { cache: options.cacheBytes });
  }
  const path = resolve(mountpoint);
  await prepareMountpoint(path);
  const log = options.log ?? ((line: string) => process.stderr.write(`chunkvault: ${line}\n`));
  let stop: () => Promise<void> = async () => undefined;
  const lock = await store.lock('mount', {
    onLeaseLost: (err) => {
      log(err.message);
      process.exitCode = err instanceof ChunkvaultError ? err.exitCode : 2;
      stop().catch((closeErr: Error) => log(`unmount: ${closeErr.message}`));
    },
  });
  const pool = new WorkerPool(store.backend, undefined, store.keys);
  const fetcher = new ChunkFetcher(pool, new LruChunkCache(options.cacheBytes));
  const images = new ImageFiles(store, fetcher, { readAheadChunks: readAheadChunks(options.cacheBytes, store.chunkSize), indexWaitMs: INDEX_WAIT_MS });
  const views = new ViewFiles(store, images);
  const tree = new LiveTree(
    async () => (await store.catalog.list()).points,
    (points) => (images.keepOnly(points), views.keepOnly(points)),
    options.timeNames,
  );
  const probe = new MountProbe(path);
  const ops = operations(tree, images, views, log, probe, new OpenPins(lock, (id) => images.forget(id)));
  const view = options.filesIdleMs === undefined ? null : await filesView(tree, ops, path, options.filesIdleMs, log);
  const fuse = createFuse(path, view ? view.operations(ops) : ops, { timeout: false, allowOther: options.allowOther, fsname: 'chunkvault', subtype: SUBTYPE }, MOUNT_OPTIONS);

  const release = async (): Promise<void> => {
    await view?.close();
    await pool.close();
    await lock.release();
  };
  try {
    await tree.refresh();
    await mountFuse(fuse);
  } catch (err) {
    await release();
    throw err;
  }

  let closing: Promise<void> | null = null;
  let markClosed: () => void = () => undefined;
  const closed = new Promise<void>((done) => (markClosed = done));
  const close = (): Promise<void> => {
    closing ??= (async () => {
      clearInterval(poll);
      // The readers read their images from this mount: they go first.
      await view?.close();
      // fuse-native unmounts with `fusermount -uz <path>`: once unmounted from outside, that
      // would detach whatever is mounted on the path now, so it is only asked while ours.
      const failure = (await probe.isOurs()) ? await unmountFuse(fuse) : null;
      if (failure) log(`unmount ${path}: ${failure.message}`);
      await release();
      markClosed();
    })();
    return closing;
  };
  stop = close;
  const poll = setInterval(() => {
    probe
      .isOurs()
      .then((ours) => (ours ? tree.refresh() : close()))
      .catch((err: Error) => log(`catalog: ${err.message}`));
  }, POLL_MS);

  return { mountpoint: path, closed, unmount: close };
}

/** The files/ view, its readers mounted under a private temp dir. */
async function filesView(tree: LiveTree, ops: FuseOperations, mountpoint: string, idleMs: number, log: (line: string) => void): Promise<FilesView> {
  const listPoint = (id: string): Promise<string[]> => new Promise((done, fail) => ops.readdir(`/${id}`, (err, names) => (err ? fail(new Error(`readdir /${id}: errno ${-err}`)) : done(names!))));
  const hiddenDir = await fs.mkdtemp(join(tmpdir(), 'chunkvault-mount-files-'));
  return new FilesView(tree, listPoint, { mountpoint, hiddenDir, idleMs, timeoutMs: FILES_TIMEOUT_MS, log });
}

/** Unmounts on SIGINT or SIGTERM; resolves once unmounted by any means. */
export async function serveUntilSignalled(session: Pick<MountSession, 'closed' | 'unmount'>): Promise<void> {
  const stop = (): void => void session.unmount();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    await session.closed;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
