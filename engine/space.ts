/**
 * Space pre-flight: before a backup writes anything, estimate what the new restore point
 * may need and refuse, with the numbers, when the store's filesystem has less free space.
 * The estimate is deliberately high (new data is assumed incompressible and unique): a
 * refusal costs a rerun with --force, a full disk mid-backup costs the whole run.
 */
import { promises as fs } from 'node:fs';
import type { Store } from '../store/store.js';
import type { RestorePoint } from '../store/catalog.js';
import { ID_BYTES } from '../store/chunk-id.js';
import { RECORD_HEADER_BYTES } from '../store/pack.js';
import { formatBytes } from '../store/size.js';
import { NoSpaceError } from './errors.js';

/** Room LevelDB, the catalog and filesystem metadata need beside packs and maps. */
const MARGIN_BYTES = 16 * 1024 * 1024;

export interface DiskNeed {
  size: number;
  /** Bytes the source really holds (allocated blocks of a sparse file, or a device's size). */
  allocatedBytes: number;
  /** Bytes a CBT list marks as changed, when the backup has one. */
  changedBytes?: number | null;
}

/** What a source file or device holds: holes in a sparse image cost nothing to back up. */
export async function allocatedBytes(path: string): Promise<number> {
  const stats = await fs.stat(path);
  return stats.isFile() ? Math.min(stats.size, stats.blocks * 512) : stats.size;
}

/** The share of its disks' bytes the parent had to store anew: its change rate. */
function changeRate(parent: RestorePoint): number {
  const logical = parent.disks.reduce((sum, d) => sum + d.size, 0);
  return logical > 0 ? Math.min(1, parent.stats.bytesNew / logical) : 1;
}

/**
 * Bytes a backup may add to the store: per disk the CBT size when there is one, else the
 * parent's change rate applied to the disk, else the allocated size; plus record headers,
 * the chunk map, and a fixed margin.
 */
export function estimateBackupBytes(disks: DiskNeed[], chunkSize: number, parent: RestorePoint | null = null): number {
  let bytes = MARGIN_BYTES;
  for (const disk of disks) {
    const data = disk.changedBytes ?? (parent ? Math.min(disk.allocatedBytes, Math.ceil(changeRate(parent) * disk.size)) : disk.allocatedBytes);
    const slots = Math.ceil(disk.size / chunkSize);
    bytes += data + Math.ceil(data / chunkSize) * RECORD_HEADER_BYTES + slots * ID_BYTES;
  }
  return bytes;
}

export interface SpaceCheck {
  needed: number;
  available: number;
}

/** Free bytes an unprivileged writer may use on the store's filesystem. */
export async function freeBytes(store: Store): Promise<number> {
  const s = await fs.statfs(store.dir);
  return s.bavail * s.bsize;
}

/** Throws NoSpaceError naming both figures when the estimate does not fit, unless forced. */
export async function checkSpace(store: Store, estimateBytes: number, force = false): Promise<SpaceCheck> {
  const available = await freeBytes(store);
  if (available < estimateBytes && !force) {
    throw new NoSpaceError(
      `not enough free space for this backup: it may need up to ${formatBytes(estimateBytes)}, the store's filesystem (${store.dir}) has ${formatBytes(available)} free; free space with prune and gc, or pass --force to try anyway`,
      { store: store.dir, needed: estimateBytes, available },
    );
  }
  return { needed: estimateBytes, available };
}
