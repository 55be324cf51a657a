/**
 * Chunk maps: one flat file per (restore point, disk), 32 bytes per chunk slot; slot i
 * covers disk bytes [i*chunkSize, (i+1)*chunkSize). Unwritten slots read as the zero id,
 * so a map of a sparse disk is itself sparse. In an encrypted store the object is the whole map
 * sealed (crypto.ts), bound to its key (restore point and label), so a map copied over another
 * does not open; its staged file is sealed in place on commit.
 */
import { promises as fs } from 'node:fs';
import { ID_BYTES } from './chunk-id.js';
import { DamagedDataError, SealBrokenError } from './errors.js';
import { objectName, type Backend, type Staged } from './backend/backend.js';
import { SEAL_OVERHEAD, type Sealer } from './crypto.js';

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
    private readonly staged: Staged,
    private readonly key: string,
    private readonly sealer: Sealer | null,
  ) {}

  /** A writer of the map object `key` with `slots` slots, all the zero id until written; sealed on commit when `sealer` is given. */
  static async create(backend: Backend, key: string, slots: number, sealer: Sealer | null = null): Promise<ChunkMapWriter> {
    const staged = await backend.stage(key);
    const handle = await fs.open(staged.path, 'r+');
    await handle.truncate(slots * ID_BYTES);
    return new ChunkMapWriter(handle, staged, key, sealer);
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
    if (this.sealer) await this.sealInPlace(this.sealer);
    await this.handle.close();
    await this.staged.commit();
  }

  private async sealInPlace(sealer: Sealer): Promise<void> {
    const { size } = await this.handle.stat();
    const plain = Buffer.alloc(size);
    await this.handle.read(plain, 0, size, 0);
    const sealed = sealer.seal(plain, mapAd(this.key));
    await this.handle.write(sealed, 0, sealed.byteLength, 0);
  }

  async abort(): Promise<void> {
    this.window = null;
    await this.pending;
    await this.handle.close().catch(() => undefined);
    await this.staged.discard();
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
 * A map is written at its full length (slots x 32 bytes) before it is committed: any other
 * length is damage, never a disk that ends early in zeros. With `slots` the length is checked
 * before a byte is read, so a hostile entry cannot make it read gigabytes. An absent map
 * throws ENOENT, as reading it would.
 */
export async function readChunkMap(backend: Backend, key: string, slots?: number, sealer: Sealer | null = null): Promise<Buffer> {
  const name = objectName(backend, key);
  const info = await backend.stat(key);
  if (!info) throw Object.assign(new Error(`ENOENT: no such chunk map ${name}`), { code: 'ENOENT' });
  const size = info.size;
  const overhead = sealer ? SEAL_OVERHEAD : 0;
  const expected = slots === undefined ? size : slots * ID_BYTES + overhead;
  if (size !== expected) {
    const what = size < expected ? 'truncated' : 'too long';
    throw new DamagedDataError(`chunk map ${name} has ${size} bytes, ${expected} expected (${what})`, { object: name, bytes: size, expected, problem: `chunk map ${what} (${size} bytes, ${expected} expected)` });
  }
  const map = Buffer.allocUnsafe(size);
  const done = await backend.readInto(key, 0, map);
  if (done < size) throw new DamagedDataError(`chunk map ${name} ended at byte ${done} of ${size}`, { object: name, problem: 'chunk map truncated' });
  return sealer ? openMap(sealer, map, key, name) : map;
}

/** What a sealed map is bound to: its kind and its key (restore point and label). */
function mapAd(key: string): Buffer {
  return Buffer.from(`chunkvault map ${key}`);
}

function openMap(sealer: Sealer, sealed: Buffer, key: string, name: string): Buffer {
  try {
    const map = sealer.open(sealed, mapAd(key));
    if (map.byteLength % ID_BYTES !== 0) throw new DamagedDataError(`chunk map ${name} holds ${map.byteLength} bytes, not whole slots`, { object: name, problem: 'chunk map not whole slots' });
    return map;
  } catch (err) {
    if (!(err instanceof SealBrokenError)) throw err;
    throw new DamagedDataError(`chunk map ${name} does not open: it is damaged, was moved, or was sealed with another key`, { object: name, problem: 'sealed chunk map does not open' }, err);
  }
}
