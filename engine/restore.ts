/** Restore a disk of a restore point to a file or block device; workers decode, verify and write. */
import { promises as fs } from 'node:fs';
import { resolve } from 'node:path';
import type { Store } from '../store/store.js';
import type { RestorePoint, DiskEntry } from '../store/catalog.js';
import { ID_BYTES, isZeroId } from '../store/chunk-id.js';
import { InvalidInputError, TargetError, UnknownRefError } from './errors.js';
import { appendRange, damageAt, type DamagedRange } from './damage.js';
import type { ChunkLocation } from '../store/pack.js';

export { damageAt } from './damage.js';
import { openTarget, type Target } from './target.js';
import { performance } from 'node:perf_hooks';
import { resolveRef } from './refs.js';
import { WorkerPool, pipeline } from './pool.js';
import { chunkRef, locateChunks, readMapOrDamage, uniqueIds } from './locate.js';
import type { ChunkRef, RestoreSlot } from './tasks.js';

const TASK_BYTES = 8 * 1024 * 1024;
/** Restored disks are private unless asked otherwise (design invariant 7). */
const PRIVATE_MODE = 0o600;
/** The lock's command: `restore <id>`. */
export const RESTORE_COMMAND = 'restore';

export interface RestoreOptions {
  /** Write what can be restored and report the rest, instead of stopping at the first damage. */
  partial?: boolean;
  disk?: string;
  threads?: number;
  /** Permission bits (0 to 0o7777) of a restored file; a new file is otherwise 0600, an existing one keeps its mode. */
  mode?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface RestoreSummary {
  /** With --partial: ranges that could not be restored (left zero); empty otherwise. */
  unrestored: DamagedRange[];
  id: string;
  disk: string;
  target: string;
  size: number;
  bytesWritten: number;
  seconds: number;
}

export function pickDisk(point: RestorePoint, label: string | undefined, choose = 'choose one with --disk'): DiskEntry {
  if (label === undefined) {
    if (point.disks.length === 1) return point.disks[0];
    throw new InvalidInputError(`restore point ${point.id} has ${point.disks.length} disks (${point.disks.map((d) => d.label).join(', ')}); ${choose}`, { restorePoint: point.id });
  }
  const disk = point.disks.find((d) => d.label === label);
  if (!disk) throw new InvalidInputError(`restore point ${point.id} has no disk '${label}' (it has ${point.disks.map((d) => d.label).join(', ')})`, { restorePoint: point.id, disk: label });
  return disk;
}

/**
 * A file target starts empty at the disk's size, so zero chunks stay holes. A new file is private
 * (0600) unless a mode is asked for; an existing one keeps its mode unless one is. The mode is set
 * with chmod, so the umask neither widens nor narrows it.
 */
async function prepareFile(target: Target, size: number, mode: number | undefined): Promise<void> {
  const handle = await fs.open(target.path, target.exists ? 'r+' : 'wx', PRIVATE_MODE);
  try {
    if (!target.exists || mode !== undefined) await handle.chmod(mode ?? PRIVATE_MODE);
    await handle.truncate(0);
    await handle.truncate(size);
  } finally {
    await handle.close();
  }
}

/** Slots to write, and slots whose chunk the index lacks (only possible with --partial). */
function restoreSlots(map: Buffer, size: number, chunkSize: number, refs: Map<string, ChunkRef>, writeZeros: boolean): { slots: RestoreSlot[]; missing: RestoreSlot[] } {
  const slots: RestoreSlot[] = [];
  const missing: RestoreSlot[] = [];
  for (let slot = 0; slot * chunkSize < size; slot++) {
    const id = map.subarray(slot * ID_BYTES, (slot + 1) * ID_BYTES);
    const diskOffset = slot * chunkSize;
    const length = Math.min(chunkSize, size - diskOffset);
    if (isZeroId(id)) {
      if (writeZeros) slots.push({ diskOffset, length, chunk: null });
      continue;
    }
    const chunk = refs.get(id.toString('hex'));
    if (chunk) slots.push({ diskOffset, length, chunk });
    else missing.push({ diskOffset, length, chunk: null });
  }
  return { slots, missing };
}

function* batches<T>(items: T[], size: number): Generator<T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size);
}

/** Chunk refs of a map's ids; a chunk the index lacks stops the restore unless it is partial. */
function resolveRefs(point: RestorePoint, disk: DiskEntry, map: Buffer, ids: Map<string, Buffer>, locations: Map<string, ChunkLocation>, partial: boolean): Map<string, ChunkRef> {
  const refs = new Map<string, ChunkRef>();
  for (const [hex, id] of ids) {
    const location = locations.get(hex);
    if (location) refs.set(hex, chunkRef(id, location));
    else if (!partial) throw damageAt(point, disk.label, firstSlotOf(map, id) * point.chunkSize, 'chunk missing from the index');
  }
  return refs;
}

export async function restore(store: Store, ref: string, target: string, options: RestoreOptions = {}): Promise<RestoreSummary> {
  const started = performance.now();
  const { points, damaged } = await store.catalog.list();
  const point = resolveRef(points, ref, damaged);
  const disk = pickDisk(point, options.disk);
  const targetPath = resolve(target);
  const out = await openTarget(store, targetPath, disk.size);
  try {
    if (out.isDevice && options.mode !== undefined) throw new InvalidInputError(`--mode is for a file target; ${targetPath} is a block device (its mode is left alone); nothing was written`, { target: targetPath });
    const written = await writeDisk(store, point, disk, out, options);
    return { id: point.id, disk: disk.label, target: targetPath, size: disk.size, ...written, seconds: (performance.now() - started) / 1000 };
  } finally {
    await out.release();
  }
}

/** The restore proper, under the store's lock, onto a target already checked. */
async function writeDisk(store: Store, point: RestorePoint, disk: DiskEntry, out: Target, options: RestoreOptions): Promise<Pick<RestoreSummary, 'bytesWritten' | 'unrestored'>> {
  const partial = options.partial === true;
  // The id in the lock tells prune which restore point is being read (prune.ts refuseWhileRestored).
  const lock = await store.lock(`${RESTORE_COMMAND} ${point.id}`);
  const pool = new WorkerPool(store.packsDir, options.threads);
  try {
    const map = await readMapOrDamage(store, point, disk.label).catch(async (err: unknown) => {
      await confirmStillListed(store, point);
      throw err;
    });
    // A prune that started before this lock was visible may have removed the point, maps last:
    // the map read above came first, or the point is gone now.
    await confirmStillListed(store, point);
    const ids = uniqueIds(map);
    const refs = resolveRefs(point, disk, map, ids, await locateChunks(store, ids), partial);
    const { slots, missing } = restoreSlots(map, disk.size, point.chunkSize, refs, out.isDevice);
    if (!out.isDevice) await prepareFile(out, disk.size, options.mode);
    const unrestored = missing.map((slot) => ({ slot, problem: 'chunk missing from the index' }));
    let bytesWritten = 0;
    await pipeline(
      batches(slots, Math.max(1, Math.floor(TASK_BYTES / point.chunkSize))),
      pool.window,
      (batch) => pool.restore({ op: 'restore', target: out.path, slots: batch }).catch((err: Error) => {
        throw new TargetError(`target ${out.path}: writing failed (${err.message}); the restore is incomplete`, { target: out.path });
      }),
      async (result, batch) => {
        for (const { index, problem } of result.problems) {
          if (!partial) throw damageAt(point, disk.label, batch[index].diskOffset, problem);
          unrestored.push({ slot: batch[index], problem });
        }
        bytesWritten += result.bytesWritten;
        options.onProgress?.(batch[batch.length - 1].diskOffset + batch[batch.length - 1].length, disk.size);
      },
    );
    // A device keeps whatever it held where a chunk could not be restored: zero it, so no stale data passes for restored data.
    if (out.isDevice && unrestored.length > 0) await pool.restore({ op: 'restore', target: out.path, slots: unrestored.map(({ slot }) => ({ ...slot, chunk: null })) });
    await syncFile(out.path);
    return { bytesWritten, unrestored: unrestoredRanges(unrestored) };
  } finally {
    await pool.close();
    await lock.release();
  }
}

async function confirmStillListed(store: Store, point: RestorePoint): Promise<void> {
  if ((await store.catalog.list()).points.some((p) => p.id === point.id)) return;
  throw new UnknownRefError(`restore point ${point.id} was removed (by prune) as this restore started; nothing was written`, { restorePoint: point.id });
}

function unrestoredRanges(items: { slot: RestoreSlot; problem: string }[]): DamagedRange[] {
  const ranges: DamagedRange[] = [];
  for (const { slot, problem } of items.sort((a, b) => a.slot.diskOffset - b.slot.diskOffset)) appendRange(ranges, slot.diskOffset, slot.length, problem);
  return ranges;
}

function firstSlotOf(map: Buffer, id: Buffer): number {
  for (let at = 0; at < map.byteLength; at += ID_BYTES) if (map.subarray(at, at + ID_BYTES).equals(id)) return at / ID_BYTES;
  return 0;
}

async function syncFile(path: string): Promise<void> {
  const handle = await fs.open(path, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
