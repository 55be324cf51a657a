/**
 * Reads of a disk by byte range, as the partition and filesystem probes see it: a function,
 * so the same parsers run on a restore point's disk (through the verified DiskReader), on a
 * partition of it, or on a plain buffer in a test.
 */
import type { DiskReader } from './reader.js';

/** Up to `length` bytes at `offset`: fewer at the end of the disk, none past it. */
export type ReadBytes = (offset: number, length: number) => Promise<Buffer>;

export function readerBytes(reader: DiskReader): ReadBytes {
  return async (offset, length) => {
    const into = Buffer.alloc(length);
    return into.subarray(0, await reader.read(into, length, offset));
  };
}

export function bufferBytes(data: Buffer): ReadBytes {
  return async (offset, length) => data.subarray(Math.min(offset, data.length), Math.min(offset + length, data.length));
}

/** Bytes [start, start + size) of `read` as a device of their own. */
export function windowBytes(read: ReadBytes, start: number, size: number): ReadBytes {
  return (offset, length) => read(start + offset, Math.max(0, Math.min(length, size - offset)));
}

/**
 * The first `bytes` read once and served from memory: probes ask for many small pieces near
 * the start, and each read of a DiskReader decodes its whole chunk.
 */
export function withHead(read: ReadBytes, bytes: number): ReadBytes {
  let head: Promise<Buffer> | null = null;
  return async (offset, length) => {
    if (offset + length > bytes) return read(offset, length);
    head ??= read(0, bytes);
    const data = await head;
    return data.subarray(Math.min(offset, data.length), Math.min(offset + length, data.length));
  };
}
