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
import type { ChunkRef, RestoreSlot, RestoreTask, RestoreResult } from './tasks.js';
import type { WorkerPool } from './pool.js';
import { chunkRef, locateChunks, readMapOrDamage, uniqueIds } from './locate.js';
import { damageAt } from './damage.js';
import { pickDisk } from './restore.js';

/** Decoded chunks by hex id; bounded by whoever implements it. */
export interface ChunkCache {
  get(hex: string): Buffer | undefined;
  /** Like get, without counting as a use. */
  has(hex: string): boolean;
  /** Returns the buffers it let go of (evicted or replaced). */
  set(hex: string, data: Buffer): Buffer[];
}

interface LocatedChunk {
  hex: string;
  ref: ChunkRef;
}

/** Slots [first, first + count) of a disk. */
export interface SlotRange {
  first: number;
  count: number;
}

/** A chunk the index knows, or why it cannot be read at all. */
type SlotChunk = LocatedChunk | { missing: string };

/**
 * Who waits for a chunk. `deliver` must copy what it needs before it returns: the buffer
 * goes back to the workers once the cache lets go of it.
 */
export interface ChunkWaiter {
  deliver(data: Buffer): void;
  fail(problem: string): void;
}

const DEFAULT_TASK_BYTES = 4 * 1024 * 1024;
/** Buffers let go of by the cache, kept for the next decodes; more are left to the GC. */
const MAX_SPARE_BUFFERS = 64;

/**
 * Decodes chunks on the pool, shared by every disk reader of a mount: one cache keyed by
 * chunk id (restore points of the same disk share most chunks) and one decode per chunk
 * however many readers want it at the same time. Decoded bytes are copied out to their
 * waiters as they arrive, so no reader holds a chunk buffer: the cache's evictions can be
 * recycled as the workers' next output buffers, sparing a page fault per 4 KiB decoded.
 */
export class ChunkFetcher {
  private readonly pending = new Map<string, ChunkWaiter[]>();
  private readonly spare: ArrayBuffer[] = [];

  constructor(
    private readonly pool: WorkerPool,
    private readonly cache: ChunkCache,
    private readonly taskBytes = DEFAULT_TASK_BYTES,
  ) {}

  /** Chunks written into a file by the workers themselves, past the cache: nothing comes back to copy. */
  restore(task: RestoreTask): Promise<RestoreResult> {
    return this.pool.restore(task);
  }

  isUnderWay(chunk: LocatedChunk): boolean {
    return this.pending.has(chunk.hex) || this.cache.has(chunk.hex);
  }

  /**
   * Hands each chunk's bytes to its waiter, at once when cached; chunks neither cached nor
   * under way are decoded in tasks of about taskBytes. Without a waiter: read-ahead.
   */
  request(wants: { chunk: LocatedChunk; waiter?: ChunkWaiter }[]): void {
    let batch: LocatedChunk[] = [];
    let batchBytes = 0;
    for (const { chunk, waiter } of wants) {
      const hit = waiter && this.cache.get(chunk.hex);
      if (hit) {
        waiter.deliver(hit);
        continue;
      }
      const waiters = this.pending.get(chunk.hex);
      if (waiters) {
        if (waiter) waiters.push(waiter);
        continue;
      }
      if (!waiter && this.cache.has(chunk.hex)) continue;
      this.pending.set(chunk.hex, waiter ? [waiter] : []);
      batch.push(chunk);
      batchBytes += chunk.ref.rawLength;
      if (batchBytes >= this.taskBytes) {
        this.decode(batch);
        batch = [];
        batchBytes = 0;
      }
    }
    if (batch.length > 0) this.decode(batch);
  }

  private decode(batch: LocatedChunk[]): void {
    const outs = batch.map((chunk) => this.spareFor(chunk.ref.rawLength));
    this.pool.decode({ op: 'decode', chunks: batch.map((c) => c.ref), outs }).then(
      (result) => {
        const problems = new Map(result.problems.map((p) => [p.index, p.problem]));
        batch.forEach((chunk, i) => {
          const problem = problems.get(i);
          if (problem !== undefined) return this.settle(chunk, (w) => w.fail(problem));
          const data = Buffer.from(result.chunks[i].buffer, 0, result.chunks[i].length);
          this.settle(chunk, (w) => w.deliver(data));
          this.recycle(this.cache.set(chunk.hex, data));
        });
      },
      (err: Error) => batch.forEach((chunk) => this.settle(chunk, (w) => w.fail(`decode failed: ${err.message}`))),
    );
  }

  private settle(chunk: LocatedChunk, notify: (waiter: ChunkWaiter) => void): void {
    const waiters = this.pending.get(chunk.hex) ?? [];
    this.pending.delete(chunk.hex);
    waiters.forEach(notify);
  }

  private spareFor(rawLength: number): ArrayBuffer | null {
    const out = this.spare.pop();
    return out && out.byteLength >= rawLength ? out : null;
  }

  private recycle(released: Buffer[]): void {
    for (const data of released) if (this.spare.length < MAX_SPARE_BUFFERS) this.spare.push(data.buffer as ArrayBuffer);
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
    chunks.set(hex, location ? { hex, ref: chunkRef(id, location) } : { missing: 'chunk missing from the index' });
  }
  const slots: (SlotChunk | null)[] = [];
  for (let slot = 0; slot < slotCount(disk.size, point.chunkSize); slot++) {
    const id = map.subarray(slot * ID_BYTES, (slot + 1) * ID_BYTES);
    slots.push(isZeroId(id) ? null : chunks.get(id.toString('hex'))!);
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
   * and returns how many. Rejects with DamagedDataError naming the first damaged chunk touched.
   */
  read(into: Buffer, length: number, offset: number): Promise<number> {
    const end = Math.min(offset + length, this.size);
    if (offset >= end) return Promise.resolve(0);
    return new Promise((resolve, reject) => {
      let damaged: { slot: number; problem: string } | null = null;
      const noteDamage = (slot: number, problem: string): void => {
        if (!damaged || slot < damaged.slot) damaged = { slot, problem };
      };
      // One for the loop below, so that chunks delivered at once cannot finish the read early.
      let waiting = 1;
      const pieceDone = (): void => {
        if (--waiting > 0) return;
        if (damaged) reject(damageAt(this.point, this.disk.label, damaged.slot * this.chunkSize, damaged.problem));
        else resolve(end - offset);
      };
      const wants: { chunk: LocatedChunk; waiter: ChunkWaiter }[] = [];
      for (let slot = this.slotOf(offset); slot <= this.slotOf(end - 1); slot++) {
        const slotStart = slot * this.chunkSize;
        const from = Math.max(offset, slotStart);
        const upto = Math.min(end, slotStart + this.chunkSize);
        const chunk = this.slots[slot];
        if (chunk === null) into.fill(0, from - offset, upto - offset);
        else if ('missing' in chunk) noteDamage(slot, chunk.missing);
        else {
          waiting++;
          const deliver = (data: Buffer): void => {
            if (data.byteLength < upto - slotStart) noteDamage(slot, 'chunk shorter than its slot');
            else data.copy(into, from - offset, from - slotStart, upto - slotStart);
            pieceDone();
          };
          wants.push({ chunk, waiter: { deliver, fail: (problem) => (noteDamage(slot, problem), pieceDone()) } });
        }
      }
      if (wants.length > 0) this.fetcher.request(wants);
      pieceDone();
    });
  }

  /** True when disk bytes [offset, offset + length) are all in zero slots: they read zero without any I/O. */
  isZero(offset: number, length: number): boolean {
    for (let slot = this.slotOf(offset); slot <= this.slotOf(offset + length - 1); slot++) if (this.slots[slot] !== null) return false;
    return true;
  }

  /**
   * Writes whole slots [first, first + count) into the file `target` at their disk offsets, as
   * restore does: decoded, checked and written by a worker, so the main thread copies nothing.
   * Zero slots are left alone when `skipZeros` (the file reads zero there), else written.
   * Rejects with DamagedDataError naming the first damaged chunk.
   */
  async writeSlots(target: string, first: number, count: number, skipZeros: boolean): Promise<void> {
    const slots: RestoreSlot[] = [];
    for (let slot = first; slot < Math.min(first + count, this.slots.length); slot++) {
      const chunk = this.slots[slot];
      const diskOffset = slot * this.chunkSize;
      if (chunk !== null && 'missing' in chunk) throw damageAt(this.point, this.disk.label, diskOffset, chunk.missing);
      if (chunk === null && skipZeros) continue;
      slots.push({ diskOffset, length: Math.min(this.chunkSize, this.size - diskOffset), chunk: chunk?.ref ?? null });
    }
    if (slots.length === 0) return;
    const [problem] = (await this.fetcher.restore({ op: 'restore', target, slots })).problems;
    if (problem) throw damageAt(this.point, this.disk.label, slots[problem.index].diskOffset, problem.problem);
  }

  /** Starts decoding the chunks of slots [first, first + count) that are neither cached nor under way. */
  prefetch(first: number, count: number): void {
    this.prefetchRanges([{ first, count }]);
  }

  /**
   * The same for several slot ranges in one request, so their chunks share decode tasks of the
   * fetcher's task size however scattered they are: read ahead in a qcow2 view of a sparse
   * disk is one range per chunk, and a task per chunk cost the mount a pool round trip each.
   */
  prefetchRanges(ranges: SlotRange[]): void {
    const wanted: { chunk: LocatedChunk }[] = [];
    for (const { first, count } of ranges) {
      for (let slot = first; slot < Math.min(first + count, this.slots.length); slot++) {
        const chunk = this.slots[slot];
        if (chunk && 'ref' in chunk && !this.fetcher.isUnderWay(chunk)) wanted.push({ chunk });
      }
    }
    if (wanted.length > 0) this.fetcher.request(wanted);
  }
}
