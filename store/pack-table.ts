/**
 * The record table a pack ends with (format version 3), so that one ranged read of a pack's
 * tail lists it without reading its records (an object store charges per request, and a
 * header walk is a request per record).
 *
 * Table: one entry per record, in pack order: offset u64 | the record's header without its magic (44 bytes)
 * Trailer, the pack's last 32 bytes: table offset u64 | table length u32 | SHA-256 of the table, first 16 bytes | magic "CVT1"
 *
 * The entries carry no record magic, so a walk of a pack whose table is damaged finds no
 * records in it. Packs written before version 3 have no table: readers walk their headers.
 */
import { createHash } from 'node:crypto';

export const TABLE_MAGIC = 0x43565431; // "CVT1"
export const TRAILER_BYTES = 32;
const OFFSET_BYTES = 8;
const CHECKSUM_BYTES = 16;

/** A table entry holds a record's header from byte `from` on: all of it but the magic. */
export function tableEntryBytes(headerBytes: number, from: number): number {
  return OFFSET_BYTES + headerBytes - from;
}

function checksum(table: Buffer): Buffer {
  return createHash('sha256').update(table).digest().subarray(0, CHECKSUM_BYTES);
}

/** The entry of the record whose header is `header` (past its magic), at `offset` of the pack. */
export function encodeTableEntry(offset: number, headerPastMagic: Buffer): Buffer {
  const entry = Buffer.allocUnsafe(OFFSET_BYTES + headerPastMagic.byteLength);
  entry.writeBigUInt64BE(BigInt(offset));
  headerPastMagic.copy(entry, OFFSET_BYTES);
  return entry;
}

/** The bytes a pack ends with once its last record, at `tableOffset`, is written: the entries and the trailer. */
export function encodeTable(entries: Buffer[], tableOffset: number): Buffer {
  const table = Buffer.concat(entries);
  const trailer = Buffer.alloc(TRAILER_BYTES);
  trailer.writeBigUInt64BE(BigInt(tableOffset), 0);
  trailer.writeUInt32BE(table.byteLength, 8);
  checksum(table).copy(trailer, 12);
  trailer.writeUInt32BE(TABLE_MAGIC, 28);
  return Buffer.concat([table, trailer]);
}

export interface Trailer {
  tableOffset: number;
  tableLength: number;
  checksum: Buffer;
}

/** The trailer at the end of `tail` (the last bytes of a pack of `size` bytes), or null where there is none that fits the pack. */
export function decodeTrailer(tail: Buffer, size: number, entryBytes: number): Trailer | null {
  if (tail.byteLength < TRAILER_BYTES) return null;
  const trailer = tail.subarray(tail.byteLength - TRAILER_BYTES);
  if (trailer.readUInt32BE(28) !== TABLE_MAGIC) return null;
  const tableOffset = Number(trailer.readBigUInt64BE(0));
  const tableLength = trailer.readUInt32BE(8);
  if (tableLength % entryBytes !== 0 || tableOffset + tableLength + TRAILER_BYTES !== size) return null;
  return { tableOffset, tableLength, checksum: Buffer.from(trailer.subarray(12, 12 + CHECKSUM_BYTES)) };
}

/** The entries of a table whose checksum matches its trailer's, each as (offset, header past its magic); null where it does not. */
export function tableEntries(table: Buffer, trailer: Trailer, entryBytes: number): { offset: number; headerPastMagic: Buffer }[] | null {
  if (table.byteLength !== trailer.tableLength || !checksum(table).equals(trailer.checksum)) return null;
  const entries = [];
  for (let at = 0; at < table.byteLength; at += entryBytes) {
    entries.push({ offset: Number(table.readBigUInt64BE(at)), headerPastMagic: table.subarray(at + OFFSET_BYTES, at + entryBytes) });
  }
  return entries;
}
