/**
 * verify: every map's chunks are known to the index and present in their packs; with
 * readData, every chunk is decoded and re-hashed on the pool. Damage is reported as
 * byte ranges per restore point and disk.
 */
import type { Store } from '../store/store.js';
import type { DamagedEntry, RestorePoint } from '../store/catalog.js';
import type { ChunkLocation } from '../store/pack.js';
import { checkRecords } from '../store/pack.js';
import { ID_BYTES, isZeroId } from '../store/chunk-id.js';
import { DamagedDataError } from './errors.js';
import { appendRange, type DamagedRange } from './damage.js';

export type { DamagedRange } from './damage.js';
import { resolveRef } from './refs.js';
import { WorkerPool, pipeline } from './pool.js';
import { chunkRef, locateChunks, readMapOrDamage, uniqueIds } from './locate.js';

const VERIFY_TASK_BYTES = 8 * 1024 * 1024;

export interface DamagedDisk {
  restorePoint: string;
  name: string;
  disk: string;
  ranges: DamagedRange[];
}

export interface VerifyReport {
  clean: boolean;
  restorePoints: number;
  chunksChecked: number;
  bytesChecked: number;
  readData: boolean;
  damaged: DamagedDisk[];
  /** Catalog entries that cannot be trusted, by file name, and what is wrong with each. */
  damagedCatalog: string[];
  catalogProblems: DamagedEntry[];
}

export interface VerifyOptions {
  readData?: boolean;
  threads?: number;
  onProgress?: (done: number, total: number) => void;
}

interface DiskMap {
  point: RestorePoint;
  disk: string;
  size: number;
  map: Buffer | null;
  problem?: string;
}

async function loadMaps(store: Store, points: RestorePoint[]): Promise<DiskMap[]> {
  const maps: DiskMap[] = [];
  for (const point of points) {
    for (const disk of point.disks) {
      try {
        maps.push({ point, disk: disk.label, size: disk.size, map: await readMapOrDamage(store, point, disk.label) });
      } catch (err) {
        if (!(err instanceof DamagedDataError)) throw err;
        maps.push({ point, disk: disk.label, size: disk.size, map: null, problem: String(err.data.problem) });
      }
    }
  }
  return maps;
}

/** Problems by chunk hex id: header checks per pack, or full decode on the pool. */
async function checkChunks(store: Store, ids: Map<string, Buffer>, locations: Map<string, ChunkLocation>, options: VerifyOptions): Promise<Map<string, string>> {
  const problems = new Map<string, string>();
  for (const hex of ids.keys()) if (!locations.has(hex)) problems.set(hex, 'chunk missing from the index');
  const present = Array.from(locations, ([hex, location]) => ({ hex, ref: chunkRef(ids.get(hex)!, location), rawLength: location.rawLength }));
  if (options.readData) {
    const pool = new WorkerPool(store.backend, options.threads, store.keys);
    let done = 0;
    try {
      await pipeline(
        batchesByBytes(present, (c) => c.rawLength, VERIFY_TASK_BYTES),
        pool.window,
        (batch) => pool.verify({ op: 'verify', chunks: batch.map((c) => c.ref) }),
        async (result, batch) => {
          for (const { index, problem } of result.problems) problems.set(batch[index].hex, problem);
          done += batch.length;
          options.onProgress?.(done, present.length);
        },
      );
    } finally {
      await pool.close();
    }
    return problems;
  }
  const byPack = new Map<string, typeof present>();
  for (const chunk of present) {
    const list = byPack.get(chunk.ref.pack) ?? [];
    list.push(chunk);
    byPack.set(chunk.ref.pack, list);
  }
  for (const [pack, chunks] of byPack) {
    chunks.sort((a, b) => a.ref.offset - b.ref.offset);
    const found = await checkRecords(store.backend, pack, chunks.map((c) => ({ offset: c.ref.offset, storedLength: c.ref.storedLength, id: Buffer.from(c.ref.id) })));
    found.forEach((problem, i) => problem && problems.set(chunks[i].hex, problem));
  }
  return problems;
}

function* batchesByBytes<T>(items: T[], bytesOf: (item: T) => number, limit: number): Generator<T[]> {
  let batch: T[] = [];
  let bytes = 0;
  for (const item of items) {
    batch.push(item);
    bytes += bytesOf(item);
    if (bytes >= limit) {
      yield batch;
      batch = [];
      bytes = 0;
    }
  }
  if (batch.length > 0) yield batch;
}

/** Slots that use a damaged chunk, merged into ranges of equal problem. */
function damagedRanges(disk: DiskMap, chunkSize: number, problems: Map<string, string>): DamagedRange[] {
  if (!disk.map) return [{ offset: 0, length: disk.size, problem: disk.problem ?? 'chunk map unreadable' }];
  const ranges: DamagedRange[] = [];
  for (let slot = 0; slot * chunkSize < disk.size; slot++) {
    const id = disk.map.subarray(slot * ID_BYTES, (slot + 1) * ID_BYTES);
    if (isZeroId(id)) continue;
    const problem = problems.get(id.toString('hex'));
    if (!problem) continue;
    appendRange(ranges, slot * chunkSize, Math.min(chunkSize, disk.size - slot * chunkSize), problem);
  }
  return ranges;
}

/**
 * The points listed before the pin that are listed after it too: a prune that removed one in
 * between may have removed its maps, which is no damage; one that removes it after the pin
 * leaves its maps (see executePrune). A named point gone meanwhile is an unknown ref.
 */
async function stillListed(store: Store, points: RestorePoint[], ref: string | undefined): Promise<RestorePoint[]> {
  const now = (await store.catalog.list()).points;
  if (ref !== undefined) return [resolveRef(now, points[0].id)];
  const ids = new Set(now.map((p) => p.id));
  return points.filter((p) => ids.has(p.id));
}

export async function verify(store: Store, ref: string | undefined, options: VerifyOptions = {}): Promise<VerifyReport> {
  const { points: all, damaged: damagedCatalog, problems: catalogProblems } = await store.catalog.list();
  const points = ref === undefined ? all : [resolveRef(all, ref, damagedCatalog)];
  const lock = await store.lock(options.readData ? 'verify --read-data' : 'verify', { pins: points.map((p) => p.id) });
  try {
    const verified = await stillListed(store, points, ref);
    const maps = await loadMaps(store, verified);
    const ids = new Map<string, Buffer>();
    for (const { map } of maps) if (map) uniqueIds(map, ids);
    const locations = await locateChunks(store, ids);
    const problems = await checkChunks(store, ids, locations, options);
    const damaged = maps
      .map((m) => ({ restorePoint: m.point.id, name: m.point.name, disk: m.disk, ranges: damagedRanges(m, m.point.chunkSize, problems) }))
      .filter((d) => d.ranges.length > 0);
    const bytesChecked = Array.from(locations.values()).reduce((sum, l) => sum + l.rawLength, 0);
    const reportedCatalog = ref === undefined ? damagedCatalog : [];
    return {
      clean: damaged.length === 0 && reportedCatalog.length === 0,
      restorePoints: verified.length,
      chunksChecked: ids.size,
      bytesChecked,
      readData: options.readData === true,
      damaged,
      damagedCatalog: reportedCatalog,
      catalogProblems: ref === undefined ? catalogProblems : [],
    };
  } finally {
    await lock.release();
  }
}
