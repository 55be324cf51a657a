import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { InvalidInputError, NotAStoreError, UnsupportedFormatError } from './errors.js';
import { parseSize } from './size.js';

export const FORMAT_NAME = 'chunkvault';
export const FORMAT_VERSION = 1;
export const FORMAT_FILE = 'chunkvault.json';
export const MIN_CHUNK_SIZE = 64 * 1024;
export const MAX_CHUNK_SIZE = 8 * 1024 * 1024;
export const DEFAULT_CHUNK_SIZE = 1024 * 1024;

export interface StoreFormat {
  format: typeof FORMAT_NAME;
  version: number;
  chunkSize: number;
  created: string;
}

export function parseChunkSize(text: string): number {
  const size = parseSize(text, '--chunk-size');
  const powerOfTwo = (size & (size - 1)) === 0;
  if (!powerOfTwo || size < MIN_CHUNK_SIZE || size > MAX_CHUNK_SIZE) {
    throw new InvalidInputError(`--chunk-size: ${text} must be a power of two from 64K to 8M`, { value: text });
  }
  return size;
}

export function encodeFormat(chunkSize: number, created: Date): string {
  const format: StoreFormat = { format: FORMAT_NAME, version: FORMAT_VERSION, chunkSize, created: created.toISOString() };
  return JSON.stringify(format, null, 2) + '\n';
}

/** Refuses what is not a store, and stores written by an unknown or newer format. */
export function decodeFormat(text: string, dir: string): StoreFormat {
  let parsed: Partial<StoreFormat>;
  try {
    parsed = JSON.parse(text) as Partial<StoreFormat>;
  } catch {
    throw new NotAStoreError(`${dir}: ${FORMAT_FILE} is not valid JSON`, { store: dir });
  }
  if (parsed.format !== FORMAT_NAME) {
    throw new UnsupportedFormatError(`${dir}: unknown store format '${String(parsed.format)}'`, { store: dir });
  }
  if (typeof parsed.version !== 'number' || parsed.version > FORMAT_VERSION) {
    throw new UnsupportedFormatError(
      `${dir}: store format version ${String(parsed.version)} is newer than this chunkvault supports (${FORMAT_VERSION}); upgrade chunkvault`,
      { store: dir, version: parsed.version },
    );
  }
  if (typeof parsed.chunkSize !== 'number' || parsed.chunkSize < MIN_CHUNK_SIZE || parsed.chunkSize > MAX_CHUNK_SIZE) {
    throw new UnsupportedFormatError(`${dir}: ${FORMAT_FILE} has an invalid chunk size`, { store: dir });
  }
  return parsed as StoreFormat;
}

export async function readFormat(dir: string): Promise<StoreFormat> {
  let text: string;
  try {
    text = await fs.readFile(join(dir, FORMAT_FILE), 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new NotAStoreError(`${dir} is not a chunkvault store (no ${FORMAT_FILE}; create one with 'chunkvault init')`, { store: dir });
    }
    throw err;
  }
  return decodeFormat(text, dir);
}
