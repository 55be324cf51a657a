/** Store-wide figures: logical bytes, stored bytes, dedup and compression ratios. */
import type { Store } from '../store/store.js';
import { RECORD_HEADER_BYTES } from '../store/pack.js';
import { ID_BYTES, isZeroId } from '../store/chunk-id.js';
import { readMapOrDamage } from './locate.js';
import { DamagedDataError, IndexIncompleteError } from './errors.js';
import { previewGc } from './gc.js';

export interface StoreStats {
  restorePoints: number;
  chunkSize: number;
  /** Sum of all disks' sizes over all restore points. */
  logicalBytes: number;
  /** Of those, bytes in non-zero chunks: what dedup works on. */
  dataBytes: number;
  uniqueChunks: number;
  /** Raw bytes of the unique chunks. */
  uniqueBytes: number;
  /** Bytes of the indexed records in packs (after compression, with headers). */
  storedBytes: number;
  packs: number;
  packBytes: number;
  dedupRatio: number;
  compressionRatio: number;
  /** Pack bytes `gc` (default settings) would free now; null when gc would stop (a damaged map, an incomplete index). */
  reclaimableBytes: number | null;
}

function dataBytesOf(map: Buffer, size: number, chunkSize: number): number {
  let bytes = 0;
  for (let slot = 0; slot * ID_BYTES < map.byteLength; slot++) {
    if (!isZeroId(map.subarray(slot * ID_BYTES, (slot + 1) * ID_BYTES))) bytes += Math.min(chunkSize, size - slot * chunkSize);
  }
  return bytes;
}

async function reclaimableBytes(store: Store): Promise<number | null> {
  try {
    return (await previewGc(store)).bytesFreed;
  } catch (err) {
    if (err instanceof DamagedDataError || err instanceof IndexIncompleteError) return null;
    throw err;
  }
}

export async function stats(store: Store): Promise<StoreStats> {
  const { points } = await store.catalog.list();
  let logicalBytes = 0;
  let dataBytes = 0;
  for (const point of points) {
    for (const disk of point.disks) {
      logicalBytes += disk.size;
      try {
        dataBytes += dataBytesOf(await readMapOrDamage(store, point, disk.label), disk.size, point.chunkSize);
      } catch (err) {
        if (!(err instanceof DamagedDataError)) throw err; // verify reports it; stats counts what it can read
      }
    }
  }
  let uniqueChunks = 0;
  let uniqueBytes = 0;
  let storedBytes = 0;
  const index = await store.openIndex(10_000);
  try {
    for await (const [, location] of index.entries()) {
      uniqueChunks++;
      uniqueBytes += location.rawLength;
      storedBytes += RECORD_HEADER_BYTES + location.storedLength;
    }
  } finally {
    await index.close();
  }
  const packs = await store.listPacks();
  return {
    restorePoints: points.length,
    chunkSize: store.chunkSize,
    logicalBytes,
    dataBytes,
    uniqueChunks,
    uniqueBytes,
    storedBytes,
    packs: packs.length,
    packBytes: packs.reduce((sum, p) => sum + p.size, 0),
    dedupRatio: uniqueBytes > 0 ? dataBytes / uniqueBytes : 1,
    compressionRatio: storedBytes > 0 ? uniqueBytes / storedBytes : 1,
    reclaimableBytes: await reclaimableBytes(store),
  };
}
