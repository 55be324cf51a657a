/**
 * `rbd diff --from-snap S1 POOL/IMG@S2 --format json`: `[{"offset", "length", "exists"}]`.
 * `exists` is the string "true" or "false" (Ceph 16; later releases may print a boolean,
 * taken too): "false" ranges were discarded or trimmed (a shrink, a discard) and read as
 * zeros.
 */
import { InvalidInputError } from './errors.js';
import { describeValue } from '../store/describe.js';
import type { CbtInput, Located, Parsed } from './cbt-input.js';
import { checkArray, checkBytes, checkObject } from './json-input.js';

function exists(value: unknown, file: string, where: string): boolean {
  if (value === 'true' || value === true) return true;
  if (value === 'false' || value === false) return false;
  throw new InvalidInputError(`${file}: ${where}.exists must be "true" or "false", got ${describeValue(value)}`, { file, where });
}

export function parseRbdDiff(input: CbtInput, file: string): Parsed {
  const changed: Located[] = [];
  const discarded: Located[] = [];
  checkArray(input.json(), file, 'the rbd diff').forEach((item, i) => {
    const where = `[${i}]`;
    const entry = checkObject(item, file, where, ['offset', 'length', 'exists']);
    const range = { offset: checkBytes(entry.offset, file, `${where}.offset`, 0), length: checkBytes(entry.length, file, `${where}.length`, 1), where };
    (exists(entry.exists, file, where) ? changed : discarded).push(range);
  });
  return { changed, discarded, warnings: [], pastEndHint: 'is it the diff of another image, or of a snapshot of another size?' };
}
