/**
 * repair: rebuild the chunk index from the packs, which are self-describing. Every record
 * is decoded and re-hashed; a chunk stored twice is indexed once (gc reclaims the other).
 * The index is then made to match exactly: missing entries added, wrong ones replaced,
 * entries for chunks no pack holds removed. An index LevelDB cannot open is recreated.
 */
import { ClassicLevel } from 'classic-level';
import { join } from 'node:path';
import type { Store } from '../store/store.js';
import type { ChunkIndex } from '../store/index-db.js';
import { recoverPack, type ChunkLocation } from '../store/pack.js';
import { loadHasher } from '../store/chunk-id.js';
import { StoreBusyError } from './errors.js';

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
  return a.pack === b.pack && a.offset === b.offset && a.storedLength === b.storedLength && a.rawLength === b.rawLength && a.codec === b.codec;
}

/** The index, or a new empty one when LevelDB cannot open what is there. */
async function openOrRecreate(store: Store): Promise<{ index: ChunkIndex; recreated: boolean }> {
  try {
    return { index: await store.openIndex(), recreated: false };
  } catch (err) {
    if (err instanceof StoreBusyError) throw err;
    const dir = join(store.dir, 'index');
    await ClassicLevel.repair(dir).catch(() => undefined);
    try {
      return { index: await store.openIndex(), recreated: false };
    } catch {
      await ClassicLevel.destroy(dir);
      return { index: await store.openIndex(), recreated: true };
    }
  }
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
    const recovery = await recoverPack(store.packPath(pack.name));
    report.packsScanned++;
    report.packBytes += recovery.size;
    for (const range of recovery.damaged) report.damagedRanges.push({ pack: pack.name, ...range });
    for (const { offset, header } of recovery.records) {
      const hex = header.id.toString('hex');
      const location = { pack: pack.name, offset, storedLength: header.storedLength, rawLength: header.rawLength, codec: header.codec };
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
    const { index, recreated } = await openOrRecreate(store);
    report.indexRecreated = recreated;
    try {
      const found = await scanPacks(store, report);
      const stale: Buffer[] = [];
      const seen = new Set<string>();
      let before = 0;
      for await (const [id, location] of index.entries()) {
        before++;
        const hex = id.toString('hex');
        const chunk = found.get(hex);
        if (!chunk) stale.push(id);
        else if (chunk.copies.some((copy) => sameLocation(copy, location))) seen.add(hex);
        else report.entriesReplaced++;
      }
      report.indexEntriesBefore = recreated ? null : before;
      const writes = Array.from(found).filter(([hex]) => !seen.has(hex));
      report.entriesAdded = writes.length - report.entriesReplaced;
      report.entriesRemoved = stale.length;
      await index.deleteMany(stale);
      await index.putMany(writes.map(([, chunk]) => [chunk.id, chunk.copies[0]]));
      report.indexEntriesAfter = found.size;
    } finally {
      await index.close();
    }
    return report;
  } finally {
    await lock.release();
  }
}
