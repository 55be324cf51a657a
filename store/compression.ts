/** How records are compressed: per backup (--compression), per store (its default), per gc (--recompress). */
import { InvalidInputError } from './errors.js';
import { DEFAULT_ZSTD_LEVEL, MAX_ZSTD_LEVEL, MIN_ZSTD_LEVEL } from './zstd.js';

export enum Codec {
  Raw = 0,
  Lz4 = 1,
  Zstd = 2,
}

export type CodecName = 'none' | 'lz4' | 'zstd';

export interface Compression {
  codec: CodecName;
  /** zstd's level (1-19); 0 for the others. */
  level: number;
}

export const DEFAULT_COMPRESSION: Compression = { codec: 'lz4', level: 0 };

export const CODEC_NAMES = { [Codec.Raw]: 'raw', [Codec.Lz4]: 'lz4', [Codec.Zstd]: 'zstd' } as const satisfies Record<Codec, string>;

/** What a record holds, by name: 'raw' also where compressing saved nothing. */
export type RecordCodecName = (typeof CODEC_NAMES)[Codec];

/** `lz4`, `none`, `zstd` or `zstd:LEVEL`; anything else is refused naming the option. */
export function parseCompression(text: string, option: string): Compression {
  const m = /^(lz4|none|zstd)(?::(\d{1,2}))?$/.exec(text.trim());
  if (!m || (m[2] !== undefined && m[1] !== 'zstd')) {
    throw new InvalidInputError(`${option}: '${text}' is not a compression (use lz4, none, zstd or zstd:LEVEL with LEVEL ${MIN_ZSTD_LEVEL}-${MAX_ZSTD_LEVEL})`, { option, value: text });
  }
  const codec = m[1] as CodecName;
  if (codec !== 'zstd') return { codec, level: 0 };
  const level = m[2] === undefined ? DEFAULT_ZSTD_LEVEL : Number(m[2]);
  if (level < MIN_ZSTD_LEVEL || level > MAX_ZSTD_LEVEL) {
    throw new InvalidInputError(`${option}: zstd level ${level} is out of range (${MIN_ZSTD_LEVEL}-${MAX_ZSTD_LEVEL})`, { option, value: text });
  }
  return { codec, level };
}

export function formatCompression(compression: Compression): string {
  return compression.codec === 'zstd' ? `zstd:${compression.level}` : compression.codec;
}

/** A stored value (the store's config), trusted only once checked. */
export function isCompression(value: unknown): value is Compression {
  const c = value as Compression | null;
  if (typeof c !== 'object' || c === null) return false;
  if (c.codec === 'zstd') return Number.isInteger(c.level) && c.level >= MIN_ZSTD_LEVEL && c.level <= MAX_ZSTD_LEVEL;
  return (c.codec === 'lz4' || c.codec === 'none') && c.level === 0;
}
