/**
 * Pack files: append-only sequences of self-describing chunk records, so the index can
 * always be rebuilt by scanning packs. Writer and reader live here; nothing outside
 * store/ knows the byte layout.
 *
 * Record: magic "CVK1" | codec u8 | flags u8 | level u8 | 0 u8 | rawLen u32 | storedLen u32 | id[32] | payload
 * codec: 0 raw, 1 LZ4 block, 2 zstd frame; level: zstd's, else 0; flags bit 0, "settled":
 * recompression tried zstd on this chunk and kept it as it is (format version 2; version 1
 * wrote zeros in all three).
 */
import { promises as fs } from 'node:fs';
import { basename, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { compressBlock, compressBound, decompressBlock } from './lz4.js';
import { MAX_ZSTD_LEVEL, MIN_ZSTD_LEVEL, zstdCompress, zstdCompressBound, zstdDecompress } from './zstd.js';
import { Codec, DEFAULT_COMPRESSION, type Compression } from './compression.js';
import { chunkId, ID_BYTES } from './chunk-id.js';
import { fsyncDir } from './durable.js';
import { AppendFile, alignedStages, type Stages } from './append-file.js';
import { StoreReadError, errnoOf, isAbsent, storeReadError } from './errors.js';

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
  return RECORD_HEADER_BYTES + Math.max(rawLength, bound);
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
export function writeRecord(data: Buffer, id: Buffer, into: Buffer, at: number, compression: Compression = DEFAULT_COMPRESSION): number {
  const payload = into.subarray(at + RECORD_HEADER_BYTES, at + recordBound(data.byteLength, compression));
  const { codec, level, storedLength } = encodeInto(data, payload, compression);
  encodeRecordHeader({ codec, level, settled: false, rawLength: data.byteLength, storedLength, id }, into, at);
  return RECORD_HEADER_BYTES + storedLength;
}

/** The payload writeRecord would store, on its own. */
export function encodePayload(raw: Buffer, compression: Compression = DEFAULT_COMPRESSION): { codec: Codec; payload: Buffer } {
  const record = Buffer.allocUnsafe(recordBound(raw.byteLength, compression));
  const length = writeRecord(raw, Buffer.alloc(ID_BYTES), record, 0, compression);
  return { codec: record.readUInt8(4), payload: record.subarray(RECORD_HEADER_BYTES, length) };
}

export type RecordProblem = 'header' | 'decode' | 'length' | 'hash';

/**
 * Decodes one record read from a pack (into `into` when given, which needs rawLength bytes)
 * and re-hashes it against the id it must have. Returns the raw chunk, or why it cannot be trusted.
 */
export function decodeRecord(record: Buffer, expectedId: Buffer, into?: Buffer): { data: Buffer } | { problem: RecordProblem } {
  const header = decodeRecordHeader(record);
  if (!header || !header.id.equals(expectedId) || record.byteLength < RECORD_HEADER_BYTES + header.storedLength) {
    return { problem: 'header' };
  }
  const payload = record.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + header.storedLength);
  let data = payload;
  if (header.codec !== Codec.Raw) {
    data = (into ?? Buffer.allocUnsafe(header.rawLength)).subarray(0, header.rawLength);
    const decoded = header.codec === Codec.Lz4 ? decompressBlock(payload, data) : zstdDecompress(payload, data);
    if (decoded < 0) return { problem: 'decode' };
    if (decoded !== header.rawLength) return { problem: 'length' };
  }
  if (data.byteLength !== header.rawLength) return { problem: 'length' };
  if (!chunkId(data).equals(expectedId)) return { problem: 'hash' };
  return { data };
}

export function newPackName(): string {
  return randomBytes(8).toString('hex');
}

export function packFileName(pack: string): string {
  return pack + PACK_SUFFIX;
}

/** How far a header walk reads ahead: records are found in windows of this many bytes. */
const HEADER_WINDOW_BYTES = 1024 * 1024;

/**
 * The ids of every record header in a pack, without reading payloads, for gc's proof that a
 * pack holds nothing live. Damage does not hide what follows it: the walk resumes at the next
 * record magic, as recoverPack does. Bytes with no valid header hold no readable record.
 */
export async function recordIds(path: string): Promise<Buffer[]> {
  const handle = await onPack(path, fs.open(path, 'r'));
  try {
    const { size } = await onPack(path, handle.stat());
    const ids: Buffer[] = [];
    const header = Buffer.alloc(RECORD_HEADER_BYTES);
    for (let offset = 0; offset < size; ) {
      const { bytesRead } = await onPack(path, handle.read(header, 0, RECORD_HEADER_BYTES, offset));
      const decoded = bytesRead === RECORD_HEADER_BYTES ? decodeRecordHeader(header) : null;
      if (decoded && offset + RECORD_HEADER_BYTES + decoded.storedLength <= size) {
        ids.push(decoded.id);
        offset += RECORD_HEADER_BYTES + decoded.storedLength;
      } else {
        offset = await onPack(path, nextMagic(handle, offset + 1, size));
      }
    }
    return ids;
  } finally {
    await handle.close();
  }
}

/** Offset of the next record magic at or after `from`, or `size` when there is none. */
async function nextMagic(handle: fs.FileHandle, from: number, size: number): Promise<number> {
  const magic = Buffer.alloc(4);
  magic.writeUInt32BE(RECORD_MAGIC);
  const window = Buffer.alloc(HEADER_WINDOW_BYTES + 3);
  for (let at = from; at < size; at += HEADER_WINDOW_BYTES) {
    const { bytesRead } = await handle.read(window, 0, window.byteLength, at);
    const found = window.subarray(0, bytesRead).indexOf(magic);
    if (found >= 0) return at + found;
  }
  return size;
}

/**
 * Appends records to size-capped pack files. Nothing written here is referenced until
 * `sync()` has made it durable and the caller commits index entries for it.
 *
 * Records are copied into staging memory and written behind the caller (store/append-file.ts),
 * so the caller's next batch is computed while the disk takes this one. The first failure
 * fails every later call.
 */
export class PackWriter {
  private current: { name: string; file: AppendFile } | null = null;
  /** Packs already full: their tails are written, their data not yet synced. */
  private readonly unsynced: AppendFile[] = [];
  private readonly written: string[] = [];
  private stages: Stages | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private failure: Error | null = null;

  constructor(
    private readonly dir: string,
    private readonly cap = DEFAULT_PACK_CAP,
  ) {}

  /** Appends whole records (headers and payloads) and says where they start; the records may change once this returns. */
  async append(records: Buffer[]): Promise<{ pack: string; offset: number }> {
    const total = records.reduce((sum, r) => sum + r.byteLength, 0);
    return this.serially(async () => {
      if (!this.current || (this.current.file.size > 0 && this.current.file.size + total > this.cap)) await this.rollOver();
      const { name, file } = this.current!;
      const offset = file.size;
      await file.append(records);
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
      await this.current.file.writeTail();
      this.unsynced.push(this.current.file);
    }
    const name = newPackName();
    this.written.push(name);
    this.current = { name, file: await AppendFile.create(join(this.dir, packFileName(name)), (this.stages ??= alignedStages())) };
  }

  /** Makes every pack written so far durable, and the directory that names them. */
  async sync(): Promise<void> {
    await this.serially(async () => {
      await this.current?.file.writeTail();
      for (const file of this.unsynced) await file.datasync();
      await this.current?.file.datasync();
      if (this.current) await fsyncDir(this.dir);
      for (const file of this.unsynced) await file.close();
      this.unsynced.length = 0;
    });
  }

  /** Closes every pack once earlier calls end; durable only what `sync()` made so. */
  async close(): Promise<void> {
    await this.queue;
    const files = [...this.unsynced, ...(this.current ? [this.current.file] : [])];
    this.current = null;
    this.unsynced.length = 0;
    for (const file of files) await file.close().catch(() => undefined);
  }
}

function cannotRead(pack: string, err: unknown): string {
  return `pack ${pack}: cannot read (${errnoOf(err) ?? (err instanceof Error ? err.message : String(err))})`;
}

/** Why a chunk could not be read from `pack` (a name): only an absent pack file is "pack missing". */
export function packReadProblem(pack: string, err: unknown): string {
  return isAbsent(err) ? 'pack missing' : cannotRead(pack, err);
}

/** A pack that exists, or may, but could not be read: the command stops; it never takes it for a short or empty pack. */
function packReadError(path: string, err: unknown): StoreReadError {
  return storeReadError(`pack ${path}`, err, path);
}

/** Runs a pack I/O call; its failure becomes a packReadError naming the pack. */
async function onPack<T>(path: string, io: Promise<T>): Promise<T> {
  try {
    return await io;
  } catch (err) {
    throw packReadError(path, err);
  }
}

/**
 * Cheap check without decoding: each record is in the pack, whole, with the expected id.
 * A pack that cannot be opened, or a record that cannot be read, is that record's problem,
 * named with the errno; only an absent pack is "pack missing".
 */
export async function checkRecords(path: string, records: { offset: number; storedLength: number; id: Buffer }[]): Promise<(string | null)[]> {
  const pack = basename(path, PACK_SUFFIX);
  let handle: fs.FileHandle;
  let size: number;
  try {
    handle = await fs.open(path, 'r');
  } catch (err) {
    return records.map(() => packReadProblem(pack, err));
  }
  try {
    try {
      size = (await handle.stat()).size;
    } catch (err) {
      return records.map(() => packReadProblem(pack, err));
    }
    const header = Buffer.alloc(RECORD_HEADER_BYTES);
    const problems: (string | null)[] = [];
    for (const record of records) {
      let bytesRead: number;
      try {
        ({ bytesRead } = await handle.read(header, 0, RECORD_HEADER_BYTES, record.offset));
      } catch (err) {
        problems.push(packReadProblem(pack, err));
        continue;
      }
      const decoded = bytesRead === RECORD_HEADER_BYTES ? decodeRecordHeader(header) : null;
      const whole = record.offset + RECORD_HEADER_BYTES + record.storedLength <= size;
      problems.push(!decoded || !decoded.id.equals(record.id) || decoded.storedLength !== record.storedLength ? 'header' : whole ? null : 'length');
    }
    return problems;
  } finally {
    await handle.close();
  }
}

const COPY_BATCH_BYTES = 8 * 1024 * 1024;

/**
 * Copies whole records (header and payload, byte for byte) from a pack into a writer, for
 * compaction. Records must be checked first (checkRecords); returns each one's new place.
 */
export async function copyRecords(fromPath: string, records: { offset: number; storedLength: number }[], writer: PackWriter): Promise<{ pack: string; offset: number }[]> {
  const handle = await onPack(fromPath, fs.open(fromPath, 'r'));
  const placed: { pack: string; offset: number }[] = [];
  try {
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
      const { bytesRead } = await onPack(fromPath, handle.read(bytes, 0, bytes.byteLength, record.offset));
      if (bytesRead !== bytes.byteLength) {
        throw storeReadError(`pack ${fromPath}`, Object.assign(new Error(`the record at ${record.offset} ends early`), { code: 'ESHORT' }), fromPath);
      }
      batch.push(bytes);
      batchBytes += bytes.byteLength;
      if (batchBytes >= COPY_BATCH_BYTES) await flush();
    }
    await flush();
    return placed;
  } finally {
    await handle.close();
  }
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
 * Every record of a pack that decodes and matches its id, for rebuilding the index. A bad
 * record costs only itself: the scan resumes at the next record magic after it.
 */
export async function recoverPack(path: string): Promise<PackRecovery> {
  const bytes = await onPack(path, fs.readFile(path));
  const magic = Buffer.alloc(4);
  magic.writeUInt32BE(RECORD_MAGIC);
  const records: RecoveredRecord[] = [];
  const damaged: { offset: number; length: number }[] = [];
  let offset = 0;
  let badFrom = -1;
  while (offset < bytes.byteLength) {
    const header = decodeRecordHeader(bytes, offset);
    const end = header ? offset + RECORD_HEADER_BYTES + header.storedLength : -1;
    if (header && end <= bytes.byteLength && 'data' in decodeRecord(bytes.subarray(offset, end), header.id)) {
      if (badFrom >= 0) damaged.push({ offset: badFrom, length: offset - badFrom });
      badFrom = -1;
      records.push({ offset, header });
      offset = end;
      continue;
    }
    if (badFrom < 0) badFrom = offset;
    const next = bytes.indexOf(magic, offset + 1);
    offset = next < 0 ? bytes.byteLength : next;
  }
  if (badFrom >= 0) damaged.push({ offset: badFrom, length: bytes.byteLength - badFrom });
  return { records, damaged, size: bytes.byteLength };
}
