/**
 * Garbage collection: mark every chunk the catalog's restore points reference (from their
 * maps, never from packs), sweep index entries nobody references, delete packs that hold
 * nothing live, and rewrite packs whose unused share is above a threshold.
 *
 * gc holds the index from marking to the end and an exclusive lock that no backup runs beside
 * (on any host), so no backup can add or deduplicate against a chunk meanwhile. Readers
 * (mount, restore, verify, ls) run beside it: what they pin stays, and so do the packs it is in. Every step leaves a store where all restore points restore (kill -9 anywhere):
 *   1. dead index entries are deleted (one synced batch) before any pack goes, so a later
 *      backup can never deduplicate against a chunk whose pack is gone;
 *   2. wholly dead packs are deleted, freeing space before anything is rewritten;
 *   3. compaction, in groups: live records are copied into new packs and fsynced, their
 *      index entries move in one synced batch, and only then are the old packs deleted.
 *      Recompression (--recompress, or the store's standing order) rewrites cold packs the
 *      same way, their records decoded, re-hashed and tried with zstd on the worker pool.
 * What an interrupted step leaves (unindexed records, emptied packs) is dead to the next gc.
 */
import { performance } from 'node:perf_hooks';
import { RESERVE_BYTES, type Store } from '../store/store.js';
import { freeBytes, makeRoomIfFull } from './space.js';
import type { ChunkIndex } from '../store/index-db.js';
import { consolidateSegments, writeSegment } from '../store/index-cache.js';
import { ID_BYTES } from '../store/chunk-id.js';
import { checkRecords, copyRecords, decodeRecordHeader, locationOf, recordFootprint, Codec, PACK_OVERHEAD_BYTES, RECORD_HEADER_BYTES, type ChunkLocation, type PackWriter } from '../store/pack.js';
import type { Backend, StaleWrite } from '../store/backend/backend.js';
import type { RecompressPolicy } from '../store/format.js';
import { formatCompression, type Compression } from '../store/compression.js';
import type { LockInfo } from '../store/lock.js';
import { DamagedDataError, InvalidInputError, StoreReadError, isAbsent, storeReadError } from './errors.js';
import { readMapOrDamage } from './locate.js';
import { LiveSet } from './live-set.js';
import { crashPoint } from './crash.js';
import { proveIndexed } from './gc-proof.js';
import { isRestorePointId } from '../store/catalog.js';
import { parseAge } from './age.js';
import { DEFAULT_RECOMPRESS_AGE, parseRecompression } from './config.js';
import { WorkerPool, pipeline } from './pool.js';
import { RecordOutcome, type RecompressResult } from './tasks.js';

export const DEFAULT_MAX_UNUSED_PERCENT = 10;
/**
 * The one shared lock gc cannot run beside: a backup dedups against chunks gc could be
 * deleting and writes packs that no index segment names yet. Readers say what they need in pins.
 */
const EXCLUDES_GC = 'backup';
/** Temp files younger than this may belong to a write in progress (a hold, say). */
const TMP_GRACE_MS = 60_000;
/** Multipart uploads and staged files younger than this may belong to a write in progress on another host. */
const STALE_WRITE_MARGIN_SECONDS = 3600;
/** Live bytes copied per compaction group: bounds the extra space compaction needs. */
const GROUP_BYTES = 256 * 1024 * 1024;
/** The reserve is set aside again only where it leaves room for this many more of its size. */
const RESERVE_SPARE_FACTOR = 4;
/** A zstd payload replaces a record's only when it is at least this share smaller: less is not worth a rewrite. */
export const MIN_GAIN = 0.03;
/** Raw bytes of records per recompression task: enough work to outweigh handing it to a worker. */
const RECOMPRESS_TASK_BYTES = 4 * 1024 * 1024;

export interface GcOptions {
  /** Rewrite packs whose unused share is above this percentage. */
  maxUnused?: number;
  dryRun?: boolean;
  /** Recompress cold packs so; absent: the store's standing order (config --gc-recompress), if any; null: none. */
  recompress?: RecompressPolicy | null;
  waitMs?: number;
  onProgress?: (bytesRewritten: number, bytesToRewrite: number) => void;
}

/** 'recompress': rewritten with its records tried with zstd, also where it would be compacted anyway. */
export type PackAction = 'keep' | 'delete' | 'compact' | 'recompress';

export interface PackUsage {
  pack: string;
  size: number;
  mtimeMs: number;
  /** Bytes of records the index points to for live chunks, with their table entries (recordFootprint). */
  liveBytes: number;
  /** Of those records, how many recompression would try: neither zstd nor settled. */
  untried: number;
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
  /** Unfinished uploads and staged files of killed processes (object stores). */
  staleWrites: StaleWrite[];
  /** Pack bytes gc frees: dead packs whole, compacted packs less their live records. */
  bytesFreed: number;
  /** Live bytes of the packs to compact or recompress. */
  bytesToRewrite: number;
  recompress: RecompressPolicy | null;
}

export interface RecompressionReport {
  /** The zstd level used (`zstd:9`) and the age a pack must have. */
  compression: string;
  olderThanSeconds: number;
  /** Packs recompressed (dry run: that would be), and the live bytes they held. */
  packs: number;
  liveBytes: number;
  /** Records of those packs that were tried with zstd (neither zstd nor settled yet)... */
  recordsTried: number;
  /** ...those stored anew with zstd, and those kept as they were and marked settled. */
  recordsRecompressed: number;
  recordsSettled: number;
  /** Bytes (headers included) of the records tried, before and after. */
  bytesBefore: number;
  bytesAfter: number;
  seconds: number;
  /** Live bytes of the packs recompressed per second, in 10^6. */
  mbPerSecond: number;
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
  /** null when there was no order to recompress. */
  recompression: RecompressionReport | null;
  orphanMapsRemoved: number;
  tmpFilesRemoved: number;
  /** Multipart uploads aborted and staged files removed (see staleWrites). */
  staleUploadsAborted: number;
  stagedFilesRemoved: number;
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

/**
 * gc's --recompress and --older-than: the order they give, undefined without them (the store's
 * standing order then applies). Refused, naming the option, before gc changes anything.
 */
export function recompressOrder(recompress: string | undefined, olderThan: string | undefined): RecompressPolicy | undefined {
  if (recompress === undefined) {
    if (olderThan !== undefined) throw new InvalidInputError('--older-than goes with --recompress zstd[:LEVEL]; add --recompress, or leave --older-than out', { option: '--older-than', value: olderThan });
    return undefined;
  }
  return { compression: parseRecompression(recompress, '--recompress'), olderThanSeconds: parseAge(olderThan ?? DEFAULT_RECOMPRESS_AGE, '--older-than') };
}

/**
 * A map gc could not read stops it: a map that failed to read (EIO, EMFILE...) is a read error
 * naming the file (invariant 6); one that is missing or of the wrong length is damage.
 */
function stopped(err: unknown): unknown {
  if (!(err instanceof DamagedDataError)) return err;
  const cause = err.cause as NodeJS.ErrnoException | undefined;
  if (cause?.code && !(cause instanceof DamagedDataError) && !isAbsent(cause)) return storeReadError(cause.path ?? `the chunk map of restore point ${String(err.data.restorePoint)} disk ${String(err.data.disk)}`, cause);
  return new DamagedDataError(`${err.message}; gc cannot tell which chunks it needs and deleted nothing`, err.data);
}

/**
 * Every chunk referenced by a catalog entry's maps, also of entries too damaged to parse, and by
 * the maps of every point a live lock pins (`pinned`: those alone, whose packs stay as they are).
 * The catalog is read first, then the pins: a reader pins first, then checks the catalog, so a
 * point either was still listed when gc read the catalog, or gone for good (removal is final)
 * when the reader checked it, and that reader never reads it. Either way gc keeps what is read.
 */
async function markLive(store: Store): Promise<{ live: LiveSet; pinned: LiveSet; restorePoints: number; catalogIds: Set<string>; pinnedIds: Set<string> }> {
  const { points, damaged } = await store.catalog.list();
  const pinnedIds = new Set((await store.locks()).flatMap((l) => l.pins).filter(isRestorePointId));
  const live = new LiveSet();
  const pinned = new LiveSet();
  const catalogIds = new Set([...points.map((p) => p.id), ...damaged]);
  try {
    const neighbours = new Map<string, Buffer>();
    for (const point of points) {
      for (const disk of point.disks) {
        const map = await readMapOrDamage(store, point, disk.label);
        const key = `${point.name}/${disk.label}`;
        live.addMap(map, neighbours.get(key) ?? null);
        if (pinnedIds.has(point.id)) pinned.addMap(map);
        neighbours.set(key, map);
      }
    }
    // An entry that cannot be trusted keeps every id its maps hold, whatever their length;
    // so does a pinned point pruned meanwhile (its maps stay until its pin goes).
    for (const id of [...damaged.filter(isRestorePointId), ...[...pinnedIds].filter((id) => !catalogIds.has(id))]) {
      for (const label of await store.listMapLabels(id)) {
        const map = await store.readMap(id, label);
        live.addMap(map);
        if (pinnedIds.has(id)) pinned.addMap(map);
      }
    }
  } catch (err) {
    throw stopped(err);
  }
  return { live, pinned, restorePoints: points.length, catalogIds, pinnedIds };
}

/** When the oldest running backup started (Infinity: none; -Infinity: one whose start is unreadable). */
async function oldestRunningBackup(store: Store): Promise<number> {
  const backups = (await store.locks()).filter((l) => l.command.split(' ')[0] === 'backup').map((l) => Date.parse(l.started));
  return Math.min(Infinity, ...backups.map((t) => (Number.isNaN(t) ? -Infinity : t)));
}

/**
 * Unfinished multipart uploads and staged files of killed processes: older than the margin and
 * than every running backup (a backup with few new chunks keeps a pack's upload open for long).
 */
async function staleWrites(store: Store, oldestBackup: number): Promise<StaleWrite[]> {
  if (store.backend.staleWrites === undefined) return [];
  return (await store.backend.staleWrites(staleWriteMarginMs())).filter((w) => w.startedMs < oldestBackup);
}

/** The margin in ms: CHUNKVAULT_STALE_WRITE_SECONDS (for tests: a killed upload is not an hour old), else an hour. */
function staleWriteMarginMs(): number {
  const seconds = Number(process.env.CHUNKVAULT_STALE_WRITE_SECONDS || NaN);
  return (Number.isFinite(seconds) && seconds >= 0 ? seconds : STALE_WRITE_MARGIN_SECONDS) * 1000;
}

/**
 * Maps directories of killed backups: no catalog entry (absent for certain, ENOENT), and older
 * than every running backup, which writes its maps before its catalog entry.
 */
async function orphanMaps(store: Store, keptIds: Set<string>, oldestBackup: number): Promise<string[]> {
  const orphans: string[] = [];
  for (const { id, mtimeMs } of await store.listMapDirs()) {
    if (keptIds.has(id) || mtimeMs >= oldestBackup) continue;
    if (await store.catalog.isAbsent(id)) orphans.push(id);
  }
  return orphans;
}

type Usage = Omit<PackUsage, 'pack' | 'action'>;

/** Bytes of a pack that hold nothing live: dead records and their table entries (a pack without a table counts a little less). */
function unusedBytes(usage: Pick<Usage, 'size' | 'liveBytes'>): number {
  return Math.max(0, usage.size - PACK_OVERHEAD_BYTES - usage.liveBytes);
}

/** `coldBefore`: packs last written at or before this time are recompressed (null: no recompression). */
function packAction(usage: Usage, maxUnused: number, coldBefore: number | null): PackAction {
  if (usage.liveBytes === 0) return 'delete';
  if (coldBefore !== null && usage.untried > 0 && usage.mtimeMs <= coldBefore) return 'recompress';
  return unusedBytes(usage) > (usage.size * maxUnused) / 100 ? 'compact' : 'keep';
}

const rewrites = (action: PackAction): boolean => action === 'compact' || action === 'recompress';

/** Decides what gc would do. The caller holds the index and keeps holding it for executeGc. */
export async function planGc(store: Store, index: ChunkIndex, options: GcOptions = {}): Promise<GcPlan> {
  const maxUnused = checkMaxUnused(options.maxUnused ?? DEFAULT_MAX_UNUSED_PERCENT);
  const started = performance.now();
  const { live, pinned, restorePoints, catalogIds, pinnedIds } = await markLive(store);
  const markSeconds = (performance.now() - started) / 1000;
  const recompress = options.recompress ?? null;
  const now = Date.now();
  const oldestBackup = await oldestRunningBackup(store);
  const coldBefore = recompress ? now - recompress.olderThanSeconds * 1000 : null;
  const usage = new Map<string, Usage>((await store.listPacks()).map((p) => [p.name, { size: p.size, mtimeMs: p.mtimeMs, liveBytes: 0, untried: 0 }]));
  const deadChunks = new IdList();
  /** A reader resolved the locations of what it pins once: those records must not move. */
  const pinnedPacks = new Set<string>();
  for await (const [id, location] of index.entries()) {
    if (!live.has(id)) deadChunks.push(id);
    else {
      const pack = usage.get(location.pack);
      if (!pack) continue;
      if (pinned.has(id)) pinnedPacks.add(location.pack);
      pack.liveBytes += recordFootprint(location.storedLength);
      if (location.codec !== Codec.Zstd && !location.settled) pack.untried++;
    }
  }
  const packs = Array.from(usage, ([pack, u]) => ({ pack, ...u, action: pinnedPacks.has(pack) ? 'keep' : packAction(u, maxUnused, coldBefore) }) as PackUsage).sort((a, b) => a.pack.localeCompare(b.pack));
  const touched = packs.filter((p) => p.action !== 'keep').map((p) => p.pack);
  await proveIndexed(store, index, live, touched, new Set(usage.keys()));
  return {
    maxUnused,
    restorePoints,
    refsMarked: live.refs,
    markSeconds,
    liveChunks: live.size,
    deadChunks,
    packs,
    orphanMaps: await orphanMaps(store, new Set([...catalogIds, ...pinnedIds]), oldestBackup),
    staleWrites: await staleWrites(store, oldestBackup),
    tmpFiles: (await store.tmpFiles()).filter((f) => now - f.mtimeMs > TMP_GRACE_MS).map((f) => f.key),
    bytesFreed: packs.reduce((sum, p) => sum + (p.action === 'delete' ? p.size : rewrites(p.action) ? unusedBytes(p) : 0), 0),
    bytesToRewrite: packs.reduce((sum, p) => sum + (rewrites(p.action) ? p.liveBytes : 0), 0),
    recompress,
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

/** What recompression did: the figures of RecompressionReport that a run adds up. */
type RecompressTally = Omit<RecompressionReport, 'compression' | 'olderThanSeconds' | 'mbPerSecond'>;

const noTally = (): RecompressTally => ({ packs: 0, liveBytes: 0, recordsTried: 0, recordsRecompressed: 0, recordsSettled: 0, bytesBefore: 0, bytesAfter: 0, seconds: 0 });

function addTally(into: RecompressTally, more: RecompressTally): void {
  for (const key of Object.keys(into) as (keyof RecompressTally)[]) into[key] += more[key];
}

interface Compaction {
  packsRewritten: number;
  bytesRewritten: number;
  packsDamaged: string[];
  /** Why compaction stopped before the end (too little free space to copy), or null. */
  compactionStopped: string | null;
  recompressed: RecompressTally;
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

type Moved = [Buffer, ChunkLocation][];

/** A pack's live records copied byte for byte into `writer`, with their new locations; null where one does not check out. */
async function copyPack(backend: Backend, pack: string, live: Moved, writer: PackWriter): Promise<Moved | null> {
  const problems = await checkRecords(backend, pack, live.map(([id, l]) => ({ offset: l.offset, storedLength: l.storedLength, id })));
  if (problems.some((p) => p !== null)) return null;
  const placed = await copyRecords(backend, pack, live.map(([, l]) => l), writer).catch((err: unknown) => {
    throw stoppedCompacting(err);
  });
  return live.map(([id, location], i) => [id, { ...location, ...placed[i] }]);
}

/** A pack's live records in runs of at least RECOMPRESS_TASK_BYTES raw bytes (the last may be less). */
function* recompressTasks(live: Moved): Generator<Moved> {
  let task: Moved = [];
  let bytes = 0;
  for (const entry of live) {
    task.push(entry);
    bytes += entry[1].rawLength;
    if (bytes < RECOMPRESS_TASK_BYTES) continue;
    yield task;
    task = [];
    bytes = 0;
  }
  if (task.length > 0) yield task;
}

/** Rewrites packs' live records on the worker pool: decoded, re-hashed, and zstd where it gains MIN_GAIN, else settled. */
class Recompressor {
  readonly done = noTally();
  /** Result buffers whose records are appended: handed back to the workers for their next output. */
  private readonly spare: ArrayBuffer[] = [];

  private constructor(
    private readonly pool: WorkerPool,
    private readonly compression: Compression,
  ) {}

  /** The store is upgraded first: settled flags and zstd records need format version 2. */
  static async start(store: Store, compression: Compression): Promise<Recompressor> {
    await store.allowVersion2Records();
    return new Recompressor(new WorkerPool(store.backend, undefined, store.keys), compression);
  }

  /**
   * The pack's live records rewritten into `writer`, with their new locations; null where one
   * does not check out. Records appended before the damage showed are unindexed: dead to the next gc.
   */
  async rewrite(live: Moved, writer: PackWriter): Promise<Moved | null> {
    const started = performance.now();
    const moved: Moved = [];
    const tally = noTally();
    let damaged = false;
    await pipeline(
      recompressTasks(live),
      this.pool.window,
      (task) =>
        this.pool.recompress({
          op: 'recompress',
          chunks: task.map(([id, l]) => ({ pack: l.pack, offset: l.offset, storedLength: l.storedLength, rawLength: l.rawLength, id: new Uint8Array(id) })),
          compression: this.compression,
          minGain: MIN_GAIN,
          out: this.spare.pop() ?? null,
        }),
      async (result, task) => {
        damaged ||= result.problems.length > 0;
        if (!damaged) moved.push(...(await this.append(result, task, writer, tally)));
        this.spare.push(result.buffer);
      },
    );
    if (damaged) return null;
    tally.packs = 1;
    tally.liveBytes = live.reduce((sum, [, l]) => sum + recordFootprint(l.storedLength), 0);
    tally.seconds = (performance.now() - started) / 1000;
    addTally(this.done, tally);
    return moved;
  }

  private async append(result: RecompressResult, task: Moved, writer: PackWriter, tally: RecompressTally): Promise<Moved> {
    const bytes = Buffer.from(result.buffer);
    const { pack, offset } = await writer.append(result.records.map((r) => bytes.subarray(r.recordOffset, r.recordOffset + r.recordLength)));
    let at = offset;
    return result.records.map((record, i) => {
      const [id, old] = task[i];
      const moved: [Buffer, ChunkLocation] = [id, locationOf(pack, at, decodeRecordHeader(bytes, record.recordOffset)!)];
      at += record.recordLength;
      if (record.outcome !== RecordOutcome.Copied) {
        tally.recordsTried++;
        tally.bytesBefore += RECORD_HEADER_BYTES + old.storedLength;
        tally.bytesAfter += record.recordLength;
        if (record.outcome === RecordOutcome.Recompressed) tally.recordsRecompressed++;
        else tally.recordsSettled++;
      }
      return moved;
    });
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

/** Step 3: copy (or recompress), fsync, move index entries, then delete the old packs; group by group. */
async function compact(store: Store, index: ChunkIndex, plan: GcPlan, onProgress: GcOptions['onProgress']): Promise<Compaction> {
  const targets = plan.packs.filter((p) => rewrites(p.action));
  const done: Compaction = { packsRewritten: 0, bytesRewritten: 0, packsDamaged: [], compactionStopped: null, recompressed: noTally() };
  if (targets.length === 0) return done;
  const records = await liveRecordsOf(index, new Set(targets.map((p) => p.pack)));
  const recompressor = plan.recompress && targets.some((p) => p.action === 'recompress') ? await Recompressor.start(store, plan.recompress.compression) : null;
  const writer = store.newPackWriter();
  let group: { old: string[]; moved: Moved; bytes: number } = { old: [], moved: [], bytes: 0 };
  const commitGroup = async (): Promise<void> => {
    await writer.sync();
    crashPoint('gc-after-copy');
    // Segments still name the old packs: the new places must be in one before those go.
    const segment = await writeSegment(store.backend, { entries: group.moved, supersedes: [] }, store.keys?.sealer ?? null);
    crashPoint('gc-after-segment');
    await index.putMany(group.moved, segment);
    crashPoint('gc-after-index');
    await store.deletePacks(group.old);
    done.packsRewritten += group.old.length;
    group = { old: [], moved: [], bytes: 0 };
  };
  try {
    for (const { pack, action } of targets) {
      const live = records.get(pack)!;
      const liveBytes = live.reduce((sum, [, l]) => sum + recordFootprint(l.storedLength), 0);
      // A recompressed record is never larger than it was: the live bytes bound both rewrites.
      if (!(await roomFor(store, liveBytes)) && group.old.length > 0) await commitGroup();
      if (!(await roomFor(store, liveBytes))) {
        done.compactionStopped = `the store's filesystem has less than ${liveBytes + RESERVE_BYTES} bytes free for copying pack ${pack}`;
        break;
      }
      const moved = action === 'recompress' ? await recompressor!.rewrite(live, writer) : await copyPack(store.backend, pack, live, writer);
      if (moved === null) {
        done.packsDamaged.push(pack);
        continue;
      }
      group.moved.push(...moved);
      group.old.push(pack);
      group.bytes += liveBytes;
      done.bytesRewritten += liveBytes;
      onProgress?.(done.bytesRewritten, plan.bytesToRewrite);
      if (group.bytes >= GROUP_BYTES) await commitGroup();
    }
    if (group.old.length > 0) await commitGroup();
  } finally {
    await writer.close();
    await recompressor?.close();
  }
  if (recompressor) done.recompressed = recompressor.done;
  return done;
}

/** Carries out a plan made under the same index handle. */
export async function executeGc(store: Store, index: ChunkIndex, plan: GcPlan, onProgress?: GcOptions['onProgress']): Promise<Compaction> {
  for (const id of plan.orphanMaps) await store.removeMaps(id);
  await store.removeTmpFiles(plan.tmpFiles);
  await store.backend.removeStaleWrites?.(plan.staleWrites);
  await index.deleteMany(plan.deadChunks);
  crashPoint('gc-after-sweep');
  const dead = plan.packs.filter((p) => p.action === 'delete').map((p) => p.pack);
  // Segments name the dead chunks too: a cache built from them must not find a chunk in a
  // pack that is gone, so one segment of what is live replaces them before any pack goes.
  if (plan.deadChunks.length > 0 || dead.length > 0) await consolidateSegments(index, store.backend, store.keys?.sealer ?? null);
  crashPoint('gc-after-consolidation');
  for (const [i, pack] of dead.entries()) {
    await store.deletePacks([pack]);
    if (i === 0) crashPoint('gc-mid-delete');
  }
  const compaction = await compact(store, index, plan, onProgress);
  // Fold the segments of moved records into one, so that segments do not pile up gc after gc.
  if (compaction.packsRewritten > 0) await consolidateSegments(index, store.backend, store.keys?.sealer ?? null);
  return compaction;
}

/** What a plan would recompress, before it is carried out: the records are tried only then. */
function plannedTally(plan: GcPlan): RecompressTally {
  const packs = plan.packs.filter((p) => p.action === 'recompress');
  return { ...noTally(), packs: packs.length, liveBytes: packs.reduce((sum, p) => sum + p.liveBytes, 0), recordsTried: packs.reduce((sum, p) => sum + p.untried, 0) };
}

function recompressionReport(policy: RecompressPolicy, tally: RecompressTally): RecompressionReport {
  return {
    compression: formatCompression(policy.compression),
    olderThanSeconds: policy.olderThanSeconds,
    ...tally,
    mbPerSecond: tally.seconds > 0 ? tally.liveBytes / 1e6 / tally.seconds : 0,
  };
}

async function packBytes(store: Store): Promise<number> {
  return (await store.listPacks()).reduce((sum, p) => sum + p.size, 0);
}

function runsBesideGc(lock: LockInfo): boolean {
  return lock.command.split(' ')[0] !== EXCLUDES_GC;
}

/** gc from start to end: holds the index throughout, so nothing changes between plan and execution. */
export async function gc(store: Store, options: GcOptions = {}): Promise<GcReport> {
  const started = performance.now();
  checkMaxUnused(options.maxUnused ?? DEFAULT_MAX_UNUSED_PERCENT);
  if (!options.dryRun) await makeRoomIfFull(store);
  // Before waiting for the index: a backup may hold it a long time, no use waiting to refuse.
  const lock = options.dryRun ? await store.lock('gc --dry-run') : await store.lock('gc', { kind: 'exclusive', tolerates: runsBesideGc });
  try {
    const index = await store.openIndex(options.waitMs ?? 10_000);
    try {
      const storeBytesBefore = await store.diskUsage();
      const packBytesBefore = await packBytes(store);
      const plan = await planGc(store, index, { ...options, recompress: options.recompress === undefined ? (store.format.recompress ?? null) : options.recompress });
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
        packsRewritten: plan.packs.filter((p) => rewrites(p.action)).length,
        bytesRewritten: plan.bytesToRewrite,
        packsDamaged: [],
        compactionStopped: null,
        recompression: plan.recompress && recompressionReport(plan.recompress, plannedTally(plan)),
        orphanMapsRemoved: plan.orphanMaps.length,
        tmpFilesRemoved: plan.tmpFiles.length,
        staleUploadsAborted: plan.staleWrites.filter((w) => w.kind === 'upload').length,
        stagedFilesRemoved: plan.staleWrites.filter((w) => w.kind === 'staged').length,
        storeBytesBefore,
        storeBytesAfter: storeBytesBefore - plan.bytesFreed,
        seconds: 0,
      };
      if (!options.dryRun) {
        const { recompressed, ...compaction } = await executeGc(store, index, plan, options.onProgress);
        if ((await freeBytes(store)) >= RESERVE_SPARE_FACTOR * RESERVE_BYTES) await store.restoreReserve();
        Object.assign(report, compaction, {
          recompression: plan.recompress && recompressionReport(plan.recompress, recompressed),
          bytesFreed: packBytesBefore - (await packBytes(store)),
          storeBytesAfter: await store.diskUsage(),
        });
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
