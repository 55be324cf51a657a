/**
 * Index segments: immutable objects `segments/<id>.seg` that say where chunks live (chunk id ->
 * pack, offset, lengths, codec). Each backup writes one for the chunks it added, gc one for the
 * records it moved; a host's LevelDB is a cache built from them (index-cache.ts), so a host
 * that has never seen a store can read it.
 *
 * A consolidated segment (gc's, repair's) holds every live entry and names the segments it
 * supersedes: those are ignored from then on and deleted by the next gc (index-cache.ts).
 *
 * Layout: magic "CVS1" | entries u32 | superseded u32 | superseded x id (28 ASCII bytes) |
 * entries x (id[32] | location[23], as index-keys.ts encodes it) | sha256 of everything before
 * it. A segment that fails any check is damage: never applied in part.
 */
import { createHash, randomBytes } from 'node:crypto';
import { ID_BYTES } from './chunk-id.js';
import { DamagedDataError } from './errors.js';
import { LOCATION_BYTES, decodeLocation, encodeLocation } from './index-keys.js';
import type { ChunkLocation } from './pack.js';

export const SEGMENTS_PREFIX = 'segments/';
const SUFFIX = '.seg';
const MAGIC = 0x43565331; // "CVS1"
const HEAD_BYTES = 12;
const SEGMENT_ID_BYTES = 28;
const ENTRY_BYTES = ID_BYTES + LOCATION_BYTES;
const SUM_BYTES = 32;
const ID_PATTERN = /^[0-9a-f]{28}$/;

export interface Segment {
  entries: SegmentEntry[];
  /** Segments whose entries this one holds where they are still live: set by consolidation. */
  supersedes: string[];
}

export type SegmentEntry = [Buffer, ChunkLocation];

/** Ids sort by creation time (12 hex digits of milliseconds), then 8 random bytes: writers on several hosts never collide. */
export function newSegmentId(now = Date.now()): string {
  return now.toString(16).padStart(12, '0').slice(-12) + randomBytes(8).toString('hex');
}

export function segmentKey(id: string): string {
  return SEGMENTS_PREFIX + id + SUFFIX;
}

/** The segment id of an object key, or null for anything else below segments/ (temp files, strays). */
export function segmentIdOf(key: string): string | null {
  if (!key.startsWith(SEGMENTS_PREFIX) || !key.endsWith(SUFFIX)) return null;
  const id = key.slice(SEGMENTS_PREFIX.length, -SUFFIX.length);
  return ID_PATTERN.test(id) ? id : null;
}

function sha256(bytes: Uint8Array): Buffer {
  return createHash('sha256').update(bytes).digest();
}

export function encodeSegment({ entries, supersedes }: Segment): Buffer {
  const entriesAt = HEAD_BYTES + supersedes.length * SEGMENT_ID_BYTES;
  const body = Buffer.allocUnsafe(entriesAt + entries.length * ENTRY_BYTES);
  body.writeUInt32BE(MAGIC, 0);
  body.writeUInt32BE(entries.length, 4);
  body.writeUInt32BE(supersedes.length, 8);
  supersedes.forEach((id, i) => body.write(id, HEAD_BYTES + i * SEGMENT_ID_BYTES, SEGMENT_ID_BYTES, 'latin1'));
  entries.forEach(([id, location], i) => {
    const at = entriesAt + i * ENTRY_BYTES;
    id.copy(body, at);
    encodeLocation(location).copy(body, at + ID_BYTES);
  });
  return Buffer.concat([body, sha256(body)]);
}

export function damagedSegment(key: string, problem: string): DamagedDataError {
  return new DamagedDataError(`index segment ${key} is damaged (${problem}); run 'chunkvault repair'`, { object: key, problem });
}

/** The segment stored under `key`; DamagedDataError when any check fails. */
export function decodeSegment(bytes: Buffer, key: string): Segment {
  if (bytes.byteLength < HEAD_BYTES + SUM_BYTES || bytes.readUInt32BE(0) !== MAGIC) throw damagedSegment(key, 'not a segment');
  const count = bytes.readUInt32BE(4);
  const entriesAt = HEAD_BYTES + bytes.readUInt32BE(8) * SEGMENT_ID_BYTES;
  const bodyBytes = entriesAt + count * ENTRY_BYTES;
  if (bytes.byteLength !== bodyBytes + SUM_BYTES) throw damagedSegment(key, `${bytes.byteLength} bytes for its ${count} entries`);
  if (!sha256(bytes.subarray(0, bodyBytes)).equals(bytes.subarray(bodyBytes))) throw damagedSegment(key, 'checksum');
  const supersedes: string[] = [];
  for (let at = HEAD_BYTES; at < entriesAt; at += SEGMENT_ID_BYTES) {
    const id = bytes.toString('latin1', at, at + SEGMENT_ID_BYTES);
    if (!ID_PATTERN.test(id)) throw damagedSegment(key, 'superseded segment id');
    supersedes.push(id);
  }
  const entries: SegmentEntry[] = [];
  for (let at = entriesAt; at < bodyBytes; at += ENTRY_BYTES) {
    entries.push([Buffer.from(bytes.subarray(at, at + ID_BYTES)), decodeLocation(bytes.subarray(at + ID_BYTES, at + ENTRY_BYTES))]);
  }
  return { entries, supersedes };
}
