/** Restore a disk of a restore point to a file or block device; workers decode, verify and write. */
import { promises as fs, type Stats } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Store } from '../store/store.js';
import type { RestorePoint, DiskEntry } from '../store/catalog.js';
import { ID_BYTES, isZeroId } from '../store/chunk-id.js';
import { InvalidInputError, TargetError, UnknownRefError } from './errors.js';
import { appendRange, damageAt, type DamagedRange } from './damage.js';
import type { ChunkLocation } from '../store/pack.js';

export { damageAt } from './damage.js';
import { deviceSize } from './source.js';
import { performance } from 'node:perf_hooks';
import { resolveRef } from './refs.js';
import { WorkerPool, pipeline } from './pool.js';
import { chunkRef, locateChunks, readMapOrDamage, uniqueIds } from './locate.js';
import type { ChunkRef, RestoreSlot } from './tasks.js';

const TASK_BYTES = 8 * 1024 * 1024;
/** The lock's command: `restore <id>`. */
export const RESTORE_COMMAND = 'restore';

export interface RestoreOptions {
  /** Write what can be restored and report the rest, instead of stopping at the first damage. */
  partial?: boolean;
  disk?: string;
  threads?: number;
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

export function pickDisk(point: RestorePoint, label: string | undefined): DiskEntry {
  if (label === undefined) {
    if (point.disks.length === 1) return point.disks[0];
    throw new InvalidInputError(`restore point ${point.id} has ${point.disks.length} disks (${point.disks.map((d) => d.label).join(', ')}); choose one with --disk`, { restorePoint: point.id });
  }
  const disk = point.disks.find((d) => d.label === label);
  if (!disk) throw new InvalidInputError(`restore point ${point.id} has no disk '${label}' (it has ${point.disks.map((d) => d.label).join(', ')})`, { restorePoint: point.id, disk: label });
  return disk;
}

/** Checks the target can take the disk before anything is written to it. */
async function checkTarget(path: string, size: number): Promise<{ isDevice: boolean }> {
  let stats: Stats | null = null;
  try {
    stats = await fs.stat(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw new TargetError(`target ${path}: ${code}`, { target: path, code });
  }
  const probe = stats ? path : dirname(path);
  try {
    await fs.access(probe, fs.constants.W_OK);
  } catch {
    throw new TargetError(`target ${path}: ${stats ? 'not writable' : `directory ${probe} does not exist or is not writable`}`, { target: path });
  }
  if (stats?.isBlockDevice()) {
    const deviceBytes = await deviceSize(stats, path);
    if (deviceBytes < size) throw new TargetError(`target ${path} holds ${deviceBytes} bytes, the disk needs ${size}`, { target: path, size: deviceBytes, needed: size });
    return { isDevice: true };
  }
  if (stats && !stats.isFile()) throw new TargetError(`target ${path} is not a regular file or block device`, { target: path });
  return { isDevice: false };
}

/** A file target starts empty at the disk's size, so zero chunks stay holes. */
async function prepareFile(path: string, size: number): Promise<void> {
  const handle = await fs.open(path, 'w');
  try {
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
    if (id.byteLength < ID_BYTES || isZeroId(id)) {
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
  const { isDevice } = await checkTarget(targetPath, disk.size);
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
    const { slots, missing } = restoreSlots(map, disk.size, point.chunkSize, refs, isDevice);
    if (!isDevice) await prepareFile(targetPath, disk.size);
    const unrestored = missing.map((slot) => ({ slot, problem: 'chunk missing from the index' }));
    let bytesWritten = 0;
    await pipeline(
      batches(slots, Math.max(1, Math.floor(TASK_BYTES / point.chunkSize))),
      pool.window,
      (batch) => pool.restore({ op: 'restore', target: targetPath, slots: batch }).catch((err: Error) => {
        throw new TargetError(`target ${targetPath}: writing failed (${err.message}); the restore is incomplete`, { target: targetPath });
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
    if (isDevice && unrestored.length > 0) await pool.restore({ op: 'restore', target: targetPath, slots: unrestored.map(({ slot }) => ({ ...slot, chunk: null })) });
    await syncFile(targetPath);
    return {
      id: point.id,
      disk: disk.label,
      target: targetPath,
      size: disk.size,
      bytesWritten,
      seconds: (performance.now() - started) / 1000,
      unrestored: unrestoredRanges(unrestored),
    };
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
