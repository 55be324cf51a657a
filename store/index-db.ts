/**
 * The chunk index: chunk id -> location in a pack. LevelDB admits one process at a time,
 * so callers hold it only as long as they must (restore and mount resolve their maps and
 * close it again); a second opener gets StoreBusyError naming who holds the store.
 */
import type { ClassicLevel } from 'classic-level';
import { createRequire } from 'node:module';
import { readdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { DamagedDataError, StoreBusyError, isAbsent, storeReadError } from './errors.js';
import { chunkKey, idFromChunkKey, encodeLocation, decodeLocation, segmentMarkKey, segmentFromMarkKey, encodeSegmentMark, decodeSegmentMark, CHUNK_RANGE, SEGMENT_MARK_RANGE, type SegmentMark } from './index-keys.js';
import type { ChunkLocation } from './pack.js';

type Db = ClassicLevel<Buffer, Buffer>;

export interface IndexOpenOptions {
  /** Who holds the store, for the busy message. */
  describeHolder: () => Promise<string>;
  /** How long to keep retrying a locked index before giving up. */
  waitMs?: number;
}

let classicLevel: typeof import('classic-level') | null = null;

/**
 * LevelDB's binding, loaded on first use, not at startup: commands that never open the index
 * do not pay for it (~25 ms). Required, not imported: the bundle is CommonJS (see package.json).
 */
function loadClassicLevel(): typeof import('classic-level') {
  return (classicLevel ??= createRequire(import.meta.url)('classic-level') as typeof import('classic-level'));
}

export class ChunkIndex {
  private constructor(private readonly db: Db) {}

  static async open(dir: string, options: IndexOpenOptions): Promise<ChunkIndex> {
    const { ClassicLevel } = loadClassicLevel();
    const deadline = Date.now() + (options.waitMs ?? 0);
    for (;;) {
      const db: Db = new ClassicLevel<Buffer, Buffer>(dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' });
      try {
        await db.open();
        return new ChunkIndex(db);
      } catch (err) {
        if (!isLocked(err)) throw damagedIndex(dir, err);
        if (Date.now() >= deadline) {
          const holder = await options.describeHolder();
          throw new StoreBusyError(`store is busy: ${holder}`, { holder });
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  }

  /** LevelDB's own repair of a damaged database directory; errors are left to the next open. */
  static async salvage(dir: string): Promise<void> {
    const { ClassicLevel } = loadClassicLevel();
    await ClassicLevel.repair(dir).catch(() => undefined);
  }

  static async destroy(dir: string): Promise<void> {
    const { ClassicLevel } = loadClassicLevel();
    await ClassicLevel.destroy(dir);
  }

  async getMany(ids: Buffer[]): Promise<(ChunkLocation | undefined)[]> {
    if (ids.length === 0) return [];
    const values = await this.db.getMany(ids.map(chunkKey)).catch((err: unknown) => {
      throw damagedIndex(this.db.location, err);
    });
    return values.map((value) => (value ? decodeLocation(value) : undefined));
  }

  /**
   * One atomic, synced write: the commit point of a backup's chunks. With `segment`, the index
   * segment that holds the same entries is marked applied in the same batch.
   */
  async putMany(entries: Iterable<[Buffer, ChunkLocation]>, segment?: string): Promise<void> {
    const batch = this.db.batch();
    for (const [id, location] of entries) batch.put(chunkKey(id), encodeLocation(location));
    if (segment !== undefined) batch.put(segmentMarkKey(segment), encodeSegmentMark('applied'));
    await batch.write({ sync: true });
  }

  /** The index segments this cache has seen, and how (see index-cache.ts). */
  async segmentMarks(): Promise<Map<string, SegmentMark>> {
    const marks = new Map<string, SegmentMark>();
    try {
      for await (const [key, value] of this.db.iterator(SEGMENT_MARK_RANGE)) marks.set(segmentFromMarkKey(key), decodeSegmentMark(value));
    } catch (err) {
      throw damagedIndex(this.db.location, err);
    }
    return marks;
  }

  /** Sets and removes segment marks in one atomic, synced batch. */
  async markSegments(marks: Iterable<[string, SegmentMark]>, unmark: Iterable<string> = []): Promise<void> {
    const batch = this.db.batch();
    for (const id of unmark) batch.del(segmentMarkKey(id));
    for (const [id, mark] of marks) batch.put(segmentMarkKey(id), encodeSegmentMark(mark));
    await batch.write({ sync: true });
  }

  /**
   * Replaces everything the index holds by `entries` and `marks`, in one atomic, synced batch:
   * a cache rebuilt from segments is the old one or the new one whole.
   */
  async rebuild(entries: Iterable<[Buffer, ChunkLocation]>, marks: Iterable<[string, SegmentMark]>): Promise<void> {
    const batch = this.db.batch();
    try {
      for await (const key of this.db.keys(CHUNK_RANGE)) batch.del(key);
      for await (const key of this.db.keys(SEGMENT_MARK_RANGE)) batch.del(key);
    } catch (err) {
      throw damagedIndex(this.db.location, err);
    }
    for (const [id, location] of entries) batch.put(chunkKey(id), encodeLocation(location));
    for (const [id, mark] of marks) batch.put(segmentMarkKey(id), encodeSegmentMark(mark));
    await batch.write({ sync: true });
  }

  /** Deletions and writes in one atomic, synced batch: a rebuild is all or nothing. */
  async replace(deletions: Iterable<Buffer>, entries: Iterable<[Buffer, ChunkLocation]>): Promise<void> {
    const batch = this.db.batch();
    for (const id of deletions) batch.del(chunkKey(id));
    for (const [id, location] of entries) batch.put(chunkKey(id), encodeLocation(location));
    await batch.write({ sync: true });
  }

  async deleteMany(ids: Iterable<Buffer>): Promise<void> {
    const batch = this.db.batch();
    for (const id of ids) batch.del(chunkKey(id));
    await batch.write({ sync: true });
  }

  async *entries(): AsyncGenerator<[Buffer, ChunkLocation]> {
    try {
      for await (const [key, value] of this.db.iterator(CHUNK_RANGE)) yield [idFromChunkKey(key), decodeLocation(value)];
    } catch (err) {
      throw damagedIndex(this.db.location, err);
    }
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}

/** strerror texts LevelDB puts in its I/O errors, back to their errno names. */
const IO_ERRNOS: [RegExp, string][] = [
  [/Too many open files in system/, 'ENFILE'],
  [/Too many open files/, 'EMFILE'],
  [/Input\/output error/, 'EIO'],
  [/Permission denied/, 'EACCES'],
  [/No space left on device/, 'ENOSPC'],
];

/**
 * LevelDB cannot open or read its files. A failing read (EIO, EMFILE, EACCES...) is an error
 * that stops the command: the index may be whole. Only what LevelDB finds corrupt or missing
 * is damage, which repair rebuilds from the packs.
 */
function damagedIndex(dir: string, err: unknown): unknown {
  const e = err as { code?: string; message?: string; cause?: { message?: string } };
  if (!e.code?.startsWith('LEVEL_')) return err;
  const detail = e.cause?.message ?? e.message ?? '';
  const errno = IO_ERRNOS.find(([text]) => text.test(detail))?.[1];
  if (errno) return storeReadError(`the chunk index ${dir}`, Object.assign(new Error(detail), { code: errno }));
  if (e.code !== 'LEVEL_DATABASE_NOT_OPEN' && e.code !== 'LEVEL_CORRUPTION') return err;
  const listingFailed = unlistedFile(detail);
  if (listingFailed) return storeReadError(`the chunk index ${dir}`, listingFailed);
  return new DamagedDataError(`the chunk index ${dir} is damaged (${detail}); run 'chunkvault repair' to rebuild it from the packs`, { index: dir });
}

/**
 * LevelDB takes a file it could not list (readdir failing with EMFILE or EIO) for a missing one
 * ("Corruption: N missing files; e.g.: PATH"). When the file it names is there, the listing
 * failed, not the index: the error of listing the directory now, or that the listing left it out.
 */
function unlistedFile(detail: string): Error | null {
  const path = /missing files; e\.g\.: (\S+)/.exec(detail)?.[1];
  if (path === undefined) return null;
  try {
    statSync(path);
  } catch (err) {
    return isAbsent(err) ? null : (err as Error);
  }
  try {
    readdirSync(dirname(path));
  } catch (err) {
    return err as Error;
  }
  return new Error(`its listing left out ${path}, which is there`);
}

function isLocked(err: unknown): boolean {
  const e = err as { code?: string; cause?: { code?: string } };
  return e.code === 'LEVEL_LOCKED' || e.cause?.code === 'LEVEL_LOCKED';
}
