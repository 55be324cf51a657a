/**
 * Pool worker: the CPU-heavy and I/O-heavy part of every pipeline. It reads sources and
 * packs itself, so chunk bytes cross a thread boundary at most once (transferred).
 */
import { openSync, readSync, writeSync, closeSync, constants } from 'node:fs';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { chunkId, isAllZero, loadHasher, ID_BYTES } from '../store/chunk-id.js';
import { dirname, join } from 'node:path';
import { MAX_CHUNK_SIZE } from '../store/format.js';
import { alignedBuffer, isBlockAligned, refusedDirect } from '../store/direct-io.js';
import { Codec, decodeRecord, decodeRecordHeader, encodeRecordHeader, packFileName, packReadProblem, recordBound, writeRecord, RECORD_HEADER_BYTES } from '../store/pack.js';
import {
  RecordOutcome,
  SlotOutcome,
  type BackupTask,
  type BackupResult,
  type BackupSlotResult,
  type SlotPlan,
  type ChunkRef,
  type ChunkProblem,
  type DecodedChunk,
  type DecodeResult,
  type DecodeTask,
  type RecompressedRecord,
  type RecompressResult,
  type RecompressTask,
  type PatchResult,
  type PatchTask,
  type RestoreResult,
  type RestoreSlot,
  type RestoreTask,
  type Task,
  type VerifyResult,
  type VerifyTask,
} from './tasks.js';

const ready = loadHasher();
/**
 * Per-thread buffers reused across tasks: chunk bytes, pack records read for restore/verify,
 * and page-aligned memory restored chunks are decoded into, so they can be written direct.
 */
const scratch: Record<'chunk' | 'record' | 'aligned', Buffer> = { chunk: Buffer.alloc(0), record: Buffer.alloc(0), aligned: Buffer.alloc(0) };

function scratchOf(size: number, kind: keyof typeof scratch = 'chunk'): Buffer {
  if (scratch[kind].byteLength < size) scratch[kind] = kind === 'aligned' ? alignedBuffer(size) : Buffer.allocUnsafeSlow(size);
  return scratch[kind].subarray(0, size);
}

function withFile<T>(path: string, flags: string, use: (fd: number) => T): T {
  const fd = openSync(path, flags);
  try {
    return use(fd);
  } finally {
    closeSync(fd);
  }
}

function readFully(fd: number, into: Buffer, position: number, what: string): number {
  let done = 0;
  while (done < into.byteLength) {
    const n = readSync(fd, into, done, into.byteLength - done, position + done);
    if (n === 0) throw Object.assign(new Error(`${what}: ended at byte ${position + done}, expected ${into.byteLength - done} more`), { code: 'ESHORT' });
    done += n;
  }
  return done;
}

/**
 * What Piscina.move does to a result so that it is transferred, not copied. Importing piscina
 * for it loads the whole pool (~14 ms per thread as the pool starts); this thread already runs
 * piscina's worker code, which loaded the module that marks results: this takes that one.
 */
const requireHere = createRequire(import.meta.url);
const piscinaCommon = join(dirname(requireHere.resolve('piscina')), 'common.js');
if (!(piscinaCommon in requireHere.cache)) throw new Error(`${piscinaCommon} is not the module piscina's worker loaded: results could not be transferred`);
const { markMovable } = requireHere(piscinaCommon) as { markMovable: (value: object) => void };

/** Hands `value` back with `buffers` transferred, not copied (piscina's public symbols say which). */
function transfer(value: object, buffers: ArrayBuffer[]): unknown {
  const movable = { [Symbol.for('Piscina.transferable')]: buffers, [Symbol.for('Piscina.valueOf')]: value };
  markMovable(movable);
  return movable;
}

/** Reads a slot's bytes into `data`; bytes no read covers are zero. */
function readSlot(fd: number, plan: SlotPlan, data: Buffer, path: string, stats: { bytesRead: number; reads: number; readMs: number }): void {
  const covered = plan.reads.reduce((sum, read) => sum + read.length, 0);
  if (covered < plan.length) data.fill(0);
  for (const read of plan.reads) {
    const started = performance.now();
    stats.bytesRead += readFully(fd, data.subarray(read.at, read.at + read.length), read.from, path);
    stats.readMs += performance.now() - started;
    stats.reads++;
  }
}

/** A buffer handed back with the task when it is large enough, else a new one: a fresh one costs a page fault per 4 KiB. */
function reusedOrNew(out: ArrayBuffer | null, size: number): Buffer {
  return out && out.byteLength >= size ? Buffer.from(out) : Buffer.from(new ArrayBuffer(size));
}

/**
 * Output: the slots' ids, then the records of chunks that need storing, written in place
 * (no per-chunk allocation) into one buffer that is transferred to the main thread.
 */
function backup(task: BackupTask): unknown {
  return withFile(task.path, 'r', (fd) => {
    const idBytes = task.slots.length * ID_BYTES;
    // A reused buffer holds the last task's ids: zero slots write none, so clear them.
    const out = reusedOrNew(task.out, idBytes + task.slots.reduce((sum, plan) => sum + recordBound(plan.length, task.compression), 0)).fill(0, 0, idBytes);
    const results: BackupSlotResult[] = [];
    const stats = { bytesRead: 0, reads: 0, readMs: 0 };
    let at = idBytes;
    task.slots.forEach((plan, i) => {
      const data = scratchOf(plan.length);
      readSlot(fd, plan, data, task.path, stats);
      const result: BackupSlotResult = { slot: plan.slot, outcome: SlotOutcome.Zero, recordOffset: 0, recordLength: 0 };
      results.push(result);
      if (isAllZero(data)) return;
      const id = chunkId(data);
      id.copy(out, i * ID_BYTES);
      const parentId = task.parentIds?.subarray(i * ID_BYTES, (i + 1) * ID_BYTES);
      if (parentId && id.equals(parentId)) {
        result.outcome = SlotOutcome.SameAsParent;
        return;
      }
      result.outcome = SlotOutcome.Record;
      result.recordOffset = at;
      result.recordLength = writeRecord(data, id, out, at, task.compression);
      at += result.recordLength;
    });
    const result: BackupResult = { buffer: out.buffer as ArrayBuffer, slots: results, ...stats };
    return transfer(result, [result.buffer]);
  });
}

/**
 * Reads, decodes and re-hashes one chunk: the record into this thread's scratch buffer, the
 * bytes into `into` when given (a raw chunk is copied there), else into scratch; both valid
 * until the next call.
 */
function readChunk(chunk: ChunkRef, packsDir: string, into?: Buffer): { data: Buffer; record: Buffer } | { problem: string } {
  try {
    const record = scratchOf(RECORD_HEADER_BYTES + chunk.storedLength, 'record');
    withFile(join(packsDir, packFileName(chunk.pack)), 'r', (fd) => readFully(fd, record, chunk.offset, `pack ${chunk.pack}`));
    const read = decodeRecord(record, Buffer.from(chunk.id), into ?? scratchOf(MAX_CHUNK_SIZE));
    if ('problem' in read) return read;
    if (!into || read.data.buffer === into.buffer) return { data: read.data, record };
    return { data: into.subarray(0, read.data.copy(into)), record };
  } catch (err) {
    return { problem: (err as NodeJS.ErrnoException).code === 'ESHORT' ? 'pack truncated' : packReadProblem(chunk.pack, err) };
  }
}

/**
 * The target opened twice: direct, for block-aligned writes (null where the filesystem
 * refuses it), and through the page cache, for the rest (a disk's partial last block).
 */
function withTarget<T>(path: string, use: (direct: number | null, buffered: number) => T): T {
  return withFile(path, 'r+', (buffered) => {
    let direct: number | null = null;
    try {
      direct = openSync(path, constants.O_RDWR | constants.O_DIRECT);
    } catch (err) {
      if (!refusedDirect(err)) throw err;
    }
    try {
      return use(direct, buffered);
    } finally {
      if (direct !== null) closeSync(direct);
    }
  });
}

function writeFully(fd: number, data: Buffer, position: number): number {
  let done = 0;
  while (done < data.byteLength) done += writeSync(fd, data, done, data.byteLength - done, position + done);
  return done;
}

/** Writes a slot's chunk (decoded and checked) or zeros: the bytes written, or why the chunk could not be. */
function writeSlot(slot: RestoreSlot, packsDir: string, direct: number | null, buffered: number): number | { problem: string } {
  const aligned = direct !== null && isBlockAligned(slot.diskOffset, slot.length);
  const into = aligned ? scratchOf(slot.length, 'aligned') : undefined;
  let data: Buffer;
  if (slot.chunk === null) {
    data = (into ?? scratchOf(slot.length)).fill(0);
  } else {
    const read = readChunk(slot.chunk, packsDir, into);
    if ('problem' in read) return read;
    data = read.data;
  }
  return writeFully(aligned ? direct! : buffered, data, slot.diskOffset);
}

function restore(task: RestoreTask, packsDir: string): RestoreResult {
  return withTarget(task.target, (direct, buffered) => {
    const problems: ChunkProblem[] = [];
    let bytesWritten = 0;
    task.slots.forEach((slot, index) => {
      const written = writeSlot(slot, packsDir, direct, buffered);
      if (typeof written === 'number') bytesWritten += written;
      else problems.push({ index, problem: written.problem });
    });
    return { bytesWritten, problems };
  });
}

/**
 * Whether the target already holds the slot: its bytes hashed as a backup hashes them, or
 * checked for zeros. Read through the page cache, not direct: the kernel's readahead then
 * reads the next slots while this one is hashed, where direct reads of a slot at a time
 * leave the disk idle during every hash.
 */
function holdsSlot(slot: RestoreSlot, target: string, buffered: number): boolean {
  const data = scratchOf(slot.length);
  readFully(buffered, data, slot.diskOffset, `target ${target}`);
  if (slot.chunk === null) return isAllZero(data);
  return chunkId(data).equals(slot.chunk.id);
}

function patch(task: PatchTask, packsDir: string): PatchResult {
  return withTarget(task.target, (direct, buffered) => {
    const result: PatchResult = { bytesRead: 0, bytesWritten: 0, slotsWritten: 0, holes: [], problems: [] };
    task.slots.forEach((slot, index) => {
      if (task.compare) {
        result.bytesRead += slot.length;
        if (holdsSlot(slot, task.target, buffered)) return;
      }
      if (slot.chunk === null && task.holes) {
        result.holes.push(index);
        return;
      }
      const written = writeSlot(slot, packsDir, direct, buffered);
      if (typeof written !== 'number') {
        result.problems.push({ index, problem: written.problem });
        return;
      }
      result.bytesWritten += written;
      result.slotsWritten++;
    });
    return result;
  });
}

function verify(task: VerifyTask, packsDir: string): VerifyResult {
  const problems: ChunkProblem[] = [];
  task.chunks.forEach((chunk, index) => {
    const read = readChunk(chunk, packsDir);
    if ('problem' in read) problems.push({ index, problem: read.problem });
  });
  return { problems };
}

function decode(task: DecodeTask, packsDir: string): unknown {
  const problems: ChunkProblem[] = [];
  const chunks: DecodedChunk[] = task.chunks.map((chunk, index) => {
    const read = readChunk(chunk, packsDir, reusedOrNew(task.outs[index], chunk.rawLength));
    if ('problem' in read) {
      problems.push({ index, problem: read.problem });
      return { buffer: new ArrayBuffer(0), length: 0 };
    }
    return { buffer: read.data.buffer as ArrayBuffer, length: read.data.byteLength };
  });
  const result: DecodeResult = { chunks, problems };
  return transfer(result, chunks.map((c) => c.buffer));
}

/**
 * A checked record rewritten at `at` of `out`: zstd where that saves at least `minGain` of its
 * payload, else as it was with the settled flag set, so no later gc tries it again.
 */
function recompressRecord(data: Buffer, record: Buffer, out: Buffer, at: number, task: RecompressTask): RecompressedRecord {
  const header = decodeRecordHeader(record)!;
  if (header.codec === Codec.Zstd || header.settled) return { outcome: RecordOutcome.Copied, recordOffset: at, recordLength: record.copy(out, at) };
  const length = writeRecord(data, header.id, out, at, task.compression);
  if (length - RECORD_HEADER_BYTES <= header.storedLength * (1 - task.minGain)) return { outcome: RecordOutcome.Recompressed, recordOffset: at, recordLength: length };
  record.copy(out, at);
  encodeRecordHeader({ ...header, settled: true }, out, at);
  return { outcome: RecordOutcome.Settled, recordOffset: at, recordLength: record.byteLength };
}

/** Output: the chunks' new records back to back in one buffer, transferred to the main thread. */
function recompress(task: RecompressTask, packsDir: string): unknown {
  const room = task.chunks.reduce((sum, c) => sum + Math.max(recordBound(c.rawLength, task.compression), RECORD_HEADER_BYTES + c.storedLength), 0);
  const out = reusedOrNew(task.out, room);
  const records: RecompressedRecord[] = [];
  const problems: ChunkProblem[] = [];
  let at = 0;
  task.chunks.forEach((chunk, index) => {
    const read = readChunk(chunk, packsDir);
    if ('problem' in read) {
      problems.push({ index, problem: read.problem });
      return;
    }
    const record = recompressRecord(read.data, read.record, out, at, task);
    records.push(record);
    at += record.recordLength;
  });
  const result: RecompressResult = { buffer: out.buffer as ArrayBuffer, records, problems };
  return transfer(result, [result.buffer]);
}

export default async function run(message: { task: Task; packsDir: string }): Promise<unknown> {
  await ready;
  const { task, packsDir } = message;
  switch (task.op) {
    case 'backup':
      return backup(task);
    case 'restore':
      return restore(task, packsDir);
    case 'patch':
      return patch(task, packsDir);
    case 'verify':
      return verify(task, packsDir);
    case 'decode':
      return decode(task, packsDir);
    case 'recompress':
      return recompress(task, packsDir);
    case 'load':
      return null;
  }
}
