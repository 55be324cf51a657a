/**
 * Recovery sessions: planned (every check, nothing written), created (state directory,
 * files, registry entry), opened for serving, listed, discarded. Serving itself (FUSE) and
 * hydration are the callers'; see fuse/recovery.ts.
 */
import { promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type { Store } from '../../store/store.js';
import type { DiskEntry, RestorePoint } from '../../store/catalog.js';
import type { LockInfo } from '../../store/lock.js';
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from '../../store/durable.js';
import { MountpointError, SessionError, TargetError, UnknownRefError, errnoOf, isAbsent, storeReadError } from '../errors.js';
import { DiskReader, type ChunkFetcher } from '../reader.js';
import { resolveRef } from '../refs.js';
import { pickDisk } from '../restore.js';
import { isWithin, openTarget, type Target } from '../target.js';
import { BlockBitmap } from './bitmap.js';
import { CowDisk, type SavedBitmap } from './cow-disk.js';
import {
  RECOVER_COMMAND,
  SESSION_BLOCK_BYTES,
  STATE_SUFFIX,
  alreadyHasSession,
  allSessions,
  canonicalPath,
  contentPath,
  hasSession,
  registerSession,
  saveRecord,
  sessionFile,
  unregisterSession,
  type SessionRecord,
} from './state.js';

export { SESSION_BLOCK_BYTES, sessionAt, type SessionRecord } from './state.js';


export interface SessionRequest {
  ref: string;
  label?: string;
  mountpoint: string;
  /** The state directory; default: beside the mountpoint, `<DIR>.chunkvault-session`. */
  state?: string;
  target?: string;
}

export interface SessionPlan {
  point: RestorePoint;
  disk: DiskEntry;
  mountpoint: string;
  state: string;
  target: Target | null;
}

function blocksOf(size: number): number {
  return Math.ceil(size / SESSION_BLOCK_BYTES);
}

/** How sessions name their store: a local one by its real path (what mountpoints and states must stay out of), a remote one by its location. */
export async function storeRoot(store: Store): Promise<string> {
  const dir = store.localDir;
  if (dir === null) return store.location;
  return fs.realpath(dir).catch((err: unknown) => {
    throw storeReadError(dir, err);
  });
}

/** Another session writing `path` (its TARGET), other than `except`. */
async function sessionWriting(path: string, except?: SessionRecord): Promise<SessionRecord | undefined> {
  return (await allSessions()).find((r) => r.target === path && r.mountpoint !== except?.mountpoint);
}

/** The TARGET checks: restore's (never the store, a chunkvault mount, a device in use, too small), and no other session's. */
async function checkTarget(store: Store, target: string, size: number, mountpoint: string, self?: SessionRecord): Promise<Target> {
  const out = await openTarget(store, target, size);
  const fail = async (error: Error): Promise<never> => {
    await out.release();
    throw error;
  };
  if (isWithin(out.path, mountpoint)) return fail(new TargetError(`target ${target} is inside ${mountpoint}, which the session mounts over; choose another target (nothing was created)`, { target }));
  const other = await sessionWriting(out.path, self);
  if (other) return fail(new SessionError(`target ${target} is the target of the recovery session on ${other.mountpoint}; choose another target (nothing was created)`, { target, mountpoint: other.mountpoint }));
  return out;
}

async function checkStateDir(state: string, mountpoint: string, root: string): Promise<void> {
  if (state === root || isWithin(state, root)) throw new SessionError(`--state ${state} is inside the store ${root}; choose a directory outside it (nothing was created)`, { state });
  if (state === mountpoint || isWithin(state, mountpoint)) throw new SessionError(`--state ${state} is inside ${mountpoint}, which the session mounts over; choose a directory outside it (nothing was created)`, { state });
  const there = await fs.lstat(state).catch((err: unknown) => {
    if (isAbsent(err)) return null;
    throw new SessionError(`--state ${state} cannot be examined (${errnoOf(err)}); nothing was created`, { state });
  });
  if (there) throw new SessionError(`--state ${state} exists already (a session's state, or something else): choose another --state, or --discard the session that has it (nothing was created)`, { state });
}

/** Every check of a new session; a device TARGET comes back claimed. Nothing is written. */
export async function planSession(store: Store, request: SessionRequest): Promise<SessionPlan> {
  const { points, damaged } = await store.catalog.list();
  const point = resolveRef(points, request.ref, damaged);
  const disk = pickDisk(point, request.label);
  const root = await storeRoot(store);
  const mountpoint = await canonicalPath(request.mountpoint, 'mountpoint');
  if (mountpoint === root || isWithin(mountpoint, root)) throw new MountpointError(`mountpoint ${mountpoint} is inside the store ${root}; choose a directory outside it (nothing was created)`, { mountpoint });
  if (await hasSession(mountpoint)) throw alreadyHasSession(mountpoint);
  const state = await canonicalPath(request.state ?? mountpoint + STATE_SUFFIX, '--state');
  await checkStateDir(state, mountpoint, root);
  const target = request.target === undefined ? null : await checkTarget(store, request.target, disk.size, mountpoint);
  return { point, disk, mountpoint, state, target };
}

/** A file of `size` bytes that reads zero and holds no blocks yet. */
async function createSparse(path: string, size: number): Promise<void> {
  const file = await fs.open(path, 'wx', PRIVATE_FILE_MODE);
  try {
    await file.truncate(size);
  } finally {
    await file.close();
  }
}

/** The content a new session writes to: a new sparse file, an existing file grown to the disk, or a device as it is. */
async function prepareTarget(target: Target, size: number): Promise<boolean> {
  if (!target.exists) {
    await createSparse(target.path, size);
    return true;
  }
  if (!target.isDevice && target.bytes < size) await fs.truncate(target.path, size);
  return false;
}

/** Writes the plan's session: state directory, bitmaps, delta or TARGET, record, registry entry (last). */
export async function createSession(store: Store, plan: SessionPlan): Promise<SessionRecord> {
  const { point, disk, mountpoint, state, target } = plan;
  await fs.mkdir(state, { mode: PRIVATE_DIR_MODE }).catch((err: unknown) => {
    throw new SessionError(`--state ${state}: cannot create it (${errnoOf(err)}); nothing was created`, { state });
  });
  try {
    const record: SessionRecord = {
      format: 'chunkvault-recover-session',
      version: 1,
      store: await storeRoot(store),
      point: point.id,
      label: disk.label,
      size: disk.size,
      blockSize: SESSION_BLOCK_BYTES,
      mountpoint,
      state,
      target: target?.path ?? null,
      targetCreated: false,
      created: new Date().toISOString(),
    };
    // Written zeros, not holes: saving a bitmap page later never needs space the delta may have used up.
    const empty = Buffer.alloc(BlockBitmap.bytesFor(blocksOf(disk.size)));
    await fs.writeFile(sessionFile(record, 'present'), empty, { flag: 'wx', mode: PRIVATE_FILE_MODE });
    await fs.writeFile(sessionFile(record, 'dirty'), empty, { flag: 'wx', mode: PRIVATE_FILE_MODE });
    if (target) record.targetCreated = await prepareTarget(target, disk.size);
    else await createSparse(sessionFile(record, 'delta'), disk.size);
    await saveRecord(record);
    await registerSession(record);
    return record;
  } catch (err) {
    await fs.rm(state, { recursive: true, force: true });
    throw err;
  }
}

export interface OpenSession {
  record: SessionRecord;
  point: RestorePoint;
  disk: CowDisk;
  close(): Promise<void>;
}

export async function openBitmap(record: SessionRecord, name: 'present' | 'dirty'): Promise<SavedBitmap> {
  const path = sessionFile(record, name);
  const file = await fs.open(path, 'r+').catch((err: unknown) => {
    throw storeReadError(path, err);
  });
  const blocks = blocksOf(record.size);
  const bits = Buffer.alloc(BlockBitmap.bytesFor(blocks));
  const { bytesRead } = await file.read(bits, 0, bits.length, 0);
  if (bytesRead !== bits.length) {
    await file.close();
    throw new SessionError(`${path} holds ${bytesRead} bytes, a bitmap of ${blocks} blocks needs ${bits.length}: the session's state is damaged`, { path });
  }
  return { bits: new BlockBitmap(blocks, bits), file };
}

export async function sessionPoint(store: Store, record: SessionRecord): Promise<RestorePoint> {
  const { points, damaged } = await store.catalog.list();
  try {
    return resolveRef(points, record.point, damaged);
  } catch (err) {
    if (err instanceof UnknownRefError) throw new UnknownRefError(`restore point ${record.point} of the session on ${record.mountpoint} is no longer in the store (pruned?); --discard the session`, { restorePoint: record.point }, err);
    throw err;
  }
}

/** Opens a session's files and its restore point's disk; a device TARGET is claimed while open. */
export async function openSession(store: Store, record: SessionRecord, fetcher: ChunkFetcher, indexWaitMs: number): Promise<OpenSession> {
  const point = await sessionPoint(store, record);
  const base = await DiskReader.open(store, point, record.label, fetcher, indexWaitMs);
  const claim = record.target === null ? null : await checkTarget(store, record.target, record.size, record.mountpoint, record);
  const opened: FileHandle[] = [];
  try {
    const contentFile = contentPath(record);
    const content = await fs.open(contentFile, 'r+');
    opened.push(content);
    const present = await openBitmap(record, 'present');
    opened.push(present.file);
    const dirty = await openBitmap(record, 'dirty');
    opened.push(dirty.file);
    const disk = new CowDisk(base, { content, contentPath: contentFile, present, dirty }, record.size, record.blockSize);
    const close = async (): Promise<void> => {
      for (const file of opened) await file.close();
      await claim?.release();
    };
    return { record, point, disk, close };
  } catch (err) {
    for (const file of opened) await file.close();
    await claim?.release();
    throw err;
  }
}

export function sessionLockCommand(record: SessionRecord): string {
  return `${RECOVER_COMMAND} ${record.point} ${record.mountpoint}`;
}

/** The lock of the process serving the session, if one is. */
export async function servingLock(store: Store, record: SessionRecord): Promise<LockInfo | undefined> {
  return (await store.locks()).find((l) => l.command === sessionLockCommand(record));
}

export interface SessionListing {
  mountpoint: string;
  state: string;
  image: string;
  restorePoint: string;
  disk: string;
  size: number;
  target: string | null;
  /** 'serving' (with the pid serving it) or 'stopped' (by --stop, a crash or a reboot: --resume it). */
  status: 'serving' | 'stopped';
  pid: number | null;
  bytesWritten: number;
  bytesHydrated: number;
  /** With a TARGET: it holds the whole disk. */
  hydrated: boolean;
}

/** Bytes of disk the set blocks cover (the last block may be short). */
function coveredBytes(bits: BlockBitmap, size: number, blockSize: number): number {
  const short = bits.has(bits.blocks - 1) ? bits.blocks * blockSize - size : 0;
  return bits.count * blockSize - short;
}

export function imageName(record: Pick<SessionRecord, 'label'>): string {
  return `${record.label}.img`;
}

export async function describeSession(store: Store, record: SessionRecord): Promise<SessionListing> {
  const present = await openBitmap(record, 'present');
  const dirty = await openBitmap(record, 'dirty');
  await present.file.close();
  await dirty.file.close();
  const lock = await servingLock(store, record);
  const written = coveredBytes(dirty.bits, record.size, record.blockSize);
  return {
    mountpoint: record.mountpoint,
    state: record.state,
    image: `${record.mountpoint}/${imageName(record)}`,
    restorePoint: record.point,
    disk: record.label,
    size: record.size,
    target: record.target,
    status: lock ? 'serving' : 'stopped',
    pid: lock?.pid ?? null,
    bytesWritten: written,
    bytesHydrated: record.target === null ? 0 : coveredBytes(present.bits, record.size, record.blockSize) - written,
    hydrated: record.target !== null && present.bits.complete,
  };
}

/** The sessions of this store, by mountpoint. */
export async function listSessions(store: Store): Promise<SessionListing[]> {
  const root = await storeRoot(store);
  const mine = (await allSessions()).filter((r) => r.store === root).sort((a, b) => a.mountpoint.localeCompare(b.mountpoint));
  const listings: SessionListing[] = [];
  for (const record of mine) listings.push(await describeSession(store, record));
  return listings;
}

/** Deletes the session's state (delta and bitmaps) and registry entry; a TARGET is left as it is. */
export async function discardSession(record: SessionRecord): Promise<void> {
  await unregisterSession(record);
  await fs.rm(record.state, { recursive: true, force: true });
}
