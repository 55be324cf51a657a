/** The only place that knows the key and value layout of the LevelDB index. */
import { ID_BYTES } from './chunk-id.js';
import { Codec, type ChunkLocation } from './pack.js';

const CHUNK_PREFIX = 0x63; // 'c'
const PACK_NAME_BYTES = 8;
/** Bytes of an encoded location: what an index value and a segment entry hold besides the id. */
export const LOCATION_BYTES = PACK_NAME_BYTES + 6 + 4 + 4 + 1;
/** The codec byte's high bit: the record is settled (see pack.ts). */
const SETTLED_BIT = 0x80;

export function chunkKey(id: Buffer): Buffer {
  const key = Buffer.allocUnsafe(1 + ID_BYTES);
  key[0] = CHUNK_PREFIX;
  id.copy(key, 1);
  return key;
}

export function idFromChunkKey(key: Buffer): Buffer {
  return Buffer.from(key.subarray(1, 1 + ID_BYTES));
}

/** Bounds for iterating every chunk key. */
export const CHUNK_RANGE = { gte: Buffer.from([CHUNK_PREFIX]), lt: Buffer.from([CHUNK_PREFIX + 1]) };

/**
 * Marks of the index segments this cache has seen: key 's' + segment id; the value says whether
 * its entries were applied or it is superseded by a consolidated segment that was.
 */
const SEGMENT_PREFIX = 0x73; // 's'

export function segmentMarkKey(segment: string): Buffer {
  return Buffer.concat([Buffer.from([SEGMENT_PREFIX]), Buffer.from(segment, 'latin1')]);
}

export function segmentFromMarkKey(key: Buffer): string {
  return key.toString('latin1', 1);
}

export type SegmentMark = 'applied' | 'superseded';
const MARK_BYTE: Record<SegmentMark, number> = { applied: 0, superseded: 1 };

export function encodeSegmentMark(mark: SegmentMark): Buffer {
  return Buffer.from([MARK_BYTE[mark]]);
}

export function decodeSegmentMark(value: Buffer): SegmentMark {
  return value.byteLength === 1 && value[0] === MARK_BYTE.superseded ? 'superseded' : 'applied';
}

export const SEGMENT_MARK_RANGE = { gte: Buffer.from([SEGMENT_PREFIX]), lt: Buffer.from([SEGMENT_PREFIX + 1]) };

export function encodeLocation(location: ChunkLocation): Buffer {
  const value = Buffer.allocUnsafe(LOCATION_BYTES);
  value.write(location.pack, 0, PACK_NAME_BYTES, 'hex');
  value.writeUIntBE(location.offset, 8, 6);
  value.writeUInt32BE(location.storedLength, 14);
  value.writeUInt32BE(location.rawLength, 18);
  value.writeUInt8(location.codec | (location.settled ? SETTLED_BIT : 0), 22);
  return value;
}

export function decodeLocation(value: Buffer): ChunkLocation {
  return {
    pack: value.toString('hex', 0, PACK_NAME_BYTES),
    offset: value.readUIntBE(8, 6),
    storedLength: value.readUInt32BE(14),
    rawLength: value.readUInt32BE(18),
    codec: (value.readUInt8(22) & ~SETTLED_BIT) as Codec,
    settled: (value.readUInt8(22) & SETTLED_BIT) !== 0,
  };
}
