/**
 * `backup --skip-file PATH`: files on a mounted filesystem of the source (swap files, page
 * files, caches) whose blocks are backed up as zeros and never read. The file's st_dev names
 * its filesystem's device, which must be the source block device or a partition of it (sysfs
 * gives the partition's start); FIEMAP (synced) gives its blocks on that device. The source
 * must be a block device, a loop device for an image: a regular file holds no mounted
 * filesystem whose st_dev could name it.
 */
import { promises as fs } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { InvalidInputError, SourceError, errnoOf, isAbsent } from './errors.js';
import { NOT_ON_DEVICE } from './extents.js';
import { readFiemap, type FileExtent } from './fiemap.js';
import { mergeRanges, type Range } from './plan.js';
import { majorMinor, type Source } from './source.js';

/** What FIEMAP on btrfs answers in: its own logical addresses, not offsets on any device. */
const BTRFS = '9123683e';
/** A reflinked extent is another file's too: zeroing it would zero that file in the backup. */
const REFUSED_FLAGS = [...NOT_ON_DEVICE, 'shared'];

const refuse = (file: string, why: string, data: Record<string, unknown> = {}): InvalidInputError =>
  new InvalidInputError(`--skip-file ${file}: ${why}; nothing was written`, { flag: '--skip-file', file, ...data });

/** A sysfs attribute, or null where there is none; any other failure is an error, never "none". */
async function sysfs(path: string): Promise<string | null> {
  try {
    return (await fs.readFile(path, 'utf8')).trim();
  } catch (err) {
    if (isAbsent(err)) return null;
    throw new SourceError(`cannot read ${path} (${errnoOf(err) ?? String(err)}); nothing was written`, { path }, err);
  }
}

/** Where device `dev` (major:minor) starts on the source device `source`: 0 for itself, its start for one of its partitions, else null. */
async function startOnSource(dev: string, source: string): Promise<number | null> {
  if (dev === source) return 0;
  const sys = `/sys/dev/block/${dev}`;
  if ((await sysfs(`${sys}/partition`)) === null) return null;
  if ((await sysfs(`${dirname(await fs.realpath(sys))}/dev`)) !== source) return null;
  const start = await sysfs(`${sys}/start`);
  // A wrong start would zero other blocks than the file's: no start, no skipping.
  if (start === null || !/^\d+$/.test(start)) throw new SourceError(`${sys}/start: not a sector number (${String(start)}); nothing was written`, { path: `${sys}/start` });
  return Number(start) * 512;
}

/** The source whose device holds the filesystem of `dev`, and where that filesystem starts on it. */
async function sourceOf(dev: string, devices: { source: Source; dev: string }[]): Promise<{ source: Source; start: number } | null> {
  for (const { source, dev: sourceDev } of devices) {
    const start = await startOnSource(dev, sourceDev);
    if (start !== null) return { source, start };
  }
  return null;
}

function sourceRange(extent: FileExtent, start: number, source: Source, file: string): Range {
  const flag = extent.flags.find((f) => REFUSED_FLAGS.includes(f));
  const where = `bytes ${extent.logical}-${extent.logical + extent.length - 1}`;
  if (flag === 'shared') throw refuse(file, `its ${where} share their blocks with another file (reflink); skipping them would zero that file too`, { flag });
  if (flag) throw refuse(file, `its ${where} are ${flag}, not stored as-is on the device`, { flag });
  const offset = start + extent.physical;
  if (offset + extent.length > source.size) throw refuse(file, `its ${where} lie at ${offset}-${offset + extent.length - 1}, past the end of ${source.path} (${source.size} bytes)`);
  return { offset, length: extent.length };
}

/** One file's blocks on its source, or why it cannot be skipped. */
async function skipFile(path: string, devices: { source: Source; dev: string }[]): Promise<{ label: string; ranges: Range[] }> {
  const file = resolve(path);
  const stats = await fs.stat(file).catch((err: NodeJS.ErrnoException) => {
    throw refuse(file, err.code === 'ENOENT' ? 'there is no such file' : `it cannot be examined (${err.code})`, { code: err.code });
  });
  if (stats.isDirectory()) throw refuse(file, 'it is a directory; name the files in it');
  if (!stats.isFile()) throw refuse(file, 'it is not a regular file');
  const dev = majorMinor(stats.dev);
  const on = await sourceOf(dev, devices);
  if (!on) throw refuse(file, `its filesystem is on device ${dev}, which is neither a source of this backup (${devices.map((d) => `${d.source.path} ${d.dev}`).join(', ')}) nor a partition of one`, { dev });
  const map = await readFiemap(file);
  if (!map.ok) throw refuse(file, `its filesystem does not report extents (${map.reason})`);
  if (map.fsType === BTRFS) throw refuse(file, "it is on btrfs, whose extent addresses are not offsets on the device");
  return { label: on.source.label, ranges: map.extents.map((extent) => sourceRange(extent, on.start, on.source, file)) };
}

/**
 * The source ranges `files` occupy, merged, per disk label. Only whole-device sources: an
 * extent map (--extents) would need the ranges mapped back to disk offsets, which is not done.
 */
export async function skipFileRanges(sources: Source[], files: string[], extentLabels: Set<string>): Promise<Map<string, Range[]>> {
  const ranges = new Map<string, Range[]>();
  if (files.length === 0) return ranges;
  const devices: { source: Source; dev: string }[] = [];
  for (const source of sources) {
    if (!source.isDevice) continue;
    devices.push({ source, dev: majorMinor((await fs.stat(source.path)).rdev) });
  }
  if (devices.length === 0) {
    throw refuse(resolve(files[0]), `the sources are regular files (${sources.map((s) => s.path).join(', ')}); back up the block device the filesystem is mounted from (for an image: losetup --find --show --partscan IMAGE)`);
  }
  for (const path of files) {
    const { label, ranges: found } = await skipFile(path, devices);
    if (extentLabels.has(label)) throw refuse(resolve(path), `disk '${label}' is read through --extents; --skip-file needs the whole device`, { label });
    ranges.set(label, [...(ranges.get(label) ?? []), ...found]);
  }
  for (const [label, found] of ranges) ranges.set(label, mergeRanges(found));
  return ranges;
}

export const skippedBytes = (ranges: Range[]): number => ranges.reduce((sum, r) => sum + r.length, 0);
