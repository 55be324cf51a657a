/**
 * A recovery session's lifecycle: check and create (or find) the session, register in the
 * store's locks (`recover <id> <DIR>`, so gc keeps the packs it reads), mount DIR with the
 * one writable image, hydrate TARGET in the background, and on a signal or an unmount from
 * outside: stop hydrating, unmount, save the bitmaps, release. `--stop` unmounts from another
 * process and waits for the serving one to leave.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Store } from '../store/store.js';
import { ChunkvaultError, InvalidInputError, SessionError } from '../engine/errors.js';
import { WorkerPool } from '../engine/pool.js';
import { ChunkFetcher } from '../engine/reader.js';
import { throttleLimits, type ThrottleLimits } from '../engine/throttle.js';
import { Hydration, type HydrationProgress } from '../engine/session/hydrate.js';
import { createSession, discardSession, imageName, openSession, planSession, servingLock, sessionLockCommand, type SessionRecord, type SessionRequest } from '../engine/session/session.js';
import { LruChunkCache } from './chunk-cache.js';
import { createFuse } from './fuse-native.js';
import { INDEX_WAIT_MS, MountProbe, POLL_MS, mountFuse, unmountFuse } from './mount.js';
import { SUBTYPE, clearStaleMount, prepareMountpoint, unmountChunkvault } from './mountpoint.js';
import { recoveryOperations } from './recovery-operations.js';

export interface ServeOptions {
  cacheBytes: number;
  /** Hydration's pace, in MB/s; only with a TARGET. */
  maxRateMBps?: number;
  allowOther?: boolean;
  log?: (line: string) => void;
  onProgress?: (progress: HydrationProgress) => void;
  /** Hydration stopped on an error (a damaged chunk, the TARGET failing): the session keeps serving. */
  onHydrationError?: (err: unknown) => void;
}

export interface ServingSession {
  record: SessionRecord;
  image: string;
  /** Settles once unmounted and everything is saved and released. */
  closed: Promise<void>;
  /** Settles when hydration ends (complete, stopped or failed); null without a TARGET. */
  hydration: Promise<HydrationProgress> | null;
  unmount(): Promise<void>;
}

/**
 * Not `ro` (the image is writable); `direct_io` as for the mount (see mount.ts); `big_writes`:
 * libfuse 2 otherwise splits every write into 4 KiB requests.
 */
const MOUNT_OPTIONS = ['direct_io', 'big_writes'];
/** How long --stop waits for the serving process to save and leave. */
const STOP_WAIT_MS = 30_000;
/** Chunks hydration copies at once: enough to keep two workers busy, few enough that a guest read soon gets one. */
const HYDRATION_PARALLEL_CHUNKS = 4;

function limitsFor(hasTarget: boolean, maxRateMBps: number | undefined): ThrottleLimits | null {
  const limits = throttleLimits(undefined, maxRateMBps);
  if (limits && !hasTarget) throw new InvalidInputError('--max-rate paces hydration: it needs --to TARGET (nothing was created)', { flag: '--max-rate' });
  return limits;
}

/** Starts a new session: everything is checked before anything is created. */
export async function startRecovery(store: Store, request: SessionRequest, options: ServeOptions): Promise<ServingSession> {
  limitsFor(request.target !== undefined, options.maxRateMBps);
  const plan = await planSession(store, request);
  let record: SessionRecord;
  try {
    await prepareMountpoint(plan.mountpoint);
    record = await createSession(store, plan);
  } finally {
    // openSession claims a device TARGET again, for as long as it serves.
    await plan.target?.release();
  }
  return serve(store, record, options).catch(async (err: unknown) => {
    await discardSession(record);
    throw err;
  });
}

/** Serves a stopped session again (after --stop, a crash or a reboot); a stale mount on DIR is cleared. */
export async function resumeRecovery(store: Store, record: SessionRecord, options: ServeOptions): Promise<ServingSession> {
  limitsFor(record.target !== null, options.maxRateMBps);
  const lock = await servingLock(store, record);
  if (lock) throw new SessionError(`the recovery session on ${record.mountpoint} is being served (pid ${lock.pid} on ${lock.host}); --stop it first`, { mountpoint: record.mountpoint, pid: lock.pid });
  await prepareMountpoint(record.mountpoint);
  return serve(store, record, options);
}

async function serve(store: Store, record: SessionRecord, options: ServeOptions): Promise<ServingSession> {
  const log = options.log ?? ((line: string) => process.stderr.write(`chunkvault: ${line}\n`));
  const limits = limitsFor(record.target !== null, options.maxRateMBps);
  let close: () => Promise<void> = async () => undefined;
  // The pin keeps prune and gc off the session's restore point; a lease that cannot be renewed
  // no longer does, so the session stops (its delta is kept: --resume) as a mount does.
  const lock = await store.lock(sessionLockCommand(record), {
    pins: [record.point],
    onLeaseLost: (err) => {
      log(err.message);
      process.exitCode = err instanceof ChunkvaultError ? err.exitCode : 2;
      close().catch((closeErr: Error) => log(`unmount: ${closeErr.message}`));
    },
  });
  const pool = new WorkerPool(store.backend, undefined, store.keys);
  const releaseStore = async (): Promise<void> => {
    await pool.close();
    await lock.release();
  };
  const session = await openSession(store, record, new ChunkFetcher(pool, new LruChunkCache(options.cacheBytes)), INDEX_WAIT_MS).catch(async (err: unknown) => {
    await releaseStore();
    throw err;
  });
  const { disk } = session;
  const probe = new MountProbe(record.mountpoint);
  const ops = recoveryOperations(disk, imageName(record), new Date(record.created), probe, log);
  const fuse = createFuse(record.mountpoint, ops, { timeout: false, allowOther: options.allowOther, fsname: 'chunkvault', subtype: SUBTYPE }, MOUNT_OPTIONS);
  try {
    await mountFuse(fuse);
  } catch (err) {
    await session.close();
    await releaseStore();
    throw err;
  }

  const chunkSize = session.point.chunkSize;
  const hydration =
    record.target === null
      ? null
      : new Hydration(disk, {
          limits,
          skipZeros: record.targetCreated,
          stepBytes: chunkSize,
          parallelSteps: HYDRATION_PARALLEL_CHUNKS,
          onProgress: options.onProgress ?? (() => undefined),
        });
  hydration?.finished.catch((err: unknown) => (options.onHydrationError ?? ((e) => log(`hydration stopped: ${e instanceof Error ? e.message : String(e)}`)))(err));

  let closing: Promise<void> | null = null;
  let markClosed: () => void = () => undefined;
  const closed = new Promise<void>((done) => (markClosed = done));
  close = (): Promise<void> => {
    closing ??= (async () => {
      clearInterval(poll);
      await hydration?.stop();
      // fusermount -uz of a path no longer ours would detach whatever is mounted there now.
      const failure = (await probe.isOurs()) ? await unmountFuse(fuse) : null;
      if (failure) log(`unmount ${record.mountpoint}: ${failure.message}`);
      await disk.sync().catch((err: Error) => log(`saving the session: ${err.message}`));
      await session.close();
      await releaseStore();
      markClosed();
    })();
    return closing;
  };
  const poll = setInterval(() => {
    probe
      .isOurs()
      .then((ours) => (ours ? undefined : close()))
      .catch((err: Error) => log(`mount check: ${err.message}`));
  }, POLL_MS);

  return { record, image: `${record.mountpoint}/${imageName(record)}`, closed, hydration: hydration?.finished ?? null, unmount: close };
}

/**
 * Unmounts a served session (refused while the image is in use: a loop device, a VM) and
 * waits for its process to save and leave; a session nobody serves only has a stale mount cleared.
 */
export async function stopRecovery(store: Store, record: SessionRecord): Promise<void> {
  const lock = await servingLock(store, record);
  if (!lock) return clearStaleMount(record.mountpoint);
  await unmountChunkvault(record.mountpoint);
  const deadline = Date.now() + STOP_WAIT_MS;
  while (await servingLock(store, record)) {
    if (Date.now() > deadline) throw new SessionError(`the process serving ${record.mountpoint} (pid ${lock.pid}) did not finish within ${STOP_WAIT_MS / 1000} s after the unmount`, { mountpoint: record.mountpoint, pid: lock.pid });
    await sleep(100);
  }
}

/** Stops the session if served, then deletes its state; a TARGET is left as it is. */
export async function discardRecovery(store: Store, record: SessionRecord): Promise<void> {
  await stopRecovery(store, record);
  await discardSession(record);
}
