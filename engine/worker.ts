/**
 * Pool worker: the CPU-heavy and I/O-heavy part of every pipeline. It reads sources and
 * packs itself, so chunk bytes cross a thread boundary at most once (transferred).
 */
import { openSync, readSync, writeSync, closeSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Piscina } from 'piscina';
import { chunkId, isAllZero, loadHasher, ID_BYTES } from '../store/chunk-id.js';
import { join } from 'node:path';
import { encodePayload, encodeRecordHeader, decodeRecord, packFileName, RECORD_HEADER_BYTES } from '../store/pack.js';
import {
  SlotOutcome,
  type BackupTask,
  type BackupResult,
  type BackupSlotResult,
  type ChunkRef,
  type ChunkProblem,
  type DecodeResult,
  type DecodeTask,
  type RestoreResult,
  type RestoreTask,
  type Task,
  type VerifyResult,
  type VerifyTask,
} from './tasks.js';

const ready = loadHasher();
let scratch = Buffer.alloc(0);

function scratchOf(size: number): Buffer {
  if (scratch.byteLength < size) scratch = Buffer.alloc(size);
  return scratch.subarray(0, size);
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

/** Hands `value` back with its buffer transferred, not copied. */
function transfer<T extends { buffer: ArrayBuffer }>(value: T): unknown {
  return Piscina.move({ [Piscina.transferableSymbol]: [value.buffer], [Piscina.valueSymbol]: value } as never);
}

function backup(task: BackupTask): unknown {
  return withFile(task.path, 'r', (fd) => {
    const ids = Buffer.alloc(task.slots.length * ID_BYTES);
    const records: Buffer[] = [];
    const results: BackupSlotResult[] = [];
    let bytesRead = 0;
    let reads = 0;
    let readMs = 0;
    let recordBytes = 0;
    task.slots.forEach((plan, i) => {
      const data = scratchOf(plan.length);
      data.fill(0);
      for (const read of plan.reads) {
        const started = performance.now();
        bytesRead += readFully(fd, data.subarray(read.at, read.at + read.length), read.from, task.path);
        readMs += performance.now() - started;
        reads++;
      }
      const result: BackupSlotResult = { slot: plan.slot, outcome: SlotOutcome.Zero, recordOffset: 0, recordLength: 0 };
      results.push(result);
      if (isAllZero(data)) return;
      const id = chunkId(data);
      id.copy(ids, i * ID_BYTES);
      const parentId = task.parentIds?.subarray(i * ID_BYTES, (i + 1) * ID_BYTES);
      if (parentId && id.equals(parentId)) {
        result.outcome = SlotOutcome.SameAsParent;
        return;
      }
      const { codec, payload } = encodePayload(data);
      const header = Buffer.allocUnsafe(RECORD_HEADER_BYTES);
      encodeRecordHeader({ codec, rawLength: data.byteLength, storedLength: payload.byteLength, id }, header);
      result.outcome = SlotOutcome.Record;
      result.recordOffset = ids.byteLength + recordBytes;
      result.recordLength = RECORD_HEADER_BYTES + payload.byteLength;
      // A raw payload is a view of scratch, which the next slot overwrites: copy it now.
      records.push(header, codec === 0 ? Buffer.from(payload) : payload);
      recordBytes += result.recordLength;
    });
    const out = Buffer.from(new ArrayBuffer(ids.byteLength + recordBytes));
    ids.copy(out, 0);
    let at = ids.byteLength;
    for (const part of records) at += part.copy(out, at);
    const result: BackupResult = { buffer: out.buffer as ArrayBuffer, slots: results, bytesRead, reads, readMs };
    return transfer(result);
  });
}

function readChunk(chunk: ChunkRef, packsDir: string): { data: Buffer } | { problem: string } {
  try {
    const record = Buffer.allocUnsafe(RECORD_HEADER_BYTES + chunk.storedLength);
    withFile(join(packsDir, packFileName(chunk.pack)), 'r', (fd) => readFully(fd, record, chunk.offset, `pack ${chunk.pack}`));
    return decodeRecord(record, Buffer.from(chunk.id));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { problem: code === 'ENOENT' ? 'pack missing' : code === 'ESHORT' ? 'pack truncated' : (err as Error).message };
  }
}

function restore(task: RestoreTask, packsDir: string): RestoreResult {
  return withFile(task.target, 'r+', (fd) => {
    const problems: ChunkProblem[] = [];
    let bytesWritten = 0;
    task.slots.forEach((slot, index) => {
      let data: Buffer;
      if (slot.chunk === null) {
        data = scratchOf(slot.length).fill(0);
      } else {
        const read = readChunk(slot.chunk, packsDir);
        if ('problem' in read) {
          problems.push({ index, problem: read.problem });
          return;
        }
        data = read.data;
      }
      let done = 0;
      while (done < data.byteLength) done += writeSync(fd, data, done, data.byteLength - done, slot.diskOffset + done);
      bytesWritten += done;
    });
    return { bytesWritten, problems };
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
  const parts = task.chunks.map((chunk, index) => {
    const read = readChunk(chunk, packsDir);
    if ('problem' in read) {
      problems.push({ index, problem: read.problem });
      return Buffer.alloc(0);
    }
    return read.data;
  });
  const out = Buffer.concat(parts);
  const buffer = out.byteOffset === 0 && out.byteLength === out.buffer.byteLength ? (out.buffer as ArrayBuffer) : (Buffer.from(out).buffer as ArrayBuffer);
  const result: DecodeResult = { buffer, lengths: parts.map((p) => p.byteLength), problems };
  return transfer(result);
}

export default async function run(message: { task: Task; packsDir: string }): Promise<unknown> {
  await ready;
  const { task, packsDir } = message;
  switch (task.op) {
    case 'backup':
      return backup(task);
    case 'restore':
      return restore(task, packsDir);
    case 'verify':
      return verify(task, packsDir);
    case 'decode':
      return decode(task, packsDir);
  }
}
