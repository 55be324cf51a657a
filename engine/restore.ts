/** Restore a disk of a restore point to a file or block device; workers decode, verify and write. */
import { promises as fs, type Stats } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Store } from '../store/store.js';
import type { RestorePoint, DiskEntry } from '../store/catalog.js';
import { ID_BYTES, isZeroId } from '../store/chunk-id.js';
import { DamagedDataError, InvalidInputError, TargetError } from './errors.js';
import { deviceSize } from './source.js';
import { performance } from 'node:perf_hooks';
import { resolveRef } from './refs.js';
import { WorkerPool, pipeline } from './pool.js';
import { chunkRef, locateChunks, readMapOrDamage, uniqueIds } from './locate.js';
import type { ChunkRef, RestoreSlot } from './tasks.js';

const TASK_BYTES = 8 * 1024 * 1024;

export interface RestoreOptions {
  disk?: string;
  threads?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface RestoreSummary {
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

function restoreSlots(map: Buffer, size: number, chunkSize: number, refs: Map<string, ChunkRef>, writeZeros: boolean): RestoreSlot[] {
  const slots: RestoreSlot[] = [];
  for (let slot = 0; slot * chunkSize < size; slot++) {
    const id = map.subarray(slot * ID_BYTES, (slot + 1) * ID_BYTES);
    const zero = id.byteLength < ID_BYTES || isZeroId(id);
    if (zero && !writeZeros) continue;
    const diskOffset = slot * chunkSize;
    slots.push({ diskOffset, length: Math.min(chunkSize, size - diskOffset), chunk: zero ? null : refs.get(id.toString('hex'))! });
  }
  return slots;
}

function* batches<T>(items: T[], size: number): Generator<T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size);
}

export async function restore(store: Store, ref: string, target: string, options: RestoreOptions = {}): Promise<RestoreSummary> {
  const started = performance.now();
  const point = resolveRef((await store.catalog.list()).points, ref);
  const disk = pickDisk(point, options.disk);
  const targetPath = resolve(target);
  const { isDevice } = await checkTarget(targetPath, disk.size);
  const lock = await store.lock('restore');
  const pool = new WorkerPool(store.packsDir, options.threads);
  try {
    const map = await readMapOrDamage(store, point, disk.label);
    const ids = uniqueIds(map);
    const locations = await locateChunks(store, ids);
    const refs = new Map<string, ChunkRef>();
    for (const [hex, id] of ids) {
      const location = locations.get(hex);
      if (!location) throw damageAt(point, disk.label, firstSlotOf(map, id) * point.chunkSize, 'chunk missing from the index');
      refs.set(hex, chunkRef(id, location));
    }
    const slots = restoreSlots(map, disk.size, point.chunkSize, refs, isDevice);
    if (!isDevice) await prepareFile(targetPath, disk.size);
    let bytesWritten = 0;
    await pipeline(
      batches(slots, Math.max(1, Math.floor(TASK_BYTES / point.chunkSize))),
      pool.window,
      (batch) => pool.restore({ op: 'restore', target: targetPath, slots: batch }),
      async (result, batch) => {
        if (result.problems.length > 0) {
          const { index, problem } = result.problems[0];
          throw damageAt(point, disk.label, batch[index].diskOffset, problem);
        }
        bytesWritten += result.bytesWritten;
        options.onProgress?.(batch[batch.length - 1].diskOffset + batch[batch.length - 1].length, disk.size);
      },
    );
    await syncFile(targetPath);
    return { id: point.id, disk: disk.label, target: targetPath, size: disk.size, bytesWritten, seconds: (performance.now() - started) / 1000 };
  } finally {
    await pool.close();
    await lock.release();
  }
}

function firstSlotOf(map: Buffer, id: Buffer): number {
  for (let at = 0; at < map.byteLength; at += ID_BYTES) if (map.subarray(at, at + ID_BYTES).equals(id)) return at / ID_BYTES;
  return 0;
}

export function damageAt(point: RestorePoint, disk: string, offset: number, problem: string): DamagedDataError {
  return new DamagedDataError(`restore point ${point.id} disk ${disk} at offset ${offset}: ${problem}`, { restorePoint: point.id, disk, offset, problem });
}

async function syncFile(path: string): Promise<void> {
  const handle = await fs.open(path, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
