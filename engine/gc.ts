/**
 * Garbage collection: mark every chunk the catalog's restore points reference (from their
 * maps, never from packs), sweep index entries nobody references, delete packs that hold
 * nothing live, and rewrite packs whose unused share is above a threshold.
 *
 * gc holds the index from marking to the end, so no backup can add or deduplicate against
 * a chunk meanwhile, and it refuses to start while a mount, restore or verify may read
 * packs. Every step leaves a store where all restore points restore (kill -9 anywhere):
 *   1. dead index entries are deleted (one synced batch) before any pack goes, so a later
 *      backup can never deduplicate against a chunk whose pack is gone;
 *   2. wholly dead packs are deleted, freeing space before anything is rewritten;
 *   3. compaction, in groups: live records are copied into new packs and fsynced, their
 *      index entries move in one synced batch, and only then are the old packs deleted.
 * What an interrupted step leaves (unindexed records, emptied packs) is dead to the next gc.
 */
import { performance } from 'node:perf_hooks';
import { RESERVE_BYTES, type Store } from '../store/store.js';
import { freeBytes, makeRoomIfFull } from './space.js';
import type { ChunkIndex } from '../store/index-db.js';
import { ID_BYTES } from '../store/chunk-id.js';
import { checkRecords, copyRecords, RECORD_HEADER_BYTES, type ChunkLocation } from '../store/pack.js';
import { describeLocks } from '../store/lock.js';
import { DamagedDataError, InvalidInputError, StoreBusyError, StoreReadError } from './errors.js';
import { readMapOrDamage } from './locate.js';
import { LiveSet } from './live-set.js';
import { crashPoint } from './crash.js';
import { proveIndexed } from './gc-proof.js';
import { isRestorePointId } from '../store/catalog.js';

export const DEFAULT_MAX_UNUSED_PERCENT = 10;
/** Commands that read packs without holding the index, which gc must not pull packs from under. */
const PACK_READERS = ['mount', 'restore', 'verify'];
/** Temp files younger than this may belong to a write in progress (a hold, say). */
const TMP_GRACE_MS = 60_000;
/** Live bytes copied per compaction group: bounds the extra space compaction needs. */
const GROUP_BYTES = 256 * 1024 * 1024;
/** The reserve is set aside again only where it leaves room for this many more of its size. */
const RESERVE_SPARE_FACTOR = 4;

export interface GcOptions {
  /** Rewrite packs whose unused share is above this percentage. */
  maxUnused?: number;
  dryRun?: boolean;
  waitMs?: number;
  onProgress?: (bytesRewritten: number, bytesToRewrite: number) => void;
}

export type PackAction = 'keep' | 'delete' | 'compact';

export interface PackUsage {
  pack: string;
  size: number;
  /** Bytes of records the index points to for live chunks. */
  liveBytes: number;
  action: PackAction;
}

export interface GcPlan {
  maxUnused: number;
  restorePoints: number;
  /** Map slots read while marking (zero slots included), and how long that took. */
  refsMarked: number;
  markSeconds: number;
  liveChunks: number;
  /** Index entries no restore point references. */
  deadChunks: IdList;
  packs: PackUsage[];
  /** Maps directories without a catalog entry: leftovers of killed backups. */
  orphanMaps: string[];
  tmpFiles: string[];
  /** Pack bytes gc frees: dead packs whole, compacted packs less their live records. */
  bytesFreed: number;
  bytesToRewrite: number;
}

export interface GcReport {
  dryRun: boolean;
  maxUnused: number;
  restorePoints: number;
  refsMarked: number;
  markSeconds: number;
  liveChunks: number;
  chunksFreed: number;
  bytesFreed: number;
  packsDeleted: number;
  packsRewritten: number;
  bytesRewritten: number;
  /** Packs left alone because a live record in them did not check out (verify names the damage). */
  packsDamaged: string[];
  /** Why compaction stopped early (no room to copy), or null: the next gc goes on. */
  compactionStopped: string | null;
  orphanMapsRemoved: number;
  tmpFilesRemoved: number;
  storeBytesBefore: number;
  storeBytesAfter: number;
  seconds: number;
}

/** Chunk ids back to back in one growing buffer: millions of dead ids without millions of objects. */
export class IdList {
  private bytes = Buffer.alloc(64 * ID_BYTES);
  length = 0;

  push(id: Buffer): void {
    if ((this.length + 1) * ID_BYTES > this.bytes.byteLength) {
      const grown = Buffer.alloc(this.bytes.byteLength * 2);
      this.bytes.copy(grown);
      this.bytes = grown;
    }
    id.copy(this.bytes, this.length++ * ID_BYTES);
  }

  *[Symbol.iterator](): Generator<Buffer> {
    for (let i = 0; i < this.length; i++) yield this.bytes.subarray(i * ID_BYTES, (i + 1) * ID_BYTES);
  }
}

export function checkMaxUnused(percent: number, text = String(percent)): number {
  if (!Number.isFinite(percent) || percent < 0 || percent > 100) {
    throw new InvalidInputError(`--max-unused: '${text}' is not a percentage from 0 to 100`, { value: text });
  }
  return percent;
}

export function parseMaxUnused(text: string): number {
  return checkMaxUnused(/^\s*\d+(\.\d+)?\s*$/.test(text) ? Number(text) : NaN, text);
}

function stopped(err: unknown): unknown {
  if (!(err instanceof DamagedDataError)) return err;
  return new DamagedDataError(`${err.message}; gc cannot tell which chunks it needs and deleted nothing`, err.data);
}

/** Every chunk referenced by a catalog entry's maps, also of entries too damaged to parse. */
async function markLive(store: Store): Promise<{ live: LiveSet; restorePoints: number; catalogIds: Set<string> }> {
  const { points, damaged } = await store.catalog.list();
  const live = new LiveSet();
  try {
    const neighbours = new Map<string, Buffer>();
    for (const point of points) {
      for (const disk of point.disks) {
        const map = await readMapOrDamage(store, point, disk.label);
        const key = `${point.name}/${disk.label}`;
        live.addMap(map, neighbours.get(key) ?? null);
        neighbours.set(key, map);
      }
    }
    // An entry that cannot be trusted keeps every id its maps hold, whatever their length.
    for (const id of damaged.filter(isRestorePointId)) for (const label of await store.listMapLabels(id)) live.addMap(await store.readMap(id, label));
  } catch (err) {
    throw stopped(err);
  }
  return { live, restorePoints: points.length, catalogIds: new Set([...points.map((p) => p.id), ...damaged]) };
}

/**
 * Maps directories of killed backups: no catalog entry (absent for certain, ENOENT), and older
 * than every running backup, which writes its maps before its catalog entry.
 */
async function orphanMaps(store: Store, catalogIds: Set<string>): Promise<string[]> {
  const backups = (await store.locks()).filter((l) => l.command.split(' ')[0] === 'backup').map((l) => Date.parse(l.started));
  const oldestBackup = Math.min(Infinity, ...backups.map((t) => (Number.isNaN(t) ? -Infinity : t)));
  const orphans: string[] = [];
  for (const { id, mtimeMs } of await store.listMapDirs()) {
    if (catalogIds.has(id) || mtimeMs >= oldestBackup) continue;
    if (await store.catalog.isAbsent(id)) orphans.push(id);
  }
  return orphans;
}

function packAction(usage: { size: number; liveBytes: number }, maxUnused: number): PackAction {
  if (usage.liveBytes === 0) return 'delete';
  return usage.size - usage.liveBytes > (usage.size * maxUnused) / 100 ? 'compact' : 'keep';
}

/** Decides what gc would do. The caller holds the index and keeps holding it for executeGc. */
export async function planGc(store: Store, index: ChunkIndex, options: GcOptions = {}): Promise<GcPlan> {
  const maxUnused = checkMaxUnused(options.maxUnused ?? DEFAULT_MAX_UNUSED_PERCENT);
  const started = performance.now();
  const { live, restorePoints, catalogIds } = await markLive(store);
  const markSeconds = (performance.now() - started) / 1000;
  const usage = new Map((await store.listPacks()).map((p) => [p.name, { size: p.size, liveBytes: 0 }]));
  const deadChunks = new IdList();
  for await (const [id, location] of index.entries()) {
    if (!live.has(id)) deadChunks.push(id);
    else {
      const pack = usage.get(location.pack);
      if (pack) pack.liveBytes += RECORD_HEADER_BYTES + location.storedLength;
    }
  }
  const packs = Array.from(usage, ([pack, u]) => ({ pack, ...u, action: packAction(u, maxUnused) })).sort((a, b) => a.pack.localeCompare(b.pack));
  const touched = packs.filter((p) => p.action !== 'keep').map((p) => p.pack);
  await proveIndexed(store, index, live, touched, new Set(usage.keys()));
  const now = Date.now();
  return {
    maxUnused,
    restorePoints,
    refsMarked: live.refs,
    markSeconds,
    liveChunks: live.size,
    deadChunks,
    packs,
    orphanMaps: await orphanMaps(store, catalogIds),
    tmpFiles: (await store.tmpFiles()).filter((f) => now - f.mtimeMs > TMP_GRACE_MS).map((f) => f.path),
    bytesFreed: packs.reduce((sum, p) => sum + (p.action === 'delete' ? p.size : p.action === 'compact' ? p.size - p.liveBytes : 0), 0),
    bytesToRewrite: packs.reduce((sum, p) => sum + (p.action === 'compact' ? p.liveBytes : 0), 0),
  };
}

/** The live records of the packs to compact, in pack order, as the index has them. */
async function liveRecordsOf(index: ChunkIndex, packs: Set<string>): Promise<Map<string, [Buffer, ChunkLocation][]>> {
  const records = new Map<string, [Buffer, ChunkLocation][]>();
  for (const pack of packs) records.set(pack, []);
  for await (const entry of index.entries()) records.get(entry[1].pack)?.push(entry);
  for (const list of records.values()) list.sort((a, b) => a[1].offset - b[1].offset);
  return records;
}

interface Compaction {
  packsRewritten: number;
  bytesRewritten: number;
  packsDamaged: string[];
  /** Why compaction stopped before the end (too little free space to copy), or null. */
  compactionStopped: string | null;
}

/** By the time compaction copies, gc has changed the store: say what holds, not "nothing was changed". */
function stoppedCompacting(err: unknown): unknown {
  if (!(err instanceof StoreReadError)) return err;
  return new StoreReadError(`${err.message.replace(/; stopped, nothing was changed$/, '')}; gc stopped while compacting: dead chunks and packs are gone, every restore point is intact; run gc again`, err.data, err);
}

/** Copying writes before it frees: only with room for the copy and the reserve beside it. */
async function roomFor(store: Store, bytes: number): Promise<boolean> {
  return (await freeBytes(store)) >= bytes + RESERVE_BYTES;
}

/** Step 3: copy, fsync, move index entries, then delete the old packs; group by group. */
async function compact(store: Store, index: ChunkIndex, plan: GcPlan, onProgress: GcOptions['onProgress']): Promise<Compaction> {
  const targets = plan.packs.filter((p) => p.action === 'compact').map((p) => p.pack);
  const done: Compaction = { packsRewritten: 0, bytesRewritten: 0, packsDamaged: [], compactionStopped: null };
  if (targets.length === 0) return done;
  const records = await liveRecordsOf(index, new Set(targets));
  const writer = store.newPackWriter();
  let group: { old: string[]; moved: [Buffer, ChunkLocation][]; bytes: number } = { old: [], moved: [], bytes: 0 };
  const commitGroup = async (): Promise<void> => {
    await writer.sync();
    crashPoint('gc-after-copy');
    await index.putMany(group.moved);
    crashPoint('gc-after-index');
    await store.deletePacks(group.old);
    done.packsRewritten += group.old.length;
    group = { old: [], moved: [], bytes: 0 };
  };
  try {
    for (const pack of targets) {
      const live = records.get(pack)!;
      const path = store.packPath(pack);
      const liveBytes = live.reduce((sum, [, l]) => sum + RECORD_HEADER_BYTES + l.storedLength, 0);
      if (!(await roomFor(store, liveBytes)) && group.old.length > 0) await commitGroup();
      if (!(await roomFor(store, liveBytes))) {
        done.compactionStopped = `the store's filesystem has less than ${liveBytes + RESERVE_BYTES} bytes free for copying pack ${pack}`;
        break;
      }
      const problems = await checkRecords(path, live.map(([id, l]) => ({ offset: l.offset, storedLength: l.storedLength, id })));
      if (problems.some((p) => p !== null)) {
        done.packsDamaged.push(pack);
        continue;
      }
      const placed = await copyRecords(path, live.map(([, l]) => l), writer).catch((err: unknown) => {
        throw stoppedCompacting(err);
      });
      live.forEach(([id, location], i) => group.moved.push([id, { ...location, ...placed[i] }]));
      group.old.push(pack);
      group.bytes += liveBytes;
      done.bytesRewritten += liveBytes;
      onProgress?.(done.bytesRewritten, plan.bytesToRewrite);
      if (group.bytes >= GROUP_BYTES) await commitGroup();
    }
    if (group.old.length > 0) await commitGroup();
  } finally {
    await writer.close();
  }
  return done;
}

/** Carries out a plan made under the same index handle. */
export async function executeGc(store: Store, index: ChunkIndex, plan: GcPlan, onProgress?: GcOptions['onProgress']): Promise<Compaction> {
  for (const id of plan.orphanMaps) await store.removeMaps(id);
  await store.removeTmpFiles(plan.tmpFiles);
  await index.deleteMany(plan.deadChunks);
  crashPoint('gc-after-sweep');
  const dead = plan.packs.filter((p) => p.action === 'delete').map((p) => p.pack);
  for (const [i, pack] of dead.entries()) {
    await store.deletePacks([pack]);
    if (i === 0) crashPoint('gc-mid-delete');
  }
  return compact(store, index, plan, onProgress);
}

async function refuseWhilePacksAreRead(store: Store): Promise<void> {
  const readers = (await store.locks()).filter((l) => PACK_READERS.includes(l.command.split(' ')[0]));
  if (readers.length === 0) return;
  const holder = describeLocks(readers);
  throw new StoreBusyError(`gc cannot run while ${holder} may read packs it would delete; run gc when that has finished`, { holder });
}

async function packBytes(store: Store): Promise<number> {
  return (await store.listPacks()).reduce((sum, p) => sum + p.size, 0);
}

/** gc from start to end: holds the index throughout, so nothing changes between plan and execution. */
export async function gc(store: Store, options: GcOptions = {}): Promise<GcReport> {
  const started = performance.now();
  checkMaxUnused(options.maxUnused ?? DEFAULT_MAX_UNUSED_PERCENT);
  if (!options.dryRun) await makeRoomIfFull(store);
  const lock = await store.lock(options.dryRun ? 'gc --dry-run' : 'gc');
  try {
    // Checked before waiting for the index (a reader may hold it for a moment: no use waiting to
    // refuse) and again once gc holds it (a reader may have started meanwhile).
    if (!options.dryRun) await refuseWhilePacksAreRead(store);
    const index = await store.openIndex(options.waitMs ?? 10_000);
    try {
      if (!options.dryRun) await refuseWhilePacksAreRead(store);
      const storeBytesBefore = await store.diskUsage();
      const packBytesBefore = await packBytes(store);
      const plan = await planGc(store, index, options);
      const report: GcReport = {
        dryRun: options.dryRun === true,
        maxUnused: plan.maxUnused,
        restorePoints: plan.restorePoints,
        refsMarked: plan.refsMarked,
        markSeconds: plan.markSeconds,
        liveChunks: plan.liveChunks,
        chunksFreed: plan.deadChunks.length,
        bytesFreed: plan.bytesFreed,
        packsDeleted: plan.packs.filter((p) => p.action === 'delete').length,
        packsRewritten: plan.packs.filter((p) => p.action === 'compact').length,
        bytesRewritten: plan.bytesToRewrite,
        packsDamaged: [],
        compactionStopped: null,
        orphanMapsRemoved: plan.orphanMaps.length,
        tmpFilesRemoved: plan.tmpFiles.length,
        storeBytesBefore,
        storeBytesAfter: storeBytesBefore - plan.bytesFreed,
        seconds: 0,
      };
      if (!options.dryRun) {
        const compaction = await executeGc(store, index, plan, options.onProgress);
        if ((await freeBytes(store)) >= RESERVE_SPARE_FACTOR * RESERVE_BYTES) await store.restoreReserve();
        Object.assign(report, compaction, { bytesFreed: packBytesBefore - (await packBytes(store)), storeBytesAfter: await store.diskUsage() });
      }
      report.seconds = (performance.now() - started) / 1000;
      return report;
    } finally {
      await index.close();
    }
  } finally {
    await lock.release();
  }
}

/** What gc with default settings would free now (for stats); opens the index briefly. */
export async function previewGc(store: Store): Promise<GcPlan> {
  const index = await store.openIndex(10_000);
  try {
    return await planGc(store, index);
  } finally {
    await index.close();
  }
}
