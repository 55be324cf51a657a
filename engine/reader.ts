/**
 * Random access to one disk of a restore point, for the mount: map slot -> chunk -> cache
 * -> bytes. Chunk locations are resolved once, with the index open only for that lookup,
 * so a backup can run while the disk is being read. Chunks are decoded and re-hashed on
 * the worker pool; the main thread only looks up and copies.
 */
import type { Store } from '../store/store.js';
import type { RestorePoint, DiskEntry } from '../store/catalog.js';
import { ID_BYTES, isZeroId } from '../store/chunk-id.js';
import { slotCount } from '../store/chunk-map.js';
import type { ChunkRef } from './tasks.js';
import type { WorkerPool } from './pool.js';
import { chunkRef, locateChunks, readMapOrDamage, uniqueIds } from './locate.js';
import { damageAt } from './damage.js';
import { pickDisk } from './restore.js';

/** Decoded chunks by hex id; bounded by whoever implements it. */
export interface ChunkCache {
  get(hex: string): Buffer | undefined;
  /** Like get, without counting as a use. */
  has(hex: string): boolean;
  set(hex: string, data: Buffer): void;
}

interface LocatedChunk {
  hex: string;
  ref: ChunkRef;
  rawLength: number;
}

/** A chunk the index knows, or why it cannot be read at all. */
type SlotChunk = LocatedChunk | { missing: string };

/** Why a chunk's bytes cannot be trusted; the reader turns it into a DamagedDataError. */
class ChunkProblem extends Error {}

interface Deferred {
  chunk: LocatedChunk;
  resolve(data: Buffer): void;
  reject(err: Error): void;
}

const DEFAULT_TASK_BYTES = 4 * 1024 * 1024;

/**
 * Decodes chunks on the pool, shared by every disk reader of a mount: one cache keyed by
 * chunk id (restore points of the same disk share most chunks) and one decode per chunk
 * however many readers want it at the same time.
 */
export class ChunkFetcher {
  private readonly pending = new Map<string, Promise<Buffer>>();

  constructor(
    private readonly pool: WorkerPool,
    private readonly cache: ChunkCache,
    private readonly taskBytes = DEFAULT_TASK_BYTES,
  ) {}

  cached(chunk: LocatedChunk): Buffer | undefined {
    return this.cache.get(chunk.hex);
  }

  isUnderWay(chunk: LocatedChunk): boolean {
    return this.pending.has(chunk.hex) || this.cache.has(chunk.hex);
  }

  /** Each chunk's bytes; chunks neither cached nor under way are decoded in tasks of about taskBytes. */
  fetch(chunks: LocatedChunk[]): Promise<Buffer>[] {
    let batch: Deferred[] = [];
    let batchBytes = 0;
    const results = chunks.map((chunk) => {
      const hit = this.cache.get(chunk.hex);
      if (hit) return Promise.resolve(hit);
      const underway = this.pending.get(chunk.hex);
      if (underway) return underway;
      const promise = new Promise<Buffer>((resolve, reject) => batch.push({ chunk, resolve, reject }));
      promise.catch(() => undefined); // read-ahead never awaits; readers that do see the error
      this.pending.set(chunk.hex, promise);
      batchBytes += chunk.rawLength;
      if (batchBytes >= this.taskBytes) {
        this.decode(batch);
        batch = [];
        batchBytes = 0;
      }
      return promise;
    });
    if (batch.length > 0) this.decode(batch);
    return results;
  }

  private decode(batch: Deferred[]): void {
    const settle = (): void => batch.forEach((d) => this.pending.delete(d.chunk.hex));
    this.pool.decode({ op: 'decode', chunks: batch.map((d) => d.chunk.ref) }).then(
      (result) => {
        const problems = new Map(result.problems.map((p) => [p.index, p.problem]));
        batch.forEach((d, i) => {
          const problem = problems.get(i);
          if (problem !== undefined) return d.reject(new ChunkProblem(problem));
          const { buffer, offset, length } = result.chunks[i];
          const data = Buffer.from(buffer, offset, length);
          this.cache.set(d.chunk.hex, data);
          d.resolve(data);
        });
        settle();
      },
      (err: Error) => {
        batch.forEach((d) => d.reject(new ChunkProblem(`decode failed: ${err.message}`)));
        settle();
      },
    );
  }
}

/** Slot -> chunk for one disk, built from its map and one short index lookup. */
async function locateSlots(store: Store, point: RestorePoint, disk: DiskEntry, waitMs: number): Promise<(SlotChunk | null)[]> {
  const map = await readMapOrDamage(store, point, disk.label);
  const ids = uniqueIds(map);
  const locations = await locateChunks(store, ids, waitMs);
  const chunks = new Map<string, SlotChunk>();
  for (const [hex, id] of ids) {
    const location = locations.get(hex);
    chunks.set(hex, location ? { hex, ref: chunkRef(id, location), rawLength: location.rawLength } : { missing: 'chunk missing from the index' });
  }
  const slots: (SlotChunk | null)[] = [];
  for (let slot = 0; slot < slotCount(disk.size, point.chunkSize); slot++) {
    const id = map.subarray(slot * ID_BYTES, (slot + 1) * ID_BYTES);
    // A map shorter than the disk is sparse at its end: those slots are zero, like the hole they were.
    slots.push(id.byteLength < ID_BYTES || isZeroId(id) ? null : chunks.get(id.toString('hex'))!);
  }
  return slots;
}

export class DiskReader {
  private constructor(
    readonly point: RestorePoint,
    readonly disk: DiskEntry,
    private readonly slots: (SlotChunk | null)[],
    private readonly fetcher: ChunkFetcher,
  ) {}

  /** Resolves the disk's chunks; waits up to waitMs for the index when a backup holds it. */
  static async open(store: Store, point: RestorePoint, label: string, fetcher: ChunkFetcher, waitMs = 10_000): Promise<DiskReader> {
    const disk = pickDisk(point, label);
    return new DiskReader(point, disk, await locateSlots(store, point, disk, waitMs), fetcher);
  }

  get size(): number {
    return this.disk.size;
  }

  get chunkSize(): number {
    return this.point.chunkSize;
  }

  slotOf(offset: number): number {
    return Math.floor(offset / this.chunkSize);
  }

  /**
   * Copies disk bytes [offset, offset + length) into `into`, clipped at the end of the disk,
   * and returns how many. Throws DamagedDataError naming the first damaged chunk touched.
   */
  async read(into: Buffer, length: number, offset: number): Promise<number> {
    const end = Math.min(offset + length, this.size);
    if (offset >= end) return 0;
    const first = this.slotOf(offset);
    const last = this.slotOf(end - 1);
    const data = this.chunksOf(first, last);
    const ready = data.some((d) => d instanceof Promise) ? await this.settle(data, first) : (data as (Buffer | null)[]);
    for (let slot = first; slot <= last; slot++) {
      const slotStart = slot * this.chunkSize;
      const from = Math.max(offset, slotStart);
      const upto = Math.min(end, slotStart + this.chunkSize);
      const chunk = ready[slot - first];
      if (chunk === null) into.fill(0, from - offset, upto - offset);
      else if (chunk.byteLength < upto - slotStart) throw damageAt(this.point, this.disk.label, slotStart, 'chunk shorter than its slot');
      else chunk.copy(into, from - offset, from - slotStart, upto - slotStart);
    }
    return end - offset;
  }

  /** Starts decoding the chunks of slots [first, first + count) that are neither cached nor under way. */
  prefetch(first: number, count: number): void {
    const wanted: LocatedChunk[] = [];
    for (let slot = first; slot < Math.min(first + count, this.slots.length); slot++) {
      const chunk = this.slots[slot];
      if (chunk && 'ref' in chunk && !this.fetcher.isUnderWay(chunk)) wanted.push(chunk);
    }
    if (wanted.length > 0) this.fetcher.fetch(wanted);
  }

  /** null for a zero slot, the bytes when cached, a promise otherwise (all fetched together). */
  private chunksOf(first: number, last: number): (Buffer | null | Promise<Buffer>)[] {
    const out: (Buffer | null | Promise<Buffer>)[] = [];
    const toFetch: { at: number; chunk: LocatedChunk }[] = [];
    for (let slot = first; slot <= last; slot++) {
      const chunk = this.slots[slot];
      if (chunk === null) out.push(null);
      else if ('missing' in chunk) out.push(Promise.reject(new ChunkProblem(chunk.missing)));
      else {
        const hit = this.fetcher.cached(chunk);
        out.push(hit ?? null);
        if (!hit) toFetch.push({ at: slot - first, chunk });
      }
    }
    const fetched = toFetch.length > 0 ? this.fetcher.fetch(toFetch.map((f) => f.chunk)) : [];
    toFetch.forEach((f, i) => (out[f.at] = fetched[i]));
    return out;
  }

  private async settle(data: (Buffer | null | Promise<Buffer>)[], first: number): Promise<(Buffer | null)[]> {
    const settled = await Promise.allSettled(data);
    return settled.map((s, i) => {
      if (s.status === 'fulfilled') return s.value;
      const problem = s.reason instanceof ChunkProblem ? s.reason.message : String(s.reason);
      throw damageAt(this.point, this.disk.label, (first + i) * this.chunkSize, problem);
    });
  }
}
