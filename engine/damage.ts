/** Damaged byte ranges of a disk, as verify and a partial restore report them. */
import type { RestorePoint } from '../store/catalog.js';
import { DamagedDataError } from './errors.js';

export interface DamagedRange {
  offset: number;
  length: number;
  problem: string;
}

/** Appends a range, merging it into the last one when adjacent with the same problem. */
export function appendRange(ranges: DamagedRange[], offset: number, length: number, problem: string): void {
  const last = ranges[ranges.length - 1];
  if (last && last.offset + last.length === offset && last.problem === problem) last.length += length;
  else ranges.push({ offset, length, problem });
}

export function damageAt(point: RestorePoint, disk: string, offset: number, problem: string): DamagedDataError {
  return new DamagedDataError(`restore point ${point.id} disk ${disk} at offset ${offset}: ${problem}`, { restorePoint: point.id, disk, offset, problem });
}
