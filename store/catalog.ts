/**
 * The catalog of restore points: one small JSON file per restore point, written last
 * (after packs, index and maps are durable), so a restore point that is listed is complete.
 * Plain files, not LevelDB, so a mount can watch for new restore points while a backup
 * holds the index.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { writeFileDurable, fsyncDir } from './durable.js';

export type BackupKind = 'full' | 'cbt' | 'extents';

export interface DiskEntry {
  label: string;
  size: number;
}

export interface Hold {
  reason: string;
  since: string;
}

export interface BackupStats {
  bytesRead: number;
  bytesNew: number;
  chunksTotal: number;
  chunksNew: number;
  chunksZero: number;
  seconds: number;
  /** Time source reads were held back by --max-latency / --max-rate; absent in points made before throttling. */
  secondsThrottled?: number;
}

export interface RestorePoint {
  id: string;
  name: string;
  /** When the snapshot was taken: what retention uses. */
  time: string;
  created: string;
  chunkSize: number;
  kind: BackupKind;
  parent: string | null;
  disks: DiskEntry[];
  hold: Hold | null;
  stats: BackupStats;
}

const SUFFIX = '.json';
const ID_PATTERN = /^[0-9a-f]{16}$/;

/** Ids sort by creation: 6 bytes of milliseconds, 2 random bytes. */
export function newRestorePointId(now = Date.now()): string {
  return now.toString(16).padStart(12, '0').slice(-12) + randomBytes(2).toString('hex');
}

export function encodeRestorePoint(point: RestorePoint): string {
  return JSON.stringify(point, null, 2) + '\n';
}

export function decodeRestorePoint(text: string): RestorePoint | null {
  try {
    const point = JSON.parse(text) as RestorePoint;
    if (typeof point.id !== 'string' || !ID_PATTERN.test(point.id) || !Array.isArray(point.disks)) return null;
    return point;
  } catch {
    return null;
  }
}

/** Files read 64 at a time: ten thousand entries list quickly without running out of descriptors. */
async function readAll(paths: string[]): Promise<(string | null)[]> {
  const texts: (string | null)[] = new Array(paths.length).fill(null);
  let next = 0;
  const reader = async (): Promise<void> => {
    for (let i = next++; i < paths.length; i = next++) texts[i] = await fs.readFile(paths[i], 'utf8').catch(() => null);
  };
  await Promise.all(Array.from({ length: Math.min(64, paths.length) }, reader));
  return texts;
}

export class Catalog {
  constructor(private readonly dir: string) {}

  private pathOf(id: string): string {
    return join(this.dir, id + SUFFIX);
  }

  /** Newest first by snapshot time, then by id. Unreadable entries are reported, not hidden. */
  async list(): Promise<{ points: RestorePoint[]; damaged: string[] }> {
    const names = (await fs.readdir(this.dir)).filter((n) => n.endsWith(SUFFIX) && !n.startsWith('.'));
    const texts = await readAll(names.map((name) => join(this.dir, name)));
    const points: RestorePoint[] = [];
    const damaged: string[] = [];
    texts.forEach((text, i) => {
      if (text === null) return; // removed while listing
      const point = decodeRestorePoint(text);
      if (point) points.push(point);
      else damaged.push(names[i].slice(0, -SUFFIX.length));
    });
    points.sort((a, b) => b.time.localeCompare(a.time) || b.id.localeCompare(a.id));
    return { points, damaged };
  }

  async put(point: RestorePoint): Promise<void> {
    await writeFileDurable(this.pathOf(point.id), encodeRestorePoint(point));
  }

  async remove(id: string): Promise<void> {
    await fs.rm(this.pathOf(id), { force: true });
    await fsyncDir(this.dir);
  }
}
