/** A bounded LRU of decoded chunks, by bytes: what `--cache` sizes. */
import type { ChunkCache } from '../engine/reader.js';

export const DEFAULT_CACHE_BYTES = 128 * 1024 * 1024;

export class LruChunkCache implements ChunkCache {
  // A Map iterates in insertion order: re-inserting on use keeps the least recent first.
  private readonly chunks = new Map<string, Buffer>();
  private bytes = 0;

  constructor(readonly capacity: number) {}

  get size(): number {
    return this.bytes;
  }

  get(hex: string): Buffer | undefined {
    const data = this.chunks.get(hex);
    if (data) {
      this.chunks.delete(hex);
      this.chunks.set(hex, data);
    }
    return data;
  }

  has(hex: string): boolean {
    return this.chunks.has(hex);
  }

  /** Returns the buffers let go of: the one replaced, and the least recently used beyond capacity. */
  set(hex: string, data: Buffer): Buffer[] {
    const released: Buffer[] = [];
    const old = this.chunks.get(hex);
    if (old) {
      this.bytes -= old.byteLength;
      this.chunks.delete(hex);
      if (old !== data) released.push(old);
    }
    this.chunks.set(hex, data);
    this.bytes += data.byteLength;
    return released.concat(this.evict());
  }

  private evict(): Buffer[] {
    const evicted: Buffer[] = [];
    for (const [hex, data] of this.chunks) {
      if (this.bytes <= this.capacity) break;
      this.chunks.delete(hex);
      this.bytes -= data.byteLength;
      evicted.push(data);
    }
    return evicted;
  }
}
