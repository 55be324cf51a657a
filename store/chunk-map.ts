/**
 * Chunk maps: one flat file per (restore point, disk), 32 bytes per chunk slot; slot i
 * covers disk bytes [i*chunkSize, (i+1)*chunkSize). Unwritten slots read as the zero id,
 * so a map of a sparse disk is itself sparse.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { ID_BYTES } from './chunk-id.js';
import { fsyncDir, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from './durable.js';
import { DamagedDataError } from './errors.js';

export const MAP_SUFFIX = '.map';

export function slotCount(diskSize: number, chunkSize: number): number {
  return Math.ceil(diskSize / chunkSize);
}

export function slotId(map: Buffer, slot: number): Buffer {
  return map.subarray(slot * ID_BYTES, (slot + 1) * ID_BYTES);
}

/** Ids are gathered per window of this many bytes of the map (32768 slots) before they are written. */
const WINDOW_BYTES = 1024 * 1024;

/**
 * Writes slot ids in any order; `commit()` makes the map durable under its final name.
 * Ids are copied into a window of the map and written when a write falls outside it, one
 * write per run of consecutive slots written: a CBT backup hands over a few slots at a time
 * (runs of parent ids, then a task's scattered slots), and writing each (~800 writes for a
 * 3 GiB disk) cost its main thread ~28 ms. Writes are queued, not awaited one by one.
 */
export class ChunkMapWriter {
  private pending: Promise<void> = Promise.resolve();
  private failure: Error | null = null;
  /** The window: where it starts in the map, its bytes, and the sorted, disjoint [start, end) ranges written into it. */
  private window: { at: number; bytes: Buffer; written: [number, number][] } | null = null;

  private constructor(
    private readonly handle: fs.FileHandle,
    private readonly tmpPath: string,
    private readonly finalPath: string,
  ) {}

  static async create(dir: string, label: string, slots: number): Promise<ChunkMapWriter> {
    await fs.mkdir(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
    const finalPath = join(dir, label + MAP_SUFFIX);
    const tmpPath = join(dir, `.${label}${MAP_SUFFIX}.tmp`);
    const handle = await fs.open(tmpPath, 'w', PRIVATE_FILE_MODE);
    await handle.truncate(slots * ID_BYTES);
    return new ChunkMapWriter(handle, tmpPath, finalPath);
  }

  /** ids holds consecutive slots starting at firstSlot; they are copied, and may change once this returns. */
  write(firstSlot: number, ids: Buffer): void {
    if (this.failure) throw this.failure;
    for (let from = 0; from < ids.byteLength; ) {
      const at = firstSlot * ID_BYTES + from;
      const windowAt = at - (at % WINDOW_BYTES);
      if (this.window?.at !== windowAt) {
        this.flush();
        this.window = { at: windowAt, bytes: Buffer.allocUnsafe(WINDOW_BYTES), written: [] };
      }
      const start = at - windowAt;
      const copied = ids.copy(this.window.bytes, start, from);
      addRange(this.window.written, start, start + copied);
      from += copied;
    }
  }

  private flush(): void {
    if (!this.window) return;
    const { at, bytes, written } = this.window;
    this.window = null;
    for (const [start, end] of written) {
      const write = this.handle.write(bytes, start, end - start, at + start).then(
        () => undefined,
        (err: Error) => {
          this.failure ??= err;
        },
      );
      this.pending = Promise.all([this.pending, write]).then(() => undefined);
    }
  }

  async commit(): Promise<void> {
    this.flush();
    await this.pending;
    if (this.failure) throw this.failure;
    await this.handle.sync();
    await this.handle.close();
    await fs.rename(this.tmpPath, this.finalPath);
    await fsyncDir(join(this.finalPath, '..'));
  }

  async abort(): Promise<void> {
    this.window = null;
    await this.pending;
    await this.handle.close().catch(() => undefined);
    await fs.rm(this.tmpPath, { force: true });
  }
}

/** Adds [start, end) to sorted, disjoint ranges, merging it with those it touches. */
function addRange(ranges: [number, number][], start: number, end: number): void {
  let i = ranges.length;
  while (i > 0 && ranges[i - 1][0] > start) i--;
  if (i > 0 && ranges[i - 1][1] >= start) {
    i--;
    start = ranges[i][0];
    end = Math.max(end, ranges[i][1]);
    ranges.splice(i, 1);
  }
  while (i < ranges.length && ranges[i][0] <= end) {
    end = Math.max(end, ranges[i][1]);
    ranges.splice(i, 1);
  }
  ranges.splice(i, 0, [start, end]);
}

/**
 * A map is written at its full length (slots x 32 bytes) before its rename: any other length
 * is damage, never a disk that ends early in zeros. With `slots` the length is checked before
 * a byte is read, so a hostile entry cannot make it read gigabytes.
 */
export async function readChunkMap(path: string, slots?: number): Promise<Buffer> {
  const handle = await fs.open(path, 'r');
  try {
    const { size } = await handle.stat();
    const expected = slots === undefined ? size : slots * ID_BYTES;
    if (size !== expected) {
      const what = size < expected ? 'truncated' : 'too long';
      throw new DamagedDataError(`chunk map ${path} has ${size} bytes, ${expected} expected (${what})`, { object: path, bytes: size, expected, problem: `chunk map ${what} (${size} bytes, ${expected} expected)` });
    }
    const map = Buffer.allocUnsafe(size);
    for (let done = 0; done < size; ) {
      const { bytesRead } = await handle.read(map, done, size - done, done);
      if (bytesRead === 0) throw new DamagedDataError(`chunk map ${path} ended at byte ${done} of ${size}`, { object: path, problem: 'chunk map truncated' });
      done += bytesRead;
    }
    return map;
  } finally {
    await handle.close();
  }
}
