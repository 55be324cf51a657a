/**
 * The data of a sparse source file: holes and unwritten (preallocated, reading as zero)
 * extents are left out of its layout, so they are never read. A 1 TiB file with 100 MiB
 * of data costs the reading of 100 MiB.
 */
import { readFiemap } from './fiemap.js';
import { mergeRanges, type Range } from './plan.js';

/**
 * Byte ranges of `path` that may hold data, within [0, size). Extents the filesystem has
 * not placed yet (delalloc, unknown location) count as data. Where the filesystem cannot
 * report extents (tmpfs, some network filesystems), the whole file is data: correct,
 * only slower, since all-zero chunks are still detected after reading.
 */
export async function dataRanges(path: string, size: number): Promise<Range[]> {
  const whole = size > 0 ? [{ offset: 0, length: size }] : [];
  const map = await readFiemap(path);
  if (!map.ok) return whole;
  const data = map.extents
    .filter((e) => !e.flags.includes('unwritten') && e.logical < size)
    .map((e) => ({ offset: e.logical, length: Math.min(e.length, size - e.logical) }));
  return mergeRanges(data);
}
