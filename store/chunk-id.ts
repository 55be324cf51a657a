import { createRequire } from 'node:module';

export const ID_BYTES = 32;
/** Reserved id of an all-zero chunk: never stored, never read, a hole on restore. */
export const ZERO_ID = Buffer.alloc(ID_BYTES);

let hash: ((data: Uint8Array) => Buffer) | null = null;
let keyedHash: ((key: Buffer, data: Uint8Array) => Buffer) | null = null;

/**
 * Loads BLAKE3 for this thread; chunkId needs it first. Loaded on demand because the main
 * thread of most commands never hashes, and loading costs a tenth of a second at startup.
 * blake3 silently falls back to WebAssembly (~5x slower) when its native addon did not
 * build; a backup tool must not quietly run at a fifth of its speed, so say so.
 */
export async function loadHasher(): Promise<void> {
  if (hash) return;
  const require = createRequire(import.meta.url);
  const blake3 = require('blake3') as typeof import('blake3');
  await blake3.load();
  if (!Object.keys(require.cache).some((key) => key.endsWith('blake3.node'))) {
    process.emitWarning(`blake3 native backend is not loaded (${require.resolve('blake3')}); hashing runs on WebAssembly`);
  }
  hash = (data) => blake3.hash(data) as Buffer;
  keyedHash = (key, data) => blake3.keyedHash(key, data) as Buffer;
}

/** BLAKE3 of a chunk; keyed (an encrypted store's chunk-id key) so that an id says nothing about known plaintext. */
export function chunkId(data: Uint8Array, key: Buffer | null = null): Buffer {
  if (!hash || !keyedHash) throw new Error('chunkId before loadHasher()');
  return key ? keyedHash(key, data) : hash(data);
}

export function isZeroId(id: Uint8Array): boolean {
  return ZERO_ID.equals(id);
}

const ZEROS = Buffer.alloc(8 * 1024 * 1024);

/** Zero detection without hashing: a memcmp against a zero page, in 8 MiB steps. */
export function isAllZero(data: Uint8Array): boolean {
  for (let at = 0; at < data.byteLength; at += ZEROS.byteLength) {
    const part = data.subarray(at, Math.min(at + ZEROS.byteLength, data.byteLength));
    if (Buffer.compare(part, ZEROS.subarray(0, part.byteLength)) !== 0) return false;
  }
  return true;
}

export function idHex(id: Uint8Array): string {
  return Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString('hex');
}
