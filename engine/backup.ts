/**
 * Backup: source extents -> chunk slots -> workers (read, hash, zero check, LZ4) ->
 * main thread (dedup, append to pack, record id in the map) -> commit.
 * Commit order (invariant 1): packs fsynced, index batch (synced), maps fsynced, catalog last.
 */
import { performance } from 'node:perf_hooks';
import type { Store } from '../store/store.js';
import type { ChunkIndex } from '../store/index-db.js';
import type { ChunkMapWriter } from '../store/chunk-map.js';
import { slotCount } from '../store/chunk-map.js';
import { ID_BYTES, isZeroId } from '../store/chunk-id.js';
import { type BackupKind, type BackupStats, type RestorePoint } from '../store/catalog.js';
import type { ChunkLocation, PackWriter } from '../store/pack.js';
import { decodeRecordHeader, locationOf } from '../store/pack.js';
import type { Compression } from '../store/compression.js';
import { writeSegment } from '../store/index-cache.js';
import { DamagedDataError, InvalidInputError, NoSpaceError, RestorePointExistsError, SourceError } from './errors.js';
import { currentSourceSize } from './source.js';
import { WorkerPool, pipeline } from './pool.js';
import { groupTasks, planSlots, type DiskLayout, type UnreadRun } from './plan.js';
import { SlotOutcome, type BackupResult, type ChunkRef, type SlotPlan } from './tasks.js';
import { chunkRef } from './locate.js';
import { Throttle, type ThrottleLimits } from './throttle.js';
import { crashPoint } from './crash.js';

const TASK_BYTES = 4 * 1024 * 1024;
/** Parent ids are written to the map in pieces of at most this many slots (2 MiB of ids). */
const PARENT_RUN_SLOTS = 65536;

export interface BackupDisk {
  label: string;
  path: string;
  layout: DiskLayout;
  /** The parent's map of the same disk, when there is one. */
  parentMap: Buffer | null;
  /** The source's size when the layout was planned: a source that shrank since fails the backup. */
  sourceSize?: number;
  /** Bytes of --skip-file files the layout leaves out (read as zeros). */
  bytesSkipped?: number;
}

export interface BackupOptions {
  name: string;
  /** What new chunks are compressed with (the store checked it can hold them). */
  compression: Compression;
  time: string;
  kind: BackupKind;
  parent: RestorePoint | null;
  /** The parent was picked by default: if it was removed meanwhile, back up without it. */
  implicitParent?: boolean;
  /** The caller's, started early so its threads load while the disks are planned; not closed here. */
  pool: WorkerPool;
  throttle?: ThrottleLimits | null;
  onProgress?: (progress: BackupProgress) => void;
}

export interface BackupProgress {
  bytesDone: number;
  bytesTotal: number;
  bytesRead: number;
  bytesNew: number;
  chunksTotal: number;
  chunksNew: number;
}

/** Everything one backup run accumulates before its commit. */
class BackupRun {
  readonly stats: Required<BackupStats> = { bytesRead: 0, bytesReadFromStore: 0, bytesSkipped: 0, bytesNew: 0, chunksTotal: 0, chunksNew: 0, chunksZero: 0, seconds: 0, secondsThrottled: 0 };
  /** Chunks written by this run, not yet in the index: dedup within the backup. */
  readonly pending = new Map<string, [Buffer, ChunkLocation]>();
  /** Result buffers whose records are stored: handed back to the workers for their next output. */
  readonly spare: ArrayBuffer[] = [];
  bytesDone = 0;

  constructor(
    readonly index: ChunkIndex,
    readonly packs: PackWriter,
    readonly bytesTotal: number,
    readonly throttle: Throttle | null,
    readonly compression: Compression,
    /** Whose chunks partly changed slots take their unchanged bytes from. */
    readonly parent: RestorePoint | null,
    readonly onProgress?: (progress: BackupProgress) => void,
  ) {}

  report(): void {
    this.onProgress?.({
      bytesDone: this.bytesDone,
      bytesTotal: this.bytesTotal,
      bytesRead: this.stats.bytesRead,
      bytesNew: this.stats.bytesNew,
      chunksTotal: this.stats.chunksTotal,
      chunksNew: this.stats.chunksNew,
    });
  }

  /** Stores the records of a worker result that neither this run nor the index has yet, then recycles its buffer. */
  async storeNewChunks(result: BackupResult): Promise<void> {
    await this.appendNewChunks(result);
    this.spare.push(result.buffer);
  }

  private async appendNewChunks(result: BackupResult): Promise<void> {
    const bytes = Buffer.from(result.buffer);
    const candidates: { id: Buffer; hex: string; record: Buffer; header: ReturnType<typeof decodeRecordHeader> }[] = [];
    const seen = new Set<string>();
    result.slots.forEach((slot, i) => {
      if (slot.outcome !== SlotOutcome.Record) return;
      const id = bytes.subarray(i * ID_BYTES, (i + 1) * ID_BYTES);
      const hex = id.toString('hex');
      if (this.pending.has(hex) || seen.has(hex)) return;
      seen.add(hex);
      const record = bytes.subarray(slot.recordOffset, slot.recordOffset + slot.recordLength);
      candidates.push({ id: Buffer.from(id), hex, record, header: decodeRecordHeader(record) });
    });
    const known = await this.index.getMany(candidates.map((c) => c.id));
    const fresh = candidates.filter((_, i) => known[i] === undefined);
    if (fresh.length === 0) return;
    const { pack, offset } = await this.packs.append(fresh.map((c) => c.record));
    let at = offset;
    for (const { id, hex, record, header } of fresh) {
      this.pending.set(hex, [id, locationOf(pack, at, header!)]);
      at += record.byteLength;
      this.stats.bytesNew += record.byteLength;
      this.stats.chunksNew++;
    }
  }
}

async function backupDisk(run: BackupRun, pool: WorkerPool, disk: BackupDisk, map: ChunkMapWriter, chunkSize: number): Promise<void> {
  const slotsPerTask = Math.max(1, Math.floor(TASK_BYTES / chunkSize));
  const slotBytes = (first: number, count: number): number =>
    Math.max(0, Math.min((first + count) * chunkSize, disk.layout.size) - first * chunkSize);
  await pipeline(
    groupTasks(planSlots(disk.layout), slotsPerTask),
    // Under a latency limit no task waits queued in the pool: one the throttle admits starts
    // reading at once, so the delay between admissions is the delay between reads.
    run.throttle?.limits.maxLatencyMs ? pool.threads : pool.window,
    async (unit) => (Array.isArray(unit) ? readSlots(run, pool, disk, unit) : null),
    async (result, unit) => {
      if (Array.isArray(unit)) {
        const [problem] = result!.problems;
        if (problem) throw parentDamage(run.parent!, disk.label, unit[problem.index].slot * chunkSize, problem.problem);
        writeIds(map, unit, Buffer.from(result!.buffer, 0, unit.length * ID_BYTES));
        await run.storeNewChunks(result!);
        run.stats.bytesRead += result!.bytesRead;
        run.stats.bytesReadFromStore += result!.bytesReadFromStore;
        run.stats.chunksZero += result!.slots.filter((s) => s.outcome === SlotOutcome.Zero).length;
        run.stats.chunksTotal += unit.length;
        run.bytesDone += unit.reduce((sum, plan) => sum + plan.length, 0);
      } else {
        recordUnreadRun(run, disk, map, unit);
        run.stats.chunksTotal += unit.count;
        run.bytesDone += slotBytes(unit.first, unit.count);
      }
      run.report();
    },
    Array.isArray,
  );
}

/** Workers read, hash and compress; the throttle holds the submission back and learns the read latency. */
async function readSlots(run: BackupRun, pool: WorkerPool, disk: BackupDisk, slots: SlotPlan[]): Promise<BackupResult> {
  const ids = parentIds(disk, slots);
  const parentChunks = await locateParentChunks(run, disk, slots, ids);
  await run.throttle?.admit(slots.reduce((sum, plan) => sum + plan.reads.reduce((s, r) => s + r.length, 0), 0));
  const result = await pool.backup({ op: 'backup', path: disk.path, slots, parentIds: ids, parentChunks, out: run.spare.pop() ?? null, compression: run.compression }).catch((err: Error) => {
    throw new SourceError(`source ${disk.path}: reading failed (${err.message}); the backup was not committed`, { path: disk.path });
  });
  if (result.reads > 0) run.throttle?.observe(result.readMs / result.reads);
  return result;
}

/**
 * Where the parent's chunks of a task's partly changed slots are (null for a zero chunk), from
 * the index this backup holds open, so gc cannot run and they stay where it says.
 */
async function locateParentChunks(run: BackupRun, disk: BackupDisk, slots: SlotPlan[], ids: Buffer | null): Promise<(ChunkRef | null)[] | null> {
  if (!slots.some((plan) => plan.keep)) return null;
  const idOf = (i: number): Buffer => ids!.subarray(i * ID_BYTES, (i + 1) * ID_BYTES);
  const wanted = slots.flatMap((plan, i) => (plan.keep && !isZeroId(idOf(i)) ? [i] : []));
  const locations = await run.index.getMany(wanted.map(idOf));
  const chunks: (ChunkRef | null)[] = slots.map(() => null);
  wanted.forEach((i, k) => {
    const location = locations[k];
    if (!location) throw parentDamage(run.parent!, disk.label, slots[i].slot * disk.layout.chunkSize, 'chunk missing from the index');
    chunks[i] = chunkRef(Buffer.from(idOf(i)), location);
  });
  return chunks;
}

/**
 * A parent's chunk a partly changed slot needs is damaged or gone. The backup fails rather
 * than read the slot whole from the source: the new chunk would have the parent's id (the
 * bytes are the same), dedup would find it in the index, and the new restore point would
 * reference the damaged chunk while the backup looked clean.
 */
function parentDamage(parent: RestorePoint, disk: string, offset: number, problem: string): DamagedDataError {
  return new DamagedDataError(
    `restore point ${parent.id} disk ${disk} at offset ${offset}: ${problem}; this incremental backup takes that slot's unchanged bytes from it and was not committed; run 'chunkvault verify' to see the damage`,
    { restorePoint: parent.id, disk, offset, problem },
  );
}

/** The parent's ids of a task's slots; zero ids past the parent's end (a grown disk). */
function parentIds(disk: BackupDisk, slots: SlotPlan[]): Buffer | null {
  const parent = disk.parentMap;
  if (!parent) return null;
  const ids = Buffer.alloc(slots.length * ID_BYTES);
  slots.forEach(({ slot }, i) => {
    if ((slot + 1) * ID_BYTES <= parent.byteLength) parent.copy(ids, i * ID_BYTES, slot * ID_BYTES, (slot + 1) * ID_BYTES);
  });
  return ids;
}

/** Writes a task's ids into the map, one write per run of consecutive slots. */
function writeIds(map: ChunkMapWriter, slots: SlotPlan[], ids: Buffer): void {
  for (let i = 0; i < slots.length; ) {
    let n = 1;
    while (i + n < slots.length && slots[i + n].slot === slots[i].slot + n) n++;
    map.write(slots[i].slot, ids.subarray(i * ID_BYTES, (i + n) * ID_BYTES));
    i += n;
  }
}

/**
 * Zero runs need nothing (the map is zero-filled); parent runs copy the parent's ids, in
 * pieces. Parent runs lie within the parent's map: a size change makes the slots past its
 * common part read (plan.ts resizedRange).
 */
function recordUnreadRun(run: BackupRun, disk: BackupDisk, map: ChunkMapWriter, unit: UnreadRun): void {
  if (unit.kind === 'zero') {
    run.stats.chunksZero += unit.count;
    return;
  }
  const end = unit.first + unit.count;
  for (let first = unit.first; first < end; first += PARENT_RUN_SLOTS) {
    const ids = disk.parentMap!.subarray(first * ID_BYTES, Math.min(first + PARENT_RUN_SLOTS, end) * ID_BYTES);
    map.write(first, ids);
    for (let at = 0; at < ids.byteLength; at += ID_BYTES) if (isZeroId(ids.subarray(at, at + ID_BYTES))) run.stats.chunksZero++;
  }
}

export async function backup(store: Store, disks: BackupDisk[], options: BackupOptions): Promise<RestorePoint> {
  const started = performance.now();
  const lock = await store.lock('backup');
  const maps: ChunkMapWriter[] = [];
  let index: ChunkIndex | null = null;
  const packs = store.newPackWriter();
  const pool = options.pool;
  let id: string | null = null;
  try {
    id = await store.claimRestorePointId();
    // A mount or restore holds the index for a moment to resolve chunk locations: wait for it.
    index = await store.openIndex(10_000);
    const parent = options.parent && (await parentStillListed(store, options.parent, disks, options.implicitParent === true));
    const throttle = options.throttle ? new Throttle(options.throttle) : null;
    const run = new BackupRun(index, packs, disks.reduce((s, d) => s + d.layout.size, 0), throttle, options.compression, parent, options.onProgress);
    run.stats.bytesSkipped = disks.reduce((s, d) => s + (d.bytesSkipped ?? 0), 0);
    for (const disk of disks) {
      const map = await store.createMapWriter(id, disk.label, slotCount(disk.layout.size, store.chunkSize));
      maps.push(map);
      await backupDisk(run, pool, disk, map, store.chunkSize);
      await checkSourceKept(disk);
    }
    await packs.sync();
    crashPoint('backup-after-packs');
    await recordNewChunks(store, index, Array.from(run.pending.values()));
    crashPoint('backup-after-index');
    for (const map of maps) await map.commit();
    crashPoint('backup-after-maps');
    run.stats.seconds = (performance.now() - started) / 1000;
    run.stats.secondsThrottled = throttle?.secondsThrottled ?? 0;
    const point: RestorePoint = {
      id,
      name: options.name,
      time: options.time,
      created: new Date().toISOString(),
      chunkSize: store.chunkSize,
      kind: options.kind,
      parent: parent ? parent.id : null,
      disks: disks.map((d) => ({ label: d.label, size: d.layout.size })),
      hold: null,
      stats: run.stats,
    };
    await store.catalog.commit(point);
    crashPoint('backup-after-catalog');
    return point;
  } catch (err) {
    for (const map of maps) await map.abort();
    // The maps of an id another writer committed are that restore point's: never removed.
    if (id !== null && !(err instanceof RestorePointExistsError)) await store.removeMaps(id).catch(() => undefined);
    throw explainNoSpace(err, store.location);
  } finally {
    await packs.close();
    await index?.close();
    await lock.release();
  }
}

/**
 * The new chunks' locations go into an index segment first (what other hosts, and this one's
 * cache when it is lost, learn them from), then into the index with the segment marked applied.
 */
async function recordNewChunks(store: Store, index: ChunkIndex, entries: [Buffer, ChunkLocation][]): Promise<void> {
  if (entries.length === 0) return;
  const segment = await writeSegment(store.backend, { entries, supersedes: [] }, store.keys?.sealer ?? null);
  crashPoint('backup-after-segment');
  await index.putMany(entries, segment);
}

/**
 * The parent's ids are reused unread. gc cannot run while this backup holds the index, so
 * they stay valid if the parent is still in the catalog now: if it was removed (and gc may
 * have run) between reading its map and opening the index, its chunks may be gone.
 */
async function parentStillListed(store: Store, parent: RestorePoint, disks: BackupDisk[], implicit: boolean): Promise<RestorePoint | null> {
  const { points } = await store.catalog.list();
  if (points.some((p) => p.id === parent.id)) return parent;
  if (!implicit) {
    throw new InvalidInputError(`parent ${parent.id} was removed while this backup started; nothing was written; back up again with another --parent`, { parent: parent.id });
  }
  // Only a default parent's ids were to be reused (no CBT list): every slot is read anyway.
  disks.forEach((d) => (d.parentMap = null));
  return null;
}

/** A file truncated while it was planned or read would otherwise pass for a disk with zeros at its end. */
async function checkSourceKept(disk: BackupDisk): Promise<void> {
  if (disk.sourceSize === undefined) return;
  const now = await currentSourceSize(disk.path);
  if (now === null || now < disk.sourceSize) {
    const what = now === null ? 'disappeared' : `shrank from ${disk.sourceSize} to ${now} bytes`;
    throw new SourceError(`source ${disk.path} ${what} during the backup; the backup was not committed`, { path: disk.path, size: disk.sourceSize, now });
  }
}

function explainNoSpace(err: unknown, dir: string): unknown {
  if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') return err;
  return new NoSpaceError(`no space left on the store's filesystem (${dir}); the backup was not committed and gc reclaims its partial data`, { store: dir });
}
