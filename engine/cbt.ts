/**
 * Changed-block lists (CBT) of every source chunkvault knows, detected or named: what to
 * read again since the parent, and what the source says was discarded (zeros, never read).
 * Any granularity: a range touching a chunk slot makes the whole slot read (plan.ts).
 * Ranges may come unsorted and overlapping: they are sorted and merged.
 */
import { InvalidInputError } from './errors.js';
import { describeValue } from '../store/describe.js';
import type { CbtInput, Located, Parsed } from './cbt-input.js';
import { parseNbdinfoJson, parseNbdinfoText, parseQemuMap } from './cbt-qemu.js';
import { parseRbdDiff } from './cbt-rbd.js';
import { parseTextList } from './cbt-text.js';
import { parseThinDelta } from './cbt-thin.js';
import { parseVmwareAreas } from './cbt-vmware.js';
import { checkArray, checkBytes, checkObject, parseJson } from './json-input.js';
import { discardRanges, mergeRanges, type Range } from './plan.js';

export const CBT_FORMATS = ['chunkvault', 'rbd', 'thin', 'nbdinfo', 'qemu-map', 'vmware', 'text'] as const;
export type CbtFormat = (typeof CBT_FORMATS)[number];

export interface Changes {
  /** Sorted, merged: bytes to read again. */
  changed: Range[];
  /** Sorted, merged, apart from `changed`: bytes that are zero now, not to be read. */
  discarded: Range[];
  warnings: string[];
}

/** `{"changed": [{"offset", "length"}]}`; other top-level keys (a tool's own notes) are ignored with a warning. */
function parseChunkvault(input: CbtInput, file: string): Parsed {
  const value = input.json();
  const extra = typeof value === 'object' && value !== null && !Array.isArray(value) ? Object.keys(value).filter((key) => key !== 'changed') : [];
  const top = checkObject(value, file, 'the CBT list', ['changed'], extra);
  const warnings = extra.map((key) => `${file}: ignored the unknown top-level key "${key}" (a chunkvault CBT list is read from "changed" only)`);
  const changed = checkArray(top.changed, file, '"changed"').map((item, i) => {
    const where = `changed[${i}]`;
    const range = checkObject(item, file, where, ['offset', 'length']);
    return { offset: checkBytes(range.offset, file, `${where}.offset`, 0), length: checkBytes(range.length, file, `${where}.length`, 1), where };
  });
  return { changed, discarded: [], warnings };
}

interface Format {
  /** What produces it, for messages. */
  what: string;
  parse(input: CbtInput, file: string): Parsed;
}

const FORMATS: Record<CbtFormat, Format> = {
  chunkvault: { what: 'a chunkvault CBT list {"changed": [...]}', parse: parseChunkvault },
  rbd: { what: '`rbd diff --format json` output', parse: parseRbdDiff },
  thin: { what: '`thin_delta` XML', parse: parseThinDelta },
  nbdinfo: { what: '`nbdinfo --map` output of a dirty bitmap', parse: (input, file) => (isJson(input.text) ? parseNbdinfoJson(input, file) : parseNbdinfoText(input, file)) },
  'qemu-map': { what: '`qemu-img map --output=json` of a dirty bitmap', parse: parseQemuMap },
  vmware: { what: 'VMware QueryChangedDiskAreas JSON', parse: parseVmwareAreas },
  text: { what: 'an OFFSET LENGTH text list', parse: parseTextList },
};

export function checkCbtFormat(value: string, flag: string): CbtFormat | 'auto' {
  if (value === 'auto' || (CBT_FORMATS as readonly string[]).includes(value)) return value as CbtFormat | 'auto';
  throw new InvalidInputError(`${flag} ${value}: unknown format; use one of auto, ${CBT_FORMATS.join(', ')}`, { flag, value });
}

const isJson = (text: string): boolean => /^\s*[[{]/.test(text);

function cbtInput(text: string, file: string): CbtInput {
  let parsed: { value: unknown } | null = null;
  return { text, json: () => (parsed ??= { value: parseJson(text, file) }).value };
}

const has = (value: unknown, ...keys: string[]): boolean => typeof value === 'object' && value !== null && keys.every((k) => k in value);

function detectJson(value: unknown): CbtFormat | null {
  if (has(value, 'changed')) return 'chunkvault';
  if (has(value, 'changedArea')) return 'vmware';
  if (!Array.isArray(value)) return null;
  // `rbd diff` of a snapshot with no changes prints `[]`; the maps always have entries.
  if (value.length === 0) return 'rbd';
  const first: unknown = value[0];
  if (has(first, 'exists')) return 'rbd';
  if (has(first, 'start', 'data')) return 'qemu-map';
  if (has(first, 'type', 'description')) return 'nbdinfo';
  if (has(first, 'changedArea')) return 'vmware';
  return null;
}

/** The format the content looks like; null when none. JSON that does not parse throws its error when `strict`. */
function detect(input: CbtInput, strict: boolean): CbtFormat | null {
  if (isJson(input.text)) {
    try {
      return detectJson(input.json());
    } catch (err) {
      if (strict) throw err;
      return null;
    }
  }
  if (/^\s*(<\?xml[^>]*>\s*)?<superblock\b/.test(input.text)) return 'thin';
  const first = input.text.split('\n').find((line) => line.trim() !== '' && !line.trim().startsWith('#'));
  if (first === undefined) return null;
  if (/^\s*\d+\s+\d+\s+\d+\s+\S/.test(first)) return 'nbdinfo';
  // Loosely: a negative or fractional number is the text list's to refuse, with its line.
  if (/^\s*-?\d[\w.]*\s+-?\d[\w.]*\s*(#.*)?$/.test(first)) return 'text';
  return null;
}

function formatOf(input: CbtInput, file: string, named: CbtFormat | 'auto'): CbtFormat {
  const detected = detect(input, named === 'auto');
  if (named === 'auto') {
    if (detected) return detected;
    const start = input.text.trimStart().slice(0, 40);
    throw new InvalidInputError(
      `${file}: cannot tell which changed-block format this is (${start === '' ? 'it is empty' : `it starts with ${describeValue(start)}`}); name it with --changed-format (${CBT_FORMATS.join(', ')})`,
      { file },
    );
  }
  if (detected && detected !== named) {
    throw new InvalidInputError(`${file}: --changed-format ${named} expects ${FORMATS[named].what}, but this looks like ${FORMATS[detected].what}; pass --changed-format ${detected} (or auto)`, {
      file,
      format: named,
      detected,
    });
  }
  return named;
}

/** Within the disk; a thin block overhanging the disk's end is cut there, a block starting past it is refused. */
function withinDisk(range: Located, parsed: Parsed, file: string, diskSize: number): Range {
  const end = range.offset + range.length;
  if (end <= diskSize) return range;
  if (parsed.block !== undefined && end - parsed.block < diskSize) return { offset: range.offset, length: diskSize - range.offset };
  const hint = parsed.pastEndHint ? `; ${parsed.pastEndHint}` : '';
  throw new InvalidInputError(`${file}: ${range.where} (bytes ${range.offset}-${end - 1}) ends past the disk, which has ${diskSize} bytes${hint}`, { file, where: range.where, diskSize });
}

/** `ranges` without the bytes of `minus`: discardRanges' cut of extents, applied to ranges. */
function subtract(ranges: Range[], minus: Range[]): Range[] {
  const asExtents = { size: 0, chunkSize: 1, extents: ranges.map((r) => ({ ...r, from: r.offset })), changed: null };
  return discardRanges(asExtents, minus).extents.map(({ offset, length }) => ({ offset, length }));
}

/**
 * The changes a file of `format` (or the format it is detected as) lists for a disk of
 * `diskSize` bytes. A byte both changed and discarded counts as changed: reading it is
 * always right, zeroing it only if the source was.
 */
export function parseChanges(text: string, file: string, diskSize: number, format: CbtFormat | 'auto' = 'auto'): Changes {
  const input = cbtInput(text, file);
  const parsed = FORMATS[formatOf(input, file, format)].parse(input, file);
  const inDisk = (ranges: Located[]): Range[] => mergeRanges(ranges.map((r) => withinDisk(r, parsed, file, diskSize)));
  if (parsed.describes !== undefined && parsed.describes !== diskSize) {
    throw new InvalidInputError(`${file}: the map describes ${parsed.describes} bytes, but the disk has ${diskSize}; is it the map of another disk?`, { file, describes: parsed.describes, diskSize });
  }
  const changed = inDisk(parsed.changed);
  return { changed, discarded: subtract(inDisk(parsed.discarded), changed), warnings: parsed.warnings };
}

/**
 * Every byte that may differ from the parent (changed or discarded), merged, of a file in
 * any format, detected: for callers that write all of them, such as a restore onto a disk
 * holding the parent.
 */
export function parseChangedList(text: string, file: string, diskSize: number): Range[] {
  const { changed, discarded } = parseChanges(text, file, diskSize);
  return mergeRanges([...changed, ...discarded]);
}
