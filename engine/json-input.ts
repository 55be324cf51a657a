/**
 * Checked reading of the JSON lists users hand to a backup (extent maps, CBT lists):
 * every problem becomes an InvalidInputError naming the file, the field and the value.
 */
import { InvalidInputError } from './errors.js';
import { describeValue as describe } from '../store/describe.js';
import { readSmallFile } from '../store/small-file.js';
import { formatBytes } from '../store/size.js';

export type JsonObject = Record<string, unknown>;

/** Millions of ranges, more than a real list holds; parsed, a file this size already takes gigabytes of memory. */
export const MAX_INPUT_BYTES = 256 * 1024 * 1024;

export async function readInputFile(path: string, flag: string): Promise<string> {
  const read = await readSmallFile(path, MAX_INPUT_BYTES);
  if ('text' in read) return read.text;
  const data = { flag, file: path, problem: read.problem };
  switch (read.problem) {
    case 'absent':
      throw new InvalidInputError(`${flag} ${path}: cannot read it (no such file)`, { ...data, code: read.code });
    case 'not regular':
      throw new InvalidInputError(`${flag} ${path}: cannot read it${read.code ? ` (${read.code})` : ''}: it is ${read.kind}, not a regular file; give the path of a JSON file`, data);
    case 'too large':
      throw new InvalidInputError(`${flag} ${path}: too large (${read.size} bytes; a list may have at most ${formatBytes(MAX_INPUT_BYTES)})`, { ...data, size: read.size });
    case 'unreadable':
      throw new InvalidInputError(`${flag} ${path}: cannot read it (${read.code})`, { ...data, code: read.code }, read.cause);
  }
}

/** Everything on standard input (`-` for FILE), as much as a list file may hold. */
export async function readStdin(flag: string): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_INPUT_BYTES) throw new InvalidInputError(`${flag} -: standard input is too large (more than ${formatBytes(MAX_INPUT_BYTES)})`, { flag, file: '-', problem: 'too large' });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new InvalidInputError(`${file}: not valid JSON (${(err as Error).message})`, { file });
  }
}

/**
 * An object with these required keys and no keys outside `optional`: a misspelled key
 * (say "sourceOfset") must not silently fall back to a default and read the wrong bytes.
 */
export function checkObject(value: unknown, file: string, where: string, required: string[], optional: string[] = []): JsonObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidInputError(`${file}: ${where} must be an object, got ${describe(value)}`, { file, where });
  }
  const object = value as JsonObject;
  const missing = required.find((key) => !(key in object));
  if (missing) throw new InvalidInputError(`${file}: ${where} has no "${missing}"`, { file, where, key: missing });
  const unknown = Object.keys(object).find((key) => !required.includes(key) && !optional.includes(key));
  if (unknown) {
    throw new InvalidInputError(`${file}: ${where} has an unknown key "${unknown}" (allowed: ${[...required, ...optional].join(', ')})`, { file, where, key: unknown });
  }
  return object;
}

export function checkArray(value: unknown, file: string, where: string): unknown[] {
  if (!Array.isArray(value)) throw new InvalidInputError(`${file}: ${where} must be an array, got ${describe(value)}`, { file, where });
  return value;
}

/** A byte count or offset: a whole number, exactly representable, at least `min`. */
export function checkBytes(value: unknown, file: string, where: string, min: 0 | 1): number {
  const what = min === 0 ? 'a whole number of bytes, 0 or more' : 'a whole number of bytes, 1 or more';
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
    throw new InvalidInputError(`${file}: ${where} must be ${what}, got ${describe(value)}`, { file, where, value: describe(value) });
  }
  if (!Number.isSafeInteger(value)) {
    throw new InvalidInputError(`${file}: ${where} = ${describe(value)} is 2^53 or more and cannot be represented exactly`, { file, where, value: describe(value) });
  }
  return value;
}
