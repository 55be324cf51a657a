/** Store-wide figures: logical bytes, stored bytes, dedup and compression ratios. */
import type { Store } from '../store/store.js';
import { RECORD_HEADER_BYTES, type ChunkLocation } from '../store/pack.js';
import { CODEC_NAMES, type RecordCodecName } from '../store/compression.js';
import { ID_BYTES, isZeroId } from '../store/chunk-id.js';
import { readMapOrDamage } from './locate.js';
import { DamagedDataError, IndexIncompleteError } from './errors.js';
import { previewGc } from './gc.js';

/** The indexed chunks stored with one codec. */
export interface CodecStats {
  chunks: number;
  /** Their bytes before compression. */
  rawBytes: number;
  /** Their records in packs, headers included. */
  storedBytes: number;
  /** rawBytes over storedBytes; 1 with no chunks. */
  compressionRatio: number;
}

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
  /** The unique chunks by the codec their record has: raw (stored as it is, or compressing saved nothing), lz4, zstd. */
  codecs: Record<RecordCodecName, CodecStats>;
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

function ratio(rawBytes: number, storedBytes: number): number {
  return storedBytes > 0 ? rawBytes / storedBytes : 1;
}

type ByCodec = Record<RecordCodecName, CodecStats>;

function emptyByCodec(): ByCodec {
  return Object.fromEntries(Object.values(CODEC_NAMES).map((name) => [name, { chunks: 0, rawBytes: 0, storedBytes: 0, compressionRatio: 1 }])) as ByCodec;
}

function addChunk(codecs: ByCodec, location: ChunkLocation): void {
  const codec = codecs[CODEC_NAMES[location.codec]];
  codec.chunks++;
  codec.rawBytes += location.rawLength;
  codec.storedBytes += RECORD_HEADER_BYTES + location.storedLength;
  codec.compressionRatio = ratio(codec.rawBytes, codec.storedBytes);
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
  const codecs = emptyByCodec();
  const index = await store.openIndex(10_000);
  try {
    for await (const [, location] of index.entries()) addChunk(codecs, location);
  } finally {
    await index.close();
  }
  const all = Object.values(codecs);
  const sum = (field: 'chunks' | 'rawBytes' | 'storedBytes'): number => all.reduce((total, codec) => total + codec[field], 0);
  const [uniqueChunks, uniqueBytes, storedBytes] = [sum('chunks'), sum('rawBytes'), sum('storedBytes')];
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
    compressionRatio: ratio(uniqueBytes, storedBytes),
    codecs,
    reclaimableBytes: await reclaimableBytes(store),
  };
}
