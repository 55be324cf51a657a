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

export class Catalog {
  constructor(private readonly dir: string) {}

  private pathOf(id: string): string {
    return join(this.dir, id + SUFFIX);
  }

  /** Newest first by snapshot time, then by id. Unreadable entries are reported, not hidden. */
  async list(): Promise<{ points: RestorePoint[]; damaged: string[] }> {
    const names = (await fs.readdir(this.dir)).filter((n) => n.endsWith(SUFFIX) && !n.startsWith('.'));
    const points: RestorePoint[] = [];
    const damaged: string[] = [];
    for (const name of names) {
      const text = await fs.readFile(join(this.dir, name), 'utf8').catch(() => null);
      if (text === null) continue; // removed while listing
      const point = decodeRestorePoint(text);
      if (point) points.push(point);
      else damaged.push(name.slice(0, -SUFFIX.length));
    }
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
