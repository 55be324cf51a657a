/** /proc/self/mountinfo: what is mounted where, and which mounts are chunkvault's own. */
import { promises as fs } from 'node:fs';
import { majorMinor } from './source.js';

/** The filesystem type our mounts show in /proc/self/mountinfo (fuse.<subtype>). */
export const CHUNKVAULT_SUBTYPE = 'chunkvault';
export const CHUNKVAULT_FSTYPE = `fuse.${CHUNKVAULT_SUBTYPE}`;

export interface MountEntry {
  /** `major:minor`, the st_dev of every file on this mount. */
  device: string;
  mountpoint: string;
  fstype: string;
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescapeOctal(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

export function parseMountinfo(text: string): MountEntry[] {
  return text
    .split('\n')
    .filter((line) => line.includes(' - '))
    .map((line) => {
      const [before, after] = line.split(' - ');
      const fields = before.split(' ');
      return { device: fields[2], mountpoint: unescapeOctal(fields[4]), fstype: after.split(' ')[0] };
    });
}

export async function readMounts(): Promise<MountEntry[]> {
  return parseMountinfo(await fs.readFile('/proc/self/mountinfo', 'utf8'));
}

/** The chunkvault mount a file with this st_dev lives on, if any (each FUSE mount has a device number of its own). */
export async function chunkvaultMountOf(dev: number): Promise<MountEntry | undefined> {
  const device = majorMinor(dev);
  return (await readMounts()).find((m) => m.fstype === CHUNKVAULT_FSTYPE && m.device === device);
}
