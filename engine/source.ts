/** What a backup reads: regular files and block devices, named by `PATH` or `LABEL=PATH`. */
import { promises as fs, type Stats } from 'node:fs';
import { basename, extname, resolve } from 'node:path';
import { InvalidInputError, SourceError } from './errors.js';
import { checkLabel } from './names.js';

export interface Source {
  label: string;
  path: string;
  size: number;
  isDevice: boolean;
}

export function parseSourceSpec(spec: string): { label: string; path: string } {
  const eq = spec.indexOf('=');
  const path = eq > 0 ? spec.slice(eq + 1) : spec;
  if (path === '') throw new InvalidInputError(`source '${spec}' names no path`, { source: spec });
  const label = eq > 0 ? spec.slice(0, eq) : basename(path, extname(path));
  return { label: checkLabel(label), path: resolve(path) };
}

/** A device number (st_dev, st_rdev) as sysfs names it: `major:minor`. */
export function majorMinor(dev: number): string {
  const major = Math.floor(dev / 256) & 0xfff;
  const minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
  return `${major}:${minor}`;
}

/** Block devices report size 0 in stat; sysfs knows their size in 512-byte sectors. */
export async function deviceSize(stats: Stats, path: string): Promise<number> {
  try {
    const sectors = await fs.readFile(`/sys/dev/block/${majorMinor(stats.rdev)}/size`, 'utf8');
    return Number(sectors.trim()) * 512;
  } catch {
    throw new SourceError(`${path}: cannot determine the size of this block device`, { path });
  }
}

/** The size of a file or block device now, or null when it is gone. */
export async function currentSourceSize(path: string): Promise<number | null> {
  const stats = await fs.stat(path).catch(() => null);
  if (!stats) return null;
  return stats.isBlockDevice() ? deviceSize(stats, path) : stats.size;
}

export async function openSource(spec: string): Promise<Source> {
  const { label, path } = parseSourceSpec(spec);
  let stats: Stats;
  try {
    stats = await fs.stat(path);
    await fs.access(path, fs.constants.R_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file or device' : code === 'EACCES' ? 'permission denied' : String(code);
    throw new SourceError(`source ${path}: ${why}`, { path, code });
  }
  if (!stats.isFile() && !stats.isBlockDevice()) throw new SourceError(`source ${path} is not a regular file or block device`, { path });
  const source = { label, path, size: stats.isFile() ? stats.size : await deviceSize(stats, path), isDevice: stats.isBlockDevice() };
  if (source.size === 0) throw new SourceError(`source ${path} is empty (0 bytes): there is no disk to back up`, { path });
  return source;
}

export async function openSources(specs: string[]): Promise<Source[]> {
  if (specs.length === 0) throw new InvalidInputError('backup needs at least one SOURCE', {});
  const sources: Source[] = [];
  for (const spec of specs) sources.push(await openSource(spec));
  const seen = new Set<string>();
  for (const { label } of sources) {
    if (seen.has(label)) throw new InvalidInputError(`disk label '${label}' is used twice; name disks with LABEL=PATH`, { label });
    seen.add(label);
  }
  return sources;
}
