/**
 * Space pre-flight: before a backup writes anything, estimate what the new restore point
 * may need and refuse, with the numbers, when the store's filesystem has less free space.
 * The estimate is deliberately high (new data is assumed incompressible and unique): a
 * refusal costs a rerun with --force, a full disk mid-backup costs the whole run.
 */
import { promises as fs } from 'node:fs';
import { RESERVE_BYTES, type Store } from '../store/store.js';
import type { RestorePoint } from '../store/catalog.js';
import { ID_BYTES } from '../store/chunk-id.js';
import { RECORD_HEADER_BYTES } from '../store/pack.js';
import { formatBytes } from '../store/size.js';
import { NoSpaceError } from './errors.js';
import type { DiskLayout, Range } from './plan.js';

/** Room LevelDB, the catalog and filesystem metadata need beside packs and maps. */
const MARGIN_BYTES = 16 * 1024 * 1024;

export interface DiskNeed {
  size: number;
  /** Bytes the backup may read: the data extents of the source (holes of a sparse file excluded). */
  allocatedBytes: number;
  /** Bytes of the chunks a CBT list touches, when the backup has one. */
  changedBytes?: number | null;
}

/**
 * A disk's need from its backup layout: its extents are what the backup reads; with a CBT
 * list, only the chunk slots a changed range touches are read, and each is stored whole.
 */
export function diskNeed(layout: DiskLayout): DiskNeed {
  const extentBytes = layout.extents.reduce((sum, e) => sum + e.length, 0);
  return { size: layout.size, allocatedBytes: extentBytes, changedBytes: layout.changed ? touchedSlots(layout.changed, layout.chunkSize) * layout.chunkSize : null };
}

/** Distinct chunk slots that sorted ranges touch. */
function touchedSlots(ranges: Range[], chunkSize: number): number {
  let count = 0;
  let last = -1;
  for (const r of ranges) {
    if (r.length <= 0) continue;
    const first = Math.max(last + 1, Math.floor(r.offset / chunkSize));
    const end = Math.floor((r.offset + r.length - 1) / chunkSize);
    if (end >= first) count += end - first + 1;
    last = Math.max(last, end);
  }
  return count;
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

/** Free bytes an unprivileged writer may use on the store's filesystem; no limit a filesystem sets when the store is not local. */
export async function freeBytes(store: Store): Promise<number> {
  if (store.localDir === null) return Infinity;
  const s = await fs.statfs(store.localDir);
  return s.bavail * s.bsize;
}

/**
 * Commands that free space (prune, gc) write a little first (a lock, LevelDB's log): on a
 * filesystem with less free than the store's reserve, give the reserve back so they can start.
 */
export async function makeRoomIfFull(store: Store): Promise<void> {
  if ((await freeBytes(store)) < RESERVE_BYTES) await store.releaseReserve();
}

/** Throws NoSpaceError naming both figures when the estimate does not fit, unless forced. */
export async function checkSpace(store: Store, estimateBytes: number, force = false): Promise<SpaceCheck> {
  const available = await freeBytes(store);
  if (available < estimateBytes && !force) {
    throw new NoSpaceError(
      `not enough free space for this backup: it may need up to ${formatBytes(estimateBytes)}, the store's filesystem (${store.location}) has ${formatBytes(available)} free; free space with prune and gc, or pass --force to try anyway`,
      { store: store.location, needed: estimateBytes, available },
    );
  }
  return { needed: estimateBytes, available };
}
