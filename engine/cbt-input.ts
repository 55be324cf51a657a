/**
 * What every changed-block format parser (cbt-*.ts) hands back to cbt.ts, and the checked
 * reading of numbers in the text formats; JSON numbers go through json-input.ts.
 */
import { InvalidInputError } from './errors.js';
import type { Range } from './plan.js';

/** A range with where the file says it (`line 12`, `[3]`), for messages. */
export interface Located extends Range {
  where: string;
}

export interface Parsed {
  /** Bytes to read again. */
  changed: Located[];
  /** Bytes the source says were discarded: zeros, never read. */
  discarded: Located[];
  warnings: string[];
  /** Maps of a whole disk (dirty bitmaps, VMware areas) describe bytes [0, describes): this disk's size, or the map is of another disk. */
  describes?: number;
  /** Thin blocks: the last block of a disk whose size is no whole number of blocks overhangs its end. */
  block?: number;
  /** Appended to "ends past the disk": what usually causes it in this format. */
  pastEndHint?: string;
}

/** The file's text, parsed as JSON once, when a parser or the detection needs it. */
export interface CbtInput {
  text: string;
  json(): unknown;
}

/** A number written in decimal (or 0x hex where `hex`): whole, exactly representable, at least `min`. */
export function parseNumber(token: string, file: string, where: string, min: 0 | 1, hex = false): number {
  const pattern = hex ? /^(0x[0-9a-f]+|[0-9]+)$/i : /^[0-9]+$/;
  const value = pattern.test(token) ? Number(token) : NaN;
  if (!Number.isInteger(value) || value < min) {
    const what = `a whole number${hex ? ' (decimal, or hex with 0x)' : ''}, ${min} or more`;
    throw new InvalidInputError(`${file}: ${where}: ${JSON.stringify(token.slice(0, 40))} is not ${what}`, { file, where, value: token.slice(0, 40) });
  }
  if (!Number.isSafeInteger(value)) {
    throw new InvalidInputError(`${file}: ${where}: ${token.slice(0, 40)} is 2^53 or more and cannot be represented exactly`, { file, where, value: token.slice(0, 40) });
  }
  return value;
}

/** Lines with their 1-based numbers, blank ones left out; `comments` strips `#` to the end of a line first. */
export function significantLines(text: string, comments: boolean): { line: string; number: number }[] {
  const lines: { line: string; number: number }[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = (comments ? raw.replace(/#.*/, '') : raw).trim();
    if (line !== '') lines.push({ line, number: i + 1 });
  });
  return lines;
}
