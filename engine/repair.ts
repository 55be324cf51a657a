/**
 * repair: rebuild the chunk index from the packs, which are self-describing. Every record
 * is decoded and re-hashed; a chunk stored twice is indexed once (gc reclaims the other).
 * The index is then made to match exactly: missing entries added, wrong ones replaced,
 * entries for chunks no pack holds removed. An index LevelDB cannot open is recreated. Last,
 * one index segment of the result supersedes every segment in the store.
 */
import type { Store } from '../store/store.js';
import { ChunkIndex } from '../store/index-db.js';
import { consolidateSegments, listSegments } from '../store/index-cache.js';
import { locationOf, recoverPack, type ChunkLocation } from '../store/pack.js';
import { loadHasher } from '../store/chunk-id.js';
import { DamagedDataError, StoreBusyError, StoreReadError } from './errors.js';

export interface RepairReport {
  packsScanned: number;
  packBytes: number;
  chunksFound: number;
  duplicates: number;
  damagedRanges: { pack: string; offset: number; length: number }[];
  /** Entries before the repair, or null when the index could not be opened. */
  indexEntriesBefore: number | null;
  indexRecreated: boolean;
  entriesAdded: number;
  entriesReplaced: number;
  entriesRemoved: number;
  indexEntriesAfter: number;
}

function sameLocation(a: ChunkLocation, b: ChunkLocation): boolean {
  return a.pack === b.pack && a.offset === b.offset && a.storedLength === b.storedLength && a.rawLength === b.rawLength && a.codec === b.codec && a.settled === b.settled;
}

/** The index, or a new empty one when LevelDB cannot open what is there. */
async function openOrRecreate(store: Store): Promise<{ index: ChunkIndex; recreated: boolean }> {
  try {
    return { index: await store.openIndex(0, false), recreated: false };
  } catch (err) {
    if (err instanceof StoreBusyError || err instanceof StoreReadError) throw err;
    await ChunkIndex.salvage(store.indexDir);
    try {
      return { index: await store.openIndex(0, false), recreated: false };
    } catch {
      return { index: await recreate(store), recreated: true };
    }
  }
}

/** A new, empty index in place of one LevelDB cannot use: the packs refill it. */
async function recreate(store: Store): Promise<ChunkIndex> {
  await ChunkIndex.destroy(store.indexDir);
  return store.openIndex(0, false);
}

interface IndexComparison {
  /** Entries for chunks no pack holds. */
  stale: Buffer[];
  /** Chunks whose entry points at a valid copy. */
  correct: Set<string>;
  entries: number;
  replaced: number;
}

async function compareIndex(index: ChunkIndex, found: Map<string, FoundChunk>): Promise<IndexComparison> {
  const comparison: IndexComparison = { stale: [], correct: new Set(), entries: 0, replaced: 0 };
  for await (const [id, location] of index.entries()) {
    comparison.entries++;
    const hex = id.toString('hex');
    const chunk = found.get(hex);
    if (!chunk) comparison.stale.push(id);
    else if (chunk.copies.some((copy) => sameLocation(copy, location))) comparison.correct.add(hex);
    else comparison.replaced++;
  }
  return comparison;
}

interface FoundChunk {
  id: Buffer;
  /** Every valid copy, in pack order. */
  copies: ChunkLocation[];
}

async function scanPacks(store: Store, report: RepairReport): Promise<Map<string, FoundChunk>> {
  const found = new Map<string, FoundChunk>();
  const packs = (await store.listPacks()).sort((a, b) => a.name.localeCompare(b.name));
  for (const pack of packs) {
    const recovery = await recoverPack(store.backend, pack.name, store.keys);
    report.packsScanned++;
    report.packBytes += recovery.size;
    for (const range of recovery.damaged) report.damagedRanges.push({ pack: pack.name, ...range });
    for (const { offset, header } of recovery.records) {
      const hex = header.id.toString('hex');
      const location = locationOf(pack.name, offset, header);
      const chunk = found.get(hex);
      if (chunk) report.duplicates++;
      if (chunk) chunk.copies.push(location);
      else found.set(hex, { id: header.id, copies: [location] });
    }
  }
  report.chunksFound = found.size;
  return found;
}

export async function repair(store: Store): Promise<RepairReport> {
  await loadHasher();
  const lock = await store.lock('repair');
  const report: RepairReport = {
    packsScanned: 0,
    packBytes: 0,
    chunksFound: 0,
    duplicates: 0,
    damagedRanges: [],
    indexEntriesBefore: null,
    indexRecreated: false,
    entriesAdded: 0,
    entriesReplaced: 0,
    entriesRemoved: 0,
    indexEntriesAfter: 0,
  };
  try {
    // The scan comes first: a repair killed during it has changed nothing, not emptied the index.
    const found = await scanPacks(store, report);
    let { index, recreated } = await openOrRecreate(store);
    try {
      let comparison: IndexComparison;
      try {
        comparison = await compareIndex(index, found);
      } catch (err) {
        // LevelDB opened it but cannot read its tables: start afresh.
        if (!(err instanceof DamagedDataError)) throw err;
        await index.close();
        index = await recreate(store);
        recreated = true;
        comparison = { stale: [], correct: new Set(), entries: 0, replaced: 0 };
      }
      const { stale, correct, entries, replaced } = comparison;
      report.indexRecreated = recreated;
      report.indexEntriesBefore = recreated ? null : entries;
      report.entriesReplaced = replaced;
      const writes = Array.from(found).filter(([hex]) => !correct.has(hex));
      report.entriesAdded = writes.length - replaced;
      report.entriesRemoved = stale.length;
      await index.replace(stale, writes.map(([, chunk]) => [chunk.id, chunk.copies[0]]));
      report.indexEntriesAfter = found.size;
      // What the packs hold is the truth now: one segment of it replaces every segment there is.
      await consolidateSegments(index, store.backend, store.keys?.sealer ?? null, await listSegments(store.backend));
    } finally {
      await index.close();
    }
    return report;
  } finally {
    await lock.release();
  }
}
