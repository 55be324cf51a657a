/**
 * Pool worker: the CPU-heavy and I/O-heavy part of every pipeline. It reads sources and
 * packs itself, so chunk bytes cross a thread boundary at most once (transferred).
 */
import { openSync, readSync, writeSync, closeSync, constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { chunkId, isAllZero, loadHasher, ID_BYTES } from '../store/chunk-id.js';
import { dirname, join } from 'node:path';
import { MAX_CHUNK_SIZE } from '../store/format.js';
import { alignedBuffer, isBlockAligned, refusedDirect } from '../store/direct-io.js';
import { Codec, decodeRecord, decodeRecordHeader, encodeRecordHeader, packKey, packReadProblem, recordBound, writeRecord, RECORD_HEADER_BYTES } from '../store/pack.js';
import { openBackend } from '../store/backend/open.js';
import { storeKeys, type StoreKeys } from '../store/crypto.js';
import { statsSince, type Backend, type BackendSpec, type BackendStats } from '../store/backend/backend.js';
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
  type KeySpec,
  type Task,
  type VerifyResult,
  type VerifyTask,
} from './tasks.js';

const ready = loadHasher();
/**
 * Per-thread buffers reused across tasks: chunk bytes, pack records read for restore/verify,
 * page-aligned memory restored chunks are decoded into, so they can be written direct, and
 * the parent's chunk a partly changed slot takes its unchanged bytes from.
 */
const scratch: Record<'chunk' | 'record' | 'aligned' | 'parent', Buffer> = { chunk: Buffer.alloc(0), record: Buffer.alloc(0), aligned: Buffer.alloc(0), parent: Buffer.alloc(0) };

function scratchOf(size: number, kind: keyof typeof scratch = 'chunk'): Buffer {
  if (scratch[kind].byteLength < size) scratch[kind] = kind === 'aligned' ? alignedBuffer(size) : Buffer.allocUnsafeSlow(size);
  return scratch[kind].subarray(0, size);
}

async function withFile<T>(path: string, flags: string, use: (fd: number) => T | Promise<T>): Promise<T> {
  const fd = openSync(path, flags);
  try {
    return await use(fd);
  } finally {
    closeSync(fd);
  }
}

/** What this thread's backend had counted when it last reported. */
let reported: BackendStats | null = null;

/** This thread's backend, opened on its first task: every task of a pool reads the same store. */
let opened: { spec: string; backend: Backend } | null = null;

function backendOf(spec: BackendSpec): Backend {
  const key = JSON.stringify(spec);
  if (opened?.spec !== key) {
    opened = { spec: key, backend: openBackend(spec) };
    reported = null;
  }
  return opened.backend;
}

/**
 * The keys of the store this thread's tasks read and write (null for a plain store), derived
 * once from the master key the pool sends: like the backend, the same for every task of a pool,
 * and piscina runs one task per thread at a time.
 */
let keys: StoreKeys | null = null;

function useKeys(spec: KeySpec | null): void {
  if (spec === null) keys = null;
  else if (!keys || !keys.master.equals(spec.master) || keys.cipher !== spec.cipher) keys = storeKeys(spec.cipher, Buffer.from(spec.master));
}

/** A file that ended before the bytes a read needed: a short read is never taken for zeros. */
function endedEarly(what: string, at: number, missing: number): Error {
  return Object.assign(new Error(`${what}: ended at byte ${at}, expected ${missing} more`), { code: 'ESHORT' });
}

function readFully(fd: number, into: Buffer, position: number, what: string): number {
  let done = 0;
  while (done < into.byteLength) {
    const n = readSync(fd, into, done, into.byteLength - done, position + done);
    if (n === 0) throw endedEarly(what, position + done, into.byteLength - done);
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

const TRANSFERABLE = Symbol.for('Piscina.transferable');
const VALUE_OF = Symbol.for('Piscina.valueOf');

/** Hands `value` back with `buffers` transferred, not copied (piscina's public symbols say which). */
function transfer(value: object, buffers: ArrayBuffer[]): unknown {
  const movable = { [TRANSFERABLE]: buffers, [VALUE_OF]: value };
  markMovable(movable);
  return movable;
}

interface SlotStats {
  bytesRead: number;
  bytesReadFromStore: number;
  reads: number;
  readMs: number;
}

/** Fills `data` with a slot's bytes: its reads from the source, its kept bytes from `parent` (null: zeros), zeros elsewhere. */
function fillSlot(fd: number, plan: SlotPlan, parent: Buffer | null, data: Buffer, path: string, stats: SlotStats): void {
  const covered = plan.reads.reduce((sum, read) => sum + read.length, 0) + (parent ? plan.keep!.reduce((sum, keep) => sum + keep.length, 0) : 0);
  if (covered < plan.length) data.fill(0);
  if (parent) for (const keep of plan.keep!) parent.copy(data, keep.at, keep.at, keep.at + keep.length);
  for (const read of plan.reads) {
    const started = performance.now();
    stats.bytesRead += readFully(fd, data.subarray(read.at, read.at + read.length), read.from, path);
    stats.readMs += performance.now() - started;
    stats.reads++;
  }
}

/** The parent's bytes of a partly changed slot, decoded and checked against its id; null for a zero chunk. */
async function parentBytes(plan: SlotPlan, chunk: ChunkRef | null, backend: Backend, stats: SlotStats): Promise<{ data: Buffer | null } | { problem: string }> {
  if (chunk === null) return { data: null };
  const read = await readChunk(chunk, backend, scratchOf(chunk.rawLength, 'parent'));
  if ('problem' in read) return read;
  stats.bytesReadFromStore += read.record.byteLength;
  // The parent's disk holds the whole slot (plan.ts changedSlotPlan): another length is a map that lies.
  if (read.data.byteLength !== plan.length) return { problem: `the parent's chunk has ${read.data.byteLength} bytes, the slot ${plan.length}` };
  return read;
}

/** A buffer handed back with the task when it is large enough, else a new one: a fresh one costs a page fault per 4 KiB. */
function reusedOrNew(out: ArrayBuffer | null, size: number): Buffer {
  return out && out.byteLength >= size ? Buffer.from(out) : Buffer.from(new ArrayBuffer(size));
}

/**
 * Output: the slots' ids, then the records of chunks that need storing, written in place
 * (no per-chunk allocation) into one buffer that is transferred to the main thread.
 */
function backup(task: BackupTask, backend: Backend): Promise<unknown> {
  return withFile(task.path, 'r', async (fd) => {
    const idBytes = task.slots.length * ID_BYTES;
    // A reused buffer holds the last task's ids: zero slots write none, so clear them.
    const out = reusedOrNew(task.out, idBytes + task.slots.reduce((sum, plan) => sum + recordBound(plan.length, task.compression), 0)).fill(0, 0, idBytes);
    const results: BackupSlotResult[] = [];
    const problems: ChunkProblem[] = [];
    const stats: SlotStats = { bytesRead: 0, bytesReadFromStore: 0, reads: 0, readMs: 0 };
    let at = idBytes;
    for (const [i, plan] of task.slots.entries()) {
      const result: BackupSlotResult = { slot: plan.slot, outcome: SlotOutcome.Zero, recordOffset: 0, recordLength: 0 };
      results.push(result);
      const parent = plan.keep ? await parentBytes(plan, task.parentChunks![i], backend, stats) : { data: null };
      if ('problem' in parent) {
        problems.push({ index: i, problem: parent.problem });
        continue;
      }
      const data = scratchOf(plan.length);
      fillSlot(fd, plan, parent.data, data, task.path, stats);
      if (isAllZero(data)) continue;
      const id = chunkId(data, keys?.chunkIdKey);
      id.copy(out, i * ID_BYTES);
      const parentId = task.parentIds?.subarray(i * ID_BYTES, (i + 1) * ID_BYTES);
      if (parentId && id.equals(parentId)) {
        result.outcome = SlotOutcome.SameAsParent;
        continue;
      }
      result.outcome = SlotOutcome.Record;
      result.recordOffset = at;
      result.recordLength = writeRecord(data, id, out, at, task.compression, keys);
      at += result.recordLength;
    }
    const result: BackupResult = { buffer: out.buffer as ArrayBuffer, slots: results, problems, ...stats };
    return transfer(result, [result.buffer]);
  });
}

/**
 * Reads, decodes and re-hashes one chunk: the record into this thread's scratch buffer, the
 * bytes into `into` when given (a raw chunk is copied there), else into scratch; both valid
 * until the next call.
 */
async function readChunk(chunk: ChunkRef, backend: Backend, into?: Buffer): Promise<{ data: Buffer; record: Buffer } | { problem: string }> {
  try {
    const record = scratchOf(RECORD_HEADER_BYTES + chunk.storedLength, 'record');
    if ((await backend.readInto(packKey(chunk.pack), chunk.offset, record)) !== record.byteLength) return { problem: 'pack truncated' };
    const read = decodeRecord(record, Buffer.from(chunk.id), into ?? scratchOf(MAX_CHUNK_SIZE), keys);
    if ('problem' in read) return read;
    if (!into || read.data.buffer === into.buffer) return { data: read.data, record };
    return { data: into.subarray(0, read.data.copy(into)), record };
  } catch (err) {
    return { problem: packReadProblem(chunk.pack, err) };
  }
}

/**
 * The target opened twice: direct, for block-aligned writes (null where the filesystem
 * refuses it), and through the page cache, for the rest (a disk's partial last block).
 */
function withTarget<T>(path: string, use: (direct: number | null, buffered: number) => Promise<T>): Promise<T> {
  return withFile(path, 'r+', async (buffered) => {
    let direct: number | null = null;
    try {
      direct = openSync(path, constants.O_RDWR | constants.O_DIRECT);
    } catch (err) {
      if (!refusedDirect(err)) throw err;
    }
    try {
      return await use(direct, buffered);
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
async function writeSlot(slot: RestoreSlot, backend: Backend, direct: number | null, buffered: number): Promise<number | { problem: string }> {
  const aligned = direct !== null && isBlockAligned(slot.diskOffset, slot.length);
  const into = aligned ? scratchOf(slot.length, 'aligned') : undefined;
  let data: Buffer;
  if (slot.chunk === null) {
    data = (into ?? scratchOf(slot.length)).fill(0);
  } else {
    const read = await readChunk(slot.chunk, backend, into);
    if ('problem' in read) return read;
    data = read.data;
  }
  return writeFully(aligned ? direct! : buffered, data, slot.diskOffset);
}

function restore(task: RestoreTask, backend: Backend): Promise<RestoreResult> {
  return withTarget(task.target, async (direct, buffered) => {
    const problems: ChunkProblem[] = [];
    let bytesWritten = 0;
    for (const [index, slot] of task.slots.entries()) {
      const written = await writeSlot(slot, backend, direct, buffered);
      if (typeof written === 'number') bytesWritten += written;
      else problems.push({ index, problem: written.problem });
    }
    return { bytesWritten, problems };
  });
}

/**
 * Bytes of the target a comparing worker has in flight: with a read or two always queued, the
 * disk works while a slot is hashed, the hashing is never the disk's idle time.
 */
const COMPARE_AHEAD_BYTES = 4 * 1024 * 1024;
/** Page-aligned buffers a comparing worker reads slots into, reused across tasks. */
let compareBuffers: Buffer[] = [];

function compareBuffersOf(count: number, size: number): Buffer[] {
  if (compareBuffers.length < count || compareBuffers[0].byteLength < size) compareBuffers = Array.from({ length: count }, () => alignedBuffer(size));
  return compareBuffers.slice(0, count).map((buffer) => buffer.subarray(0, size));
}

async function readFullyAt(handle: FileHandle, into: Buffer, position: number, what: string): Promise<Buffer> {
  let done = 0;
  while (done < into.byteLength) {
    const { bytesRead } = await handle.read(into, done, into.byteLength - done, position + done);
    if (bytesRead === 0) throw endedEarly(what, position + done, into.byteLength - done);
    done += bytesRead;
  }
  return into;
}

/** The target opened for reading: direct where the filesystem allows it (null where not), and through the page cache. */
async function openForCompare(path: string): Promise<{ direct: FileHandle | null; buffered: FileHandle }> {
  const buffered = await open(path, 'r');
  try {
    return { direct: await open(path, constants.O_RDONLY | constants.O_DIRECT), buffered };
  } catch (err) {
    if (refusedDirect(err)) return { direct: null, buffered };
    await buffered.close();
    throw err;
  }
}

/** Whether a slot's bytes are its chunk's: hashed as a backup hashes them, or checked for zeros. */
function holdsChunk(slot: RestoreSlot, data: Buffer): boolean {
  if (slot.chunk === null) return isAllZero(data);
  return chunkId(data, keys?.chunkIdKey).equals(slot.chunk.id);
}

/**
 * Which slots the target already holds, every slot's bytes read and checked. Read direct where
 * aligned, a few slots ahead of the one hashed: the page cache a buffered read fills is memory
 * a ballooned VM's host faults in page by page (store/direct-io.ts), which made a cold compare
 * half as fast as `cat`; and one direct read at a time would leave the disk idle during every hash.
 */
async function slotsHeld(slots: RestoreSlot[], target: string): Promise<boolean[]> {
  const longest = Math.max(...slots.map((slot) => slot.length));
  const ahead = Math.max(1, Math.floor(COMPARE_AHEAD_BYTES / longest));
  const buffers = compareBuffersOf(ahead + 1, longest);
  const { direct, buffered } = await openForCompare(target);
  const reads: Promise<Buffer>[] = [];
  const readSlot = (index: number): void => {
    const { diskOffset, length } = slots[index];
    const handle = direct !== null && isBlockAligned(diskOffset, length) ? direct : buffered;
    const read = readFullyAt(handle, buffers[index % buffers.length].subarray(0, length), diskOffset, `target ${target}`);
    read.catch(() => undefined); // awaited in order below; a later read may fail first
    reads.push(read);
  };
  try {
    for (let index = 0; index < Math.min(ahead, slots.length); index++) readSlot(index);
    const held: boolean[] = [];
    for (let index = 0; index < slots.length; index++) {
      const data = await reads[index];
      // The buffer of slot index + ahead is the one slot index - 1 was hashed in, done with.
      if (index + ahead < slots.length) readSlot(index + ahead);
      held.push(holdsChunk(slots[index], data));
    }
    return held;
  } finally {
    // No read may land in a buffer, or on a descriptor, that is reused or closed.
    await Promise.allSettled(reads);
    await Promise.all([direct?.close(), buffered.close()]);
  }
}

async function patch(task: PatchTask, backend: Backend): Promise<PatchResult> {
  const held = task.compare ? await slotsHeld(task.slots, task.target) : null;
  return withTarget(task.target, async (direct, buffered) => {
    const result: PatchResult = { bytesRead: 0, bytesWritten: 0, slotsWritten: 0, holes: [], problems: [] };
    for (const [index, slot] of task.slots.entries()) {
      if (held) {
        result.bytesRead += slot.length;
        if (held[index]) continue;
      }
      if (slot.chunk === null && task.holes) {
        result.holes.push(index);
        continue;
      }
      const written = await writeSlot(slot, backend, direct, buffered);
      if (typeof written !== 'number') {
        result.problems.push({ index, problem: written.problem });
        continue;
      }
      result.bytesWritten += written;
      result.slotsWritten++;
    }
    return result;
  });
}

async function verify(task: VerifyTask, backend: Backend): Promise<VerifyResult> {
  const problems: ChunkProblem[] = [];
  for (const [index, chunk] of task.chunks.entries()) {
    const read = await readChunk(chunk, backend);
    if ('problem' in read) problems.push({ index, problem: read.problem });
  }
  return { problems };
}

async function decode(task: DecodeTask, backend: Backend): Promise<unknown> {
  const problems: ChunkProblem[] = [];
  const chunks: DecodedChunk[] = [];
  for (const [index, chunk] of task.chunks.entries()) {
    const read = await readChunk(chunk, backend, reusedOrNew(task.outs[index], chunk.rawLength));
    if ('problem' in read) {
      problems.push({ index, problem: read.problem });
      chunks.push({ buffer: new ArrayBuffer(0), length: 0 });
    } else {
      chunks.push({ buffer: read.data.buffer as ArrayBuffer, length: read.data.byteLength });
    }
  }
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
  const length = writeRecord(data, header.id, out, at, task.compression, keys);
  if (length - RECORD_HEADER_BYTES <= header.storedLength * (1 - task.minGain)) return { outcome: RecordOutcome.Recompressed, recordOffset: at, recordLength: length };
  record.copy(out, at);
  encodeRecordHeader({ ...header, settled: true }, out, at);
  return { outcome: RecordOutcome.Settled, recordOffset: at, recordLength: record.byteLength };
}

/** Output: the chunks' new records back to back in one buffer, transferred to the main thread. */
async function recompress(task: RecompressTask, backend: Backend): Promise<unknown> {
  const room = task.chunks.reduce((sum, c) => sum + Math.max(recordBound(c.rawLength, task.compression), RECORD_HEADER_BYTES + c.storedLength), 0);
  const out = reusedOrNew(task.out, room);
  const records: RecompressedRecord[] = [];
  const problems: ChunkProblem[] = [];
  let at = 0;
  for (const [index, chunk] of task.chunks.entries()) {
    const read = await readChunk(chunk, backend);
    if ('problem' in read) {
      problems.push({ index, problem: read.problem });
      continue;
    }
    const record = recompressRecord(read.data, read.record, out, at, task);
    records.push(record);
    at += record.recordLength;
  }
  const result: RecompressResult = { buffer: out.buffer as ArrayBuffer, records, problems };
  return transfer(result, [result.buffer]);
}

/** The task's result with what the backend counted since the last report: the parent adds it to its own counters. */
function withStats(result: unknown, backend: Backend): unknown {
  const now = backend.stats?.() ?? null;
  const stats = now === null ? null : reported === null ? now : statsSince(now, reported);
  reported = now;
  const movable = result as Record<symbol, unknown> | null;
  if (movable === null || typeof movable !== 'object' || !(VALUE_OF in movable)) return { result, stats };
  return transfer({ result: movable[VALUE_OF], stats }, movable[TRANSFERABLE] as ArrayBuffer[]);
}

export default async function run(message: { task: Task; backend: BackendSpec; keys: KeySpec | null }): Promise<unknown> {
  await ready;
  const backend = backendOf(message.backend);
  useKeys(message.keys);
  return withStats(await runTask(message.task, backend), backend);
}

function runTask(task: Task, backend: Backend): Promise<unknown> | unknown {
  switch (task.op) {
    case 'backup':
      return backup(task, backend);
    case 'restore':
      return restore(task, backend);
    case 'patch':
      return patch(task, backend);
    case 'verify':
      return verify(task, backend);
    case 'decode':
      return decode(task, backend);
    case 'recompress':
      return recompress(task, backend);
    case 'load':
      return null;
  }
}
