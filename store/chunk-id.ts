import { createRequire } from 'node:module';
import * as blake3 from 'blake3';

export const ID_BYTES = 32;
/** Reserved id of an all-zero chunk: never stored, never read, a hole on restore. */
export const ZERO_ID = Buffer.alloc(ID_BYTES);

let loaded = false;

/**
 * blake3 silently falls back to WebAssembly (~5x slower) when its native addon did not
 * build; a backup tool must not quietly run at a fifth of its speed, so say so.
 */
export async function loadHasher(): Promise<void> {
  if (loaded) return;
  await blake3.load();
  const require = createRequire(import.meta.url);
  const entry = require.resolve('blake3');
  const nativeLoaded = Object.keys(require.cache).some((key) => key.endsWith('blake3.node'));
  if (!nativeLoaded) {
    process.emitWarning(`blake3 native backend is not loaded (${entry}); hashing runs on WebAssembly`);
  }
  loaded = true;
}

export function chunkId(data: Uint8Array): Buffer {
  return blake3.hash(data) as Buffer;
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
