/**
 * Zstandard through the C library (npm `zstd-napi`, built from its bundled source at install,
 * as the LZ4 addon is). Chosen over @mongodb-js/zstd, whose API is asynchronous and returns a
 * new buffer per call: a worker compresses in place, into the task's output buffer, as the
 * LZ4 path does. The native binding is loaded directly, on first use, and a failed build fails
 * loudly, never falls back.
 */
import { createRequire } from 'node:module';

interface ZstdContext {
  compress(dst: Uint8Array, src: Uint8Array, level: number): number;
}
interface ZstdDecompressor {
  decompress(dst: Uint8Array, src: Uint8Array): number;
}
interface ZstdBinding {
  CCtx: new () => ZstdContext;
  DCtx: new () => ZstdDecompressor;
  compressBound(length: number): number;
}

export const MIN_ZSTD_LEVEL = 1;
export const MAX_ZSTD_LEVEL = 19;
export const DEFAULT_ZSTD_LEVEL = 3;

let binding: ZstdBinding | null = null;
/** One context per thread, reused: creating one per chunk costs more than compressing small chunks. */
let compressor: ZstdContext | null = null;
let decompressor: ZstdDecompressor | null = null;

function zstd(): ZstdBinding {
  return (binding ??= createRequire(import.meta.url)('zstd-napi/binding') as ZstdBinding);
}

export function zstdCompressBound(length: number): number {
  return zstd().compressBound(length);
}

/** Compressed length in `output`, which needs zstdCompressBound bytes. */
export function zstdCompress(input: Buffer, output: Buffer, level: number): number {
  return (compressor ??= new (zstd().CCtx)()).compress(output, input, level);
}

/** Decoded length, or -1 where the input is not a valid frame or does not fit `output`. */
export function zstdDecompress(input: Buffer, output: Buffer): number {
  try {
    return (decompressor ??= new (zstd().DCtx)()).decompress(output, input);
  } catch {
    return -1;
  }
}
