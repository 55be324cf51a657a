/**
 * Pack files: append-only sequences of self-describing chunk records, so the index can
 * always be rebuilt by scanning packs. Writer and reader live here; nothing outside
 * store/ knows the byte layout.
 *
 * Record: magic "CVK1" | codec u8 | flags u8 | level u8 | 0 u8 | rawLen u32 | storedLen u32 | id[32] | payload
 * codec: 0 raw, 1 LZ4 block, 2 zstd frame; level: zstd's, else 0; flags bit 0, "settled":
 * recompression tried zstd on this chunk and kept it as it is (format version 2; version 1
 * wrote zeros in all three).
 * Packs written by format version 3 end in a record table (pack-table.ts) after their last record.
 * In an encrypted store (version 4) the payload is the compressed bytes sealed (crypto.ts),
 * bound to the chunk id, codec, level and raw length, and storedLen counts the seal's overhead.
 */
import { randomBytes } from 'node:crypto';
import { compressBlock, compressBound, decompressBlock } from './lz4.js';
import { MAX_ZSTD_LEVEL, MIN_ZSTD_LEVEL, zstdCompress, zstdCompressBound, zstdDecompress } from './zstd.js';
import { Codec, DEFAULT_COMPRESSION, type Compression } from './compression.js';
import { chunkId, ID_BYTES } from './chunk-id.js';
import { SEAL_OVERHEAD, type StoreKeys } from './crypto.js';
import { SealBrokenError, StoreReadError, absentObject, errnoOf, isAbsent, storeReadError } from './errors.js';
import { TRAILER_BYTES, decodeTrailer, encodeTable, encodeTableEntry, tableEntries, tableEntryBytes } from './pack-table.js';
import type { Backend, Upload } from './backend/backend.js';

export const RECORD_MAGIC = 0x43564b31; // "CVK1"
export const RECORD_HEADER_BYTES = 16 + ID_BYTES;
export const PACK_SUFFIX = '.pack';
export const DEFAULT_PACK_CAP = 256 * 1024 * 1024;

export { Codec } from './compression.js';

const SETTLED_FLAG = 1;

export interface RecordHeader {
  codec: Codec;
  /** zstd's level; 0 for the other codecs. */
  level: number;
  /** Recompression tried zstd on this chunk and kept it as it was: it is not tried again. */
  settled: boolean;
  rawLength: number;
  storedLength: number;
  id: Buffer;
}

/** Where a chunk lives: what the index maps a chunk id to. */
export interface ChunkLocation {
  pack: string;
  offset: number;
  storedLength: number;
  rawLength: number;
  codec: Codec;
  /** As the record's header says (RecordHeader.settled). */
  settled: boolean;
}

/** Where the record with `header` at `offset` of `pack` is, as the index holds it. */
export function locationOf(pack: string, offset: number, header: RecordHeader): ChunkLocation {
  return { pack, offset, storedLength: header.storedLength, rawLength: header.rawLength, codec: header.codec, settled: header.settled };
}

export function encodeRecordHeader(header: RecordHeader, into: Buffer, at = 0): void {
  into.writeUInt32BE(RECORD_MAGIC, at);
  into.writeUInt8(header.codec, at + 4);
  into.writeUInt8(header.settled ? SETTLED_FLAG : 0, at + 5);
  into.writeUInt8(header.level, at + 6);
  into.writeUInt8(0, at + 7);
  into.writeUInt32BE(header.rawLength, at + 8);
  into.writeUInt32BE(header.storedLength, at + 12);
  header.id.copy(into, at + 16);
}

/** Returns null where the bytes are not a record header (damage, or the end of a torn pack). */
export function decodeRecordHeader(bytes: Buffer, at = 0): RecordHeader | null {
  if (bytes.byteLength - at < RECORD_HEADER_BYTES || bytes.readUInt32BE(at) !== RECORD_MAGIC) return null;
  const codec = bytes.readUInt8(at + 4);
  const flags = bytes.readUInt8(at + 5);
  const level = bytes.readUInt8(at + 6);
  // Every byte is checked: a "header" found by searching damaged bytes for the magic must be one.
  if (codec !== Codec.Raw && codec !== Codec.Lz4 && codec !== Codec.Zstd) return null;
  if ((flags & ~SETTLED_FLAG) !== 0 || bytes.readUInt8(at + 7) !== 0) return null;
  if (codec === Codec.Zstd ? level < MIN_ZSTD_LEVEL || level > MAX_ZSTD_LEVEL : level !== 0) return null;
  return {
    codec,
    level,
    settled: flags === SETTLED_FLAG,
    rawLength: bytes.readUInt32BE(at + 8),
    storedLength: bytes.readUInt32BE(at + 12),
    id: Buffer.from(bytes.subarray(at + 16, at + RECORD_HEADER_BYTES)),
  };
}

/** Room for the record of a chunk of `rawLength` bytes, compressed with `compression` or not. */
export function recordBound(rawLength: number, compression: Compression = DEFAULT_COMPRESSION): number {
  const bound = compression.codec === 'zstd' ? zstdCompressBound(rawLength) : compression.codec === 'lz4' ? compressBound(rawLength) : rawLength;
  // Room for a seal too: a few bytes more than a plain record needs, never written there.
  return RECORD_HEADER_BYTES + Math.max(rawLength, bound) + SEAL_OVERHEAD;
}

/** What a sealed payload is bound to: the chunk and the header fields that say how to decode it (not the settled hint, which gc sets later). */
function recordAd(id: Buffer, codec: Codec, level: number, rawLength: number): Buffer {
  const fields = Buffer.alloc(6);
  fields.writeUInt8(codec, 0);
  fields.writeUInt8(level, 1);
  fields.writeUInt32BE(rawLength, 2);
  return Buffer.concat([Buffer.from('chunkvault record'), id, fields]);
}

/** Compresses `data` into `payload` (recordBound room): the codec, level and length stored, raw where compressing does not save space. */
function encodeInto(data: Buffer, payload: Buffer, compression: Compression): { codec: Codec; level: number; storedLength: number } {
  if (compression.codec !== 'none') {
    const zstd = compression.codec === 'zstd';
    const compressed = zstd ? zstdCompress(data, payload, compression.level) : compressBlock(data, payload.subarray(0, compressBound(data.byteLength)));
    if (compressed > 0 && compressed < data.byteLength) return { codec: zstd ? Codec.Zstd : Codec.Lz4, level: zstd ? compression.level : 0, storedLength: compressed };
  }
  return { codec: Codec.Raw, level: 0, storedLength: data.copy(payload) };
}

/**
 * Writes the whole record of `data` into `into` at `at` (which needs recordBound bytes),
 * compressed with `compression` when that saves space, raw otherwise. Returns the record's length.
 */
export function writeRecord(data: Buffer, id: Buffer, into: Buffer, at: number, compression: Compression = DEFAULT_COMPRESSION, keys: StoreKeys | null = null): number {
  const payload = into.subarray(at + RECORD_HEADER_BYTES, at + recordBound(data.byteLength, compression));
  const { codec, level, storedLength: encodedLength } = encodeInto(data, payload, compression);
  const storedLength = keys ? keys.sealer.seal(payload.subarray(0, encodedLength), recordAd(id, codec, level, data.byteLength)).copy(payload) : encodedLength;
  encodeRecordHeader({ codec, level, settled: false, rawLength: data.byteLength, storedLength, id }, into, at);
  return RECORD_HEADER_BYTES + storedLength;
}

/** The payload writeRecord would store, on its own. */
export function encodePayload(raw: Buffer, compression: Compression = DEFAULT_COMPRESSION): { codec: Codec; payload: Buffer } {
  const record = Buffer.allocUnsafe(recordBound(raw.byteLength, compression));
  const length = writeRecord(raw, Buffer.alloc(ID_BYTES), record, 0, compression);
  return { codec: record.readUInt8(4), payload: record.subarray(RECORD_HEADER_BYTES, length) };
}

/** 'seal': an encrypted record that does not open (damaged, moved, or another chunk's), damage as a hash mismatch is. */
export type RecordProblem = 'header' | 'seal' | 'decode' | 'length' | 'hash';

/**
 * Decodes one record read from a pack (into `into` when given, which needs rawLength bytes)
 * and re-hashes it against the id it must have. Returns the raw chunk, or why it cannot be trusted.
 */
export function decodeRecord(record: Buffer, expectedId: Buffer, into?: Buffer, keys: StoreKeys | null = null): { data: Buffer } | { problem: RecordProblem } {
  const header = decodeRecordHeader(record);
  if (!header || !header.id.equals(expectedId) || record.byteLength < RECORD_HEADER_BYTES + header.storedLength) {
    return { problem: 'header' };
  }
  const stored = record.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + header.storedLength);
  const payload = keys ? openPayload(stored, header, keys) : stored;
  if (!payload) return { problem: 'seal' };
  let data = payload;
  if (header.codec !== Codec.Raw) {
    data = (into ?? Buffer.allocUnsafe(header.rawLength)).subarray(0, header.rawLength);
    const decoded = header.codec === Codec.Lz4 ? decompressBlock(payload, data) : zstdDecompress(payload, data);
    if (decoded < 0) return { problem: 'decode' };
    if (decoded !== header.rawLength) return { problem: 'length' };
  }
  if (data.byteLength !== header.rawLength) return { problem: 'length' };
  if (!chunkId(data, keys?.chunkIdKey).equals(expectedId)) return { problem: 'hash' };
  return { data };
}

/** A sealed payload opened, or null where it does not open. */
function openPayload(stored: Buffer, header: RecordHeader, keys: StoreKeys): Buffer | null {
  try {
    return keys.sealer.open(stored, recordAd(header.id, header.codec, header.level, header.rawLength));
  } catch (err) {
    if (err instanceof SealBrokenError) return null;
    throw err;
  }
}

export function newPackName(): string {
  return randomBytes(8).toString('hex');
}

/** The key of a pack's object. */
export function packKey(pack: string): string {
  return `packs/${pack}${PACK_SUFFIX}`;
}

/** The pack a key of the `packs/` listing names, or null for what is not one (a temp file, a stray name). */
export function packOfKey(key: string): string | null {
  const match = /^packs\/([^/.][^/]*)\.pack$/.exec(key);
  return match ? match[1] : null;
}

/** A pack as messages name it: the store's location and the pack's key (the file's path, for a directory). */
function packWhere(backend: Backend, pack: string): string {
  return `${backend.location}/${packKey(pack)}`;
}

/** How far a search for the next record magic reads at a time. */
const MAGIC_SEARCH_BYTES = 1024 * 1024;
/** How much of a pack recoverPack holds at a time (a record larger than this is read whole). */
const RECOVER_WINDOW_BYTES = 4 * 1024 * 1024;
/** The tail read that finds a pack's table: the table of a full pack of 1 MiB chunks fits in it. */
const TAIL_READ_BYTES = 64 * 1024;
const MAGIC = Buffer.alloc(4);
MAGIC.writeUInt32BE(RECORD_MAGIC);
/** A record's entry in its pack's table: the record's header but its magic (pack-table.ts). */
export const TABLE_ENTRY_BYTES = tableEntryBytes(RECORD_HEADER_BYTES, MAGIC.byteLength);

/** The bytes a record of `storedLength` takes in a pack: itself and its table entry. */
export function recordFootprint(storedLength: number): number {
  return RECORD_HEADER_BYTES + storedLength + TABLE_ENTRY_BYTES;
}

/** What a pack takes beyond its records' footprints: the trailer of its table. */
export const PACK_OVERHEAD_BYTES = TRAILER_BYTES;

/** Bounded reads of the first `end` bytes of a pack: one window of it in memory at a time, read again where a read leaves it. */
class PackWindow {
  private bytes = Buffer.alloc(0);
  private start = 0;
  private length = 0;

  constructor(
    private readonly backend: Backend,
    private readonly key: string,
    readonly end: number,
    private readonly windowBytes: number,
  ) {}

  /** `length` bytes at `offset`, fewer where the pack (or `end`) ends first; valid until the next call. */
  async at(offset: number, length: number): Promise<Buffer> {
    const wanted = Math.max(0, Math.min(length, this.end - offset));
    if (offset < this.start || offset + wanted > this.start + this.length) {
      const room = Math.min(Math.max(this.windowBytes, wanted), this.end - offset);
      if (this.bytes.byteLength < room) this.bytes = Buffer.allocUnsafe(room);
      this.length = await this.backend.readInto(this.key, offset, this.bytes.subarray(0, room));
      this.start = offset;
    }
    return this.bytes.subarray(offset - this.start, Math.min(offset - this.start + wanted, this.length));
  }

  /** Offset of the next record magic at or after `from`, or `end` when there is none. */
  async nextMagic(from: number): Promise<number> {
    for (let at = from; at < this.end; at += MAGIC_SEARCH_BYTES - (MAGIC.byteLength - 1)) {
      const bytes = await this.at(at, MAGIC_SEARCH_BYTES);
      const found = bytes.indexOf(MAGIC);
      if (found >= 0) return at + found;
      if (bytes.byteLength < MAGIC_SEARCH_BYTES) break;
    }
    return this.end;
  }
}

/** The pack's size; an absent pack fails as absent (ENOENT), so callers name it as they name every read of it. */
async function packSize(backend: Backend, pack: string): Promise<number> {
  const info = await backend.stat(packKey(pack));
  if (!info) throw absentObject(packKey(pack));
  return info.size;
}

/** A pack's records as its table lists them, and where the table starts. */
interface PackTable {
  records: RecoveredRecord[];
  tableOffset: number;
}

/** The record of a table entry; null where the entry is not one (a header that does not decode, or out of order). */
function entryRecord(entry: { offset: number; headerPastMagic: Buffer }, after: number, tableOffset: number): RecoveredRecord | null {
  const header = decodeRecordHeader(Buffer.concat([MAGIC, entry.headerPastMagic]));
  if (!header || entry.offset < after || entry.offset + RECORD_HEADER_BYTES + header.storedLength > tableOffset) return null;
  return { offset: entry.offset, header };
}

/** The table a pack of `size` bytes ends with, read with one ranged read of its tail; null where it has none or it does not check out. */
export async function readPackTable(backend: Backend, pack: string, size: number): Promise<PackTable | null> {
  const key = packKey(pack);
  const tail = Buffer.allocUnsafe(Math.min(size, TAIL_READ_BYTES));
  const read = await backend.readInto(key, size - tail.byteLength, tail);
  const trailer = decodeTrailer(tail.subarray(0, read), size, TABLE_ENTRY_BYTES);
  if (!trailer) return null;
  const inTail = trailer.tableOffset >= size - tail.byteLength;
  const table = inTail ? tail.subarray(trailer.tableOffset - (size - tail.byteLength), read - TRAILER_BYTES) : Buffer.allocUnsafe(trailer.tableLength);
  if (!inTail && (await backend.readInto(key, trailer.tableOffset, table)) !== table.byteLength) return null;
  const entries = tableEntries(table, trailer, TABLE_ENTRY_BYTES);
  if (!entries) return null;
  const records: RecoveredRecord[] = [];
  for (const entry of entries) {
    const last = records.at(-1);
    const record = entryRecord(entry, last ? last.offset + RECORD_HEADER_BYTES + last.header.storedLength : 0, trailer.tableOffset);
    if (!record) return null;
    records.push(record);
  }
  return { records, tableOffset: trailer.tableOffset };
}

/**
 * The ids of every record in a pack, without reading payloads, for gc's proof that a pack
 * holds nothing live: from its table, or, where it has none (or a damaged one), by walking its
 * headers. Damage does not hide what follows it: the walk resumes at the next record magic,
 * as recoverPack does. Bytes with no valid header hold no readable record.
 */
export function recordIds(backend: Backend, pack: string): Promise<Buffer[]> {
  return onPack(packWhere(backend, pack), (async () => {
    const size = await packSize(backend, pack);
    const table = await readPackTable(backend, pack, size);
    if (table) return table.records.map((r) => r.header.id);
    const ids: Buffer[] = [];
    const reader = new PackWindow(backend, packKey(pack), size, RECORD_HEADER_BYTES);
    for (let offset = 0; offset < size; ) {
      const header = decodeRecordHeader(await reader.at(offset, RECORD_HEADER_BYTES));
      if (header && offset + RECORD_HEADER_BYTES + header.storedLength <= size) {
        ids.push(header.id);
        offset += RECORD_HEADER_BYTES + header.storedLength;
      } else {
        offset = await reader.nextMagic(offset + 1);
      }
    }
    return ids;
  })());
}

interface OpenPack {
  name: string;
  upload: Upload;
  /** Its table so far, an entry per record appended. */
  entries: Buffer[];
}

/** Ends a pack with its table and makes it durable; a pack that cannot be finished is given up (nothing references it yet). */
async function finishPack(pack: OpenPack): Promise<void> {
  try {
    await pack.upload.append([encodeTable(pack.entries, pack.upload.size)]);
    await pack.upload.finish();
  } catch (err) {
    await pack.upload.abort().catch(() => undefined);
    throw err;
  }
}

/**
 * Appends records to size-capped packs, each ending in its record table. Nothing written here
 * is referenced until `sync()` has made it durable and the caller commits index entries for it.
 *
 * Records are copied into staging memory and written behind the caller (the backend's upload),
 * so the caller's next batch is computed while the disk takes this one; a full pack is finished
 * behind the appends to the next one. The first failure fails every later call.
 */
export class PackWriter {
  private current: OpenPack | null = null;
  /** Full packs being finished; sync() waits for them. */
  private finishing: Promise<void>[] = [];
  private readonly written: string[] = [];
  private queue: Promise<unknown> = Promise.resolve();
  private failure: Error | null = null;

  constructor(
    private readonly backend: Backend,
    private readonly cap = DEFAULT_PACK_CAP,
    /** Runs before the first pack is started: the store upgrades its format there, as packs with tables need. */
    private readonly beforeFirstPack: () => Promise<void> = async () => undefined,
  ) {}

  /** Appends whole records (one per buffer, header and payload) and says where they start; the records may change once this returns. */
  async append(records: Buffer[]): Promise<{ pack: string; offset: number }> {
    const total = records.reduce((sum, r) => sum + r.byteLength, 0);
    return this.serially(async () => {
      if (!this.current || (this.current.upload.size > 0 && this.current.upload.size + total > this.cap)) await this.rollOver();
      const { name, upload, entries } = this.current!;
      const offset = upload.size;
      await upload.append(records);
      let at = offset;
      for (const record of records) {
        entries.push(encodeTableEntry(at, record.subarray(MAGIC.byteLength, RECORD_HEADER_BYTES)));
        at += record.byteLength;
      }
      return { pack: name, offset };
    });
  }

  get packsWritten(): readonly string[] {
    return this.written;
  }

  /** Runs `step` after every earlier one; once a step fails, every later one fails the same way. */
  private serially<T>(step: () => Promise<T>): Promise<T> {
    const run = this.queue.then(() => {
      if (this.failure) throw this.failure;
      return step();
    });
    this.queue = run.catch((err: Error) => {
      this.failure ??= err;
    });
    return run;
  }

  private async rollOver(): Promise<void> {
    if (this.current) {
      const finishing = finishPack(this.current);
      // Awaited by sync(); until then its failure must not count as unhandled.
      finishing.catch(() => undefined);
      this.finishing.push(finishing);
      this.current = null;
    }
    if (this.written.length === 0) await this.beforeFirstPack();
    const name = newPackName();
    this.written.push(name);
    this.current = { name, upload: await this.backend.upload(packKey(name)), entries: [] };
  }

  /** Finishes every pack written so far: durable, each with its table; the next append starts a new pack. */
  async sync(): Promise<void> {
    await this.serially(async () => {
      const finishing = [...this.finishing, ...(this.current ? [finishPack(this.current)] : [])];
      this.current = null;
      this.finishing = [];
      const failed = (await Promise.allSettled(finishing)).find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
    });
  }

  /** Gives up the pack being written once earlier calls end; durable only what `sync()` made so. */
  async close(): Promise<void> {
    await this.queue;
    await Promise.allSettled(this.finishing);
    const current = this.current;
    this.current = null;
    this.finishing = [];
    await current?.upload.abort().catch(() => undefined);
  }
}

function cannotRead(pack: string, err: unknown): string {
  return `pack ${pack}: cannot read (${errnoOf(err) ?? (err instanceof Error ? err.message : String(err))})`;
}

/** Why a chunk could not be read from `pack` (a name): only an absent pack is "pack missing". */
export function packReadProblem(pack: string, err: unknown): string {
  return isAbsent(err) ? 'pack missing' : cannotRead(pack, err);
}

/** A pack that exists, or may, but could not be read: the command stops; it never takes it for a short or empty pack. */
function packReadError(where: string, err: unknown): StoreReadError {
  return storeReadError(`pack ${where}`, err, where);
}

/** Runs a pack I/O call; its failure becomes a packReadError naming the pack. */
async function onPack<T>(where: string, io: Promise<T>): Promise<T> {
  try {
    return await io;
  } catch (err) {
    throw packReadError(where, err);
  }
}

/**
 * Cheap check without decoding: each record is in the pack, whole, with the expected id.
 * A pack that cannot be read, or a record that cannot, is that record's problem, named with
 * the errno; only an absent pack is "pack missing".
 */
export async function checkRecords(backend: Backend, pack: string, records: { offset: number; storedLength: number; id: Buffer }[]): Promise<(string | null)[]> {
  let size: number;
  try {
    size = await packSize(backend, pack);
  } catch (err) {
    return records.map(() => packReadProblem(pack, err));
  }
  const header = Buffer.alloc(RECORD_HEADER_BYTES);
  const problems: (string | null)[] = [];
  for (const record of records) {
    let bytesRead: number;
    try {
      bytesRead = await backend.readInto(packKey(pack), record.offset, header);
    } catch (err) {
      problems.push(packReadProblem(pack, err));
      continue;
    }
    const decoded = bytesRead === RECORD_HEADER_BYTES ? decodeRecordHeader(header) : null;
    const whole = record.offset + RECORD_HEADER_BYTES + record.storedLength <= size;
    problems.push(!decoded || !decoded.id.equals(record.id) || decoded.storedLength !== record.storedLength ? 'header' : whole ? null : 'length');
  }
  return problems;
}

const COPY_BATCH_BYTES = 8 * 1024 * 1024;

/**
 * Copies whole records (header and payload, byte for byte) from a pack into a writer, for
 * compaction. Records must be checked first (checkRecords); returns each one's new place.
 */
export async function copyRecords(backend: Backend, from: string, records: { offset: number; storedLength: number }[], writer: PackWriter): Promise<{ pack: string; offset: number }[]> {
  const where = packWhere(backend, from);
  const placed: { pack: string; offset: number }[] = [];
  let batch: Buffer[] = [];
  let batchBytes = 0;
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    const { pack, offset } = await writer.append(batch);
    let at = offset;
    for (const record of batch) {
      placed.push({ pack, offset: at });
      at += record.byteLength;
    }
    batch = [];
    batchBytes = 0;
  };
  for (const record of records) {
    const bytes = Buffer.allocUnsafe(RECORD_HEADER_BYTES + record.storedLength);
    const bytesRead = await onPack(where, backend.readInto(packKey(from), record.offset, bytes));
    if (bytesRead !== bytes.byteLength) {
      throw storeReadError(`pack ${where}`, Object.assign(new Error(`the record at ${record.offset} ends early`), { code: 'ESHORT' }), where);
    }
    batch.push(bytes);
    batchBytes += bytes.byteLength;
    if (batchBytes >= COPY_BATCH_BYTES) await flush();
  }
  await flush();
  return placed;
}

export interface RecoveredRecord {
  offset: number;
  header: RecordHeader;
}

export interface PackRecovery {
  records: RecoveredRecord[];
  /** Byte ranges that hold no valid record: damage, or a torn tail. */
  damaged: { offset: number; length: number }[];
  size: number;
}

/**
 * Every record of a pack that decodes and matches its id, for rebuilding the index, read a
 * window at a time. A bad record costs only itself: the scan resumes at the next record magic
 * after it. A valid table ends the records; a damaged one is damage, as any bytes that are no record.
 */
export function recoverPack(backend: Backend, pack: string, keys: StoreKeys | null = null): Promise<PackRecovery> {
  return onPack(packWhere(backend, pack), (async () => {
    const size = await packSize(backend, pack);
    const table = await readPackTable(backend, pack, size);
    const reader = new PackWindow(backend, packKey(pack), table?.tableOffset ?? size, RECOVER_WINDOW_BYTES);
    const records: RecoveredRecord[] = [];
    const damaged: { offset: number; length: number }[] = [];
    let offset = 0;
    let badFrom = -1;
    while (offset < reader.end) {
      const header = decodeRecordHeader(await reader.at(offset, RECORD_HEADER_BYTES));
      const end = header ? offset + RECORD_HEADER_BYTES + header.storedLength : -1;
      if (header && end <= reader.end && 'data' in decodeRecord(await reader.at(offset, end - offset), header.id, undefined, keys)) {
        if (badFrom >= 0) damaged.push({ offset: badFrom, length: offset - badFrom });
        badFrom = -1;
        records.push({ offset, header });
        offset = end;
        continue;
      }
      if (badFrom < 0) badFrom = offset;
      offset = await reader.nextMagic(offset + 1);
    }
    if (badFrom >= 0) damaged.push({ offset: badFrom, length: reader.end - badFrom });
    return { records, damaged, size };
  })());
}
