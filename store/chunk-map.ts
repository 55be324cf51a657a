/**
 * Chunk maps: one flat file per (restore point, disk), 32 bytes per chunk slot; slot i
 * covers disk bytes [i*chunkSize, (i+1)*chunkSize). Unwritten slots read as the zero id,
 * so a map of a sparse disk is itself sparse.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { ID_BYTES } from './chunk-id.js';
import { fsyncDir } from './durable.js';

export const MAP_SUFFIX = '.map';

export function slotCount(diskSize: number, chunkSize: number): number {
  return Math.ceil(diskSize / chunkSize);
}

export function slotId(map: Buffer, slot: number): Buffer {
  return map.subarray(slot * ID_BYTES, (slot + 1) * ID_BYTES);
}

/**
 * Writes slot ids in any order; `commit()` makes the map durable under its final name.
 * Writes are queued, not awaited one by one: a CBT backup writes one small run of parent ids
 * between every two tasks, and waiting on each kept the workers from being fed.
 */
export class ChunkMapWriter {
  private pending: Promise<void> = Promise.resolve();
  private failure: Error | null = null;

  private constructor(
    private readonly handle: fs.FileHandle,
    private readonly tmpPath: string,
    private readonly finalPath: string,
  ) {}

  static async create(dir: string, label: string, slots: number): Promise<ChunkMapWriter> {
    await fs.mkdir(dir, { recursive: true });
    const finalPath = join(dir, label + MAP_SUFFIX);
    const tmpPath = join(dir, `.${label}${MAP_SUFFIX}.tmp`);
    const handle = await fs.open(tmpPath, 'w');
    await handle.truncate(slots * ID_BYTES);
    return new ChunkMapWriter(handle, tmpPath, finalPath);
  }

  /** ids holds consecutive slots starting at firstSlot, and must not change until `commit()`. */
  write(firstSlot: number, ids: Buffer): void {
    if (this.failure) throw this.failure;
    const write = this.handle.write(ids, 0, ids.byteLength, firstSlot * ID_BYTES).then(
      () => undefined,
      (err: Error) => {
        this.failure ??= err;
      },
    );
    this.pending = Promise.all([this.pending, write]).then(() => undefined);
  }

  async commit(): Promise<void> {
    await this.pending;
    if (this.failure) throw this.failure;
    await this.handle.sync();
    await this.handle.close();
    await fs.rename(this.tmpPath, this.finalPath);
    await fsyncDir(join(this.finalPath, '..'));
  }

  async abort(): Promise<void> {
    await this.pending;
    await this.handle.close().catch(() => undefined);
    await fs.rm(this.tmpPath, { force: true });
  }
}

export async function readChunkMap(path: string): Promise<Buffer> {
  return fs.readFile(path);
}
