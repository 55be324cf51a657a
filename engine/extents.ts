/**
 * Extent maps ("offset tables"): where the bytes of a virtual disk lie on a source, e.g. a
 * raw disk file's extents on a snapshot LUN, read straight from the LUN without mounting
 * its filesystem. JSON: {"size": n, "extents": [{"offset": o, "length": n, "sourceOffset": s}]}
 * (s defaults to o); bytes outside every extent are zero and never read.
 */
import { promises as fs, type Stats } from 'node:fs';
import { basename, resolve } from 'node:path';
import { InvalidInputError, SourceError } from './errors.js';
import { checkArray, checkBytes, checkObject, parseJson } from './json-input.js';
import { readFiemap, type FileExtent } from './fiemap.js';
import type { Extent } from './plan.js';
import { majorMinor } from './source.js';

export interface ExtentMap {
  size: number;
  /** Sorted by disk offset, non-overlapping. */
  extents: Extent[];
}

/** What `chunkvault extents FILE --json` prints; `backup --extents` reads it back. */
export interface FileExtentMap {
  file: string;
  device: string;
  size: number;
  extents: { offset: number; length: number; sourceOffset: number }[];
}

/** Validates an extent map for a source of `sourceSize` bytes (named `source` in messages). */
export function parseExtentMap(text: string, file: string, source: string, sourceSize: number): ExtentMap {
  const top = checkObject(parseJson(text, file), file, 'the extent map', ['size', 'extents'], ['file', 'device']);
  const size = checkBytes(top.size, file, '"size"', 1);
  const extents = checkArray(top.extents, file, '"extents"').map((item, i) => {
    const where = `extents[${i}]`;
    const extent = checkObject(item, file, where, ['offset', 'length'], ['sourceOffset']);
    const offset = checkBytes(extent.offset, file, `${where}.offset`, 0);
    const length = checkBytes(extent.length, file, `${where}.length`, 1);
    const from = extent.sourceOffset === undefined ? offset : checkBytes(extent.sourceOffset, file, `${where}.sourceOffset`, 0);
    if (offset + length > size) {
      throw new InvalidInputError(`${file}: ${where} (bytes ${offset}-${offset + length - 1}) ends past the disk size ${size}`, { file, where, size });
    }
    if (from + length > sourceSize) {
      throw new InvalidInputError(`${file}: ${where} reads bytes ${from}-${from + length - 1} of ${source}, which has only ${sourceSize} bytes`, {
        file,
        where,
        source,
        sourceSize,
      });
    }
    return { index: i, extent: { offset, length, from } };
  });
  extents.sort((a, b) => a.extent.offset - b.extent.offset);
  for (let k = 1; k < extents.length; k++) {
    const [prev, next] = [extents[k - 1], extents[k]];
    if (next.extent.offset < prev.extent.offset + prev.extent.length) {
      throw new InvalidInputError(
        `${file}: extents[${next.index}] (disk bytes from ${next.extent.offset}) overlaps extents[${prev.index}] (disk bytes ${prev.extent.offset}-${prev.extent.offset + prev.extent.length - 1}); each disk byte must come from one place`,
        { file, where: `extents[${next.index}]` },
      );
    }
  }
  return { size, extents: extents.map((e) => e.extent) };
}

/** Extents whose bytes are not stored as-is on the device. */
export const NOT_ON_DEVICE = ['unknown_loc', 'delalloc', 'encoded', 'encrypted', 'not_aligned', 'inline', 'tail_packed'];
/** FIEMAP on btrfs answers in btrfs logical addresses, not offsets on any one device. */
const BTRFS = '9123683e';

/** The block device a file's filesystem lives on, from its st_dev. */
async function deviceOf(stats: Stats, file: string): Promise<string> {
  const dev = majorMinor(stats.dev);
  try {
    const device = `/dev/${basename(await fs.realpath(`/sys/dev/block/${dev}`))}`;
    await fs.access(device);
    return device;
  } catch {
    throw new SourceError(`${file} is on a filesystem without a block device (device ${dev}); its bytes cannot be read from a device`, { file });
  }
}

function physicalExtent(extent: FileExtent, file: string, size: number): FileExtentMap['extents'][number] {
  const flag = extent.flags.find((f) => NOT_ON_DEVICE.includes(f));
  if (flag) {
    throw new SourceError(`${file}: bytes ${extent.logical}-${extent.logical + extent.length - 1} are ${flag}, not stored as-is on the device`, { file, flag, offset: extent.logical });
  }
  return { offset: extent.logical, length: Math.min(extent.length, size - extent.logical), sourceOffset: extent.physical };
}

/** A regular file's extent map on its filesystem's device; unwritten extents read as zero and are left out. */
export async function fileExtentMap(path: string): Promise<FileExtentMap> {
  const file = resolve(path);
  const stats = await fs.stat(file).catch((err: NodeJS.ErrnoException) => {
    throw new InvalidInputError(`${file}: ${err.code === 'ENOENT' ? 'no such file' : err.code}`, { file, code: err.code });
  });
  if (!stats.isFile()) throw new InvalidInputError(`${file} is not a regular file`, { file });
  const map = await readFiemap(file);
  if (!map.ok) throw new SourceError(`${file}: its filesystem does not report extents (${map.reason})`, { file });
  if (map.fsType === BTRFS) throw new SourceError(`${file} is on btrfs, whose extent addresses are not offsets on a device`, { file });
  const device = await deviceOf(stats, file);
  const extents = map.extents.filter((e) => !e.flags.includes('unwritten') && e.logical < stats.size).map((e) => physicalExtent(e, file, stats.size));
  return { file, device, size: stats.size, extents };
}
