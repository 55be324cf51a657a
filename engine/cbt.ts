/**
 * Changed-block lists (CBT): `{"changed": [{"offset": o, "length": n}]}`, the shape of
 * VMware's QueryChangedDiskAreas or a QEMU dirty bitmap export. Any granularity: a range
 * touching a chunk slot makes the whole slot read (plan.ts).
 */
import { InvalidInputError } from './errors.js';
import { checkArray, checkBytes, checkObject, parseJson } from './json-input.js';
import { mergeRanges, type Range } from './plan.js';

/** Sorted, merged changed ranges of a disk of `diskSize` bytes; overlaps are allowed and merged. */
export function parseChangedList(text: string, file: string, diskSize: number): Range[] {
  const top = checkObject(parseJson(text, file), file, 'the CBT list', ['changed']);
  const ranges = checkArray(top.changed, file, '"changed"').map((item, i) => {
    const where = `changed[${i}]`;
    const range = checkObject(item, file, where, ['offset', 'length']);
    const offset = checkBytes(range.offset, file, `${where}.offset`, 0);
    const length = checkBytes(range.length, file, `${where}.length`, 1);
    if (offset + length > diskSize) {
      throw new InvalidInputError(`${file}: ${where} (bytes ${offset}-${offset + length - 1}) ends past the disk, which has ${diskSize} bytes`, {
        file,
        where,
        diskSize,
      });
    }
    return { offset, length };
  });
  return mergeRanges(ranges);
}
