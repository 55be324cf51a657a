/**
 * Checked reading of the JSON lists users hand to a backup (extent maps, CBT lists):
 * every problem becomes an InvalidInputError naming the file, the field and the value.
 */
import { promises as fs } from 'node:fs';
import { InvalidInputError } from './errors.js';

export type JsonObject = Record<string, unknown>;

export async function readInputFile(path: string, flag: string): Promise<string> {
  try {
    return await fs.readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new InvalidInputError(`${flag} ${path}: cannot read it (${code === 'ENOENT' ? 'no such file' : code})`, { flag, file: path, code });
  }
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

/** A value as JSON, cut short: a megabyte-long string in a list must not become a megabyte-long message. */
function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = stringify(value);
  return text.length > MAX_DESCRIBED ? `${text.slice(0, MAX_DESCRIBED)}... (${text.length} characters)` : text;
}

const MAX_DESCRIBED = 80;

/** JSON.stringify recurses: a list nested a hundred thousand deep overflows the stack. */
function stringify(value: unknown): string {
  try {
    return JSON.stringify(value);
  } catch {
    return Array.isArray(value) ? 'a deeply nested array' : 'a deeply nested object';
  }
}
