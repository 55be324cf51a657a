/** The store's compression settings: what backups use by default, what every gc recompresses. */
import type { Store } from '../store/store.js';
import { parseCompression, type Compression } from '../store/compression.js';
import type { RecompressPolicy } from '../store/format.js';
import { InvalidInputError } from './errors.js';
import { parseAge } from './age.js';

export const DEFAULT_RECOMPRESS_AGE = '7d';

export interface StoreSettings {
  compression: Compression;
  recompress: RecompressPolicy | null;
}

export interface SettingsChange {
  compression?: string;
  /** A codec to recompress with; false turns recompression off. */
  recompress?: string | false;
  olderThan?: string;
}

/** `zstd[:LEVEL]` for --recompress: recompressing to LZ4 or to nothing would only grow old data. */
export function parseRecompression(text: string, option: string): Compression {
  const compression = parseCompression(text, option);
  if (compression.codec !== 'zstd') throw new InvalidInputError(`${option}: recompresses with zstd[:LEVEL] only, not '${text}'`, { option, value: text });
  return compression;
}

function recompressPolicy(change: SettingsChange, current: RecompressPolicy | null): RecompressPolicy | null {
  if (change.recompress === false) {
    if (change.olderThan !== undefined) throw new InvalidInputError('--gc-older-than goes with --gc-recompress, not --no-gc-recompress', {});
    return null;
  }
  if (change.recompress === undefined) {
    if (change.olderThan === undefined) return current;
    if (!current) throw new InvalidInputError('--gc-older-than goes with --gc-recompress', {});
    return { ...current, olderThanSeconds: parseAge(change.olderThan, '--gc-older-than') };
  }
  return { compression: parseRecompression(change.recompress, '--gc-recompress'), olderThanSeconds: parseAge(change.olderThan ?? DEFAULT_RECOMPRESS_AGE, '--gc-older-than') };
}

/** Checks every change first, then writes them at once; no change: the settings as they are. */
export async function configureStore(store: Store, change: SettingsChange): Promise<StoreSettings> {
  const compression = change.compression === undefined ? store.compression : parseCompression(change.compression, '--compression');
  const recompress = recompressPolicy(change, store.format.recompress ?? null);
  if (change.compression !== undefined || change.recompress !== undefined || change.olderThan !== undefined) await store.configure({ compression, recompress });
  return { compression, recompress };
}
