/**
 * What a full and an incremental restore share: the lock that names the restore point being
 * read, its map read while it is still listed, the chunk refs of its ids, slots grouped into
 * worker tasks, and the final sync of the target.
 */
import { promises as fs } from 'node:fs';
import type { Store } from '../store/store.js';
import type { RestorePoint, DiskEntry } from '../store/catalog.js';
import type { ChunkLocation } from '../store/pack.js';
import { ID_BYTES } from '../store/chunk-id.js';
import { TargetError, UnknownRefError } from './errors.js';
import { damageAt } from './damage.js';
import { WorkerPool } from './pool.js';
import { chunkRef, readMapOrDamage } from './locate.js';
import type { ChunkRef } from './tasks.js';

const TASK_BYTES = 8 * 1024 * 1024;
/** The lock's command: `restore <id>`. */
export const RESTORE_COMMAND = 'restore';

/**
 * Runs `use` with a worker pool started first thing: its threads load their code (tens of ms
 * each) while this one checks the input, takes the lock and reads the maps, instead of after.
 */
export async function withPool<T>(store: Store, threads: number | undefined, use: (pool: WorkerPool) => Promise<T>): Promise<T> {
  const pool = new WorkerPool(store.backend, threads, store.keys);
  try {
    return await use(pool);
  } finally {
    await pool.close();
  }
}

/** Runs `use` under the store's lock naming the restore point read. */
export async function underRestoreLock<T>(store: Store, point: RestorePoint, use: () => Promise<T>): Promise<T> {
  // Pinned before its map is read: prune keeps it, gc keeps its chunks where they are.
  const lock = await store.lock(`${RESTORE_COMMAND} ${point.id}`, { pins: [point.id] });
  try {
    return await use();
  } finally {
    await lock.release();
  }
}

/**
 * A disk's map, read under the lock. A prune that started before the lock was visible may
 * have removed the point, maps last: the map read came first, or the point is gone now.
 */
export async function readListedMap(store: Store, point: RestorePoint, label: string): Promise<Buffer> {
  const map = await readMapOrDamage(store, point, label).catch(async (err: unknown) => {
    await confirmStillListed(store, point);
    throw err;
  });
  await confirmStillListed(store, point);
  return map;
}

async function confirmStillListed(store: Store, point: RestorePoint): Promise<void> {
  if ((await store.catalog.list()).points.some((p) => p.id === point.id)) return;
  throw new UnknownRefError(`restore point ${point.id} was removed (by prune) as this restore started; nothing was written`, { restorePoint: point.id });
}

/** Chunk refs of a map's ids; a chunk the index lacks stops the restore unless it is partial. */
export function resolveRefs(point: RestorePoint, disk: DiskEntry, map: Buffer, ids: Map<string, Buffer>, locations: Map<string, ChunkLocation>, partial: boolean): Map<string, ChunkRef> {
  const refs = new Map<string, ChunkRef>();
  for (const [hex, id] of ids) {
    const location = locations.get(hex);
    if (location) refs.set(hex, chunkRef(id, location));
    else if (!partial) throw damageAt(point, disk.label, firstSlotOf(map, id) * point.chunkSize, 'chunk missing from the index');
  }
  return refs;
}

function firstSlotOf(map: Buffer, id: Buffer): number {
  for (let at = 0; at < map.byteLength; at += ID_BYTES) if (map.subarray(at, at + ID_BYTES).equals(id)) return at / ID_BYTES;
  return 0;
}

/** Where slot `slot` of a disk of `size` bytes lies, and its id in the map. */
export function slotAt(map: Buffer, slot: number, size: number, chunkSize: number): { diskOffset: number; length: number; id: Buffer } {
  const diskOffset = slot * chunkSize;
  return { diskOffset, length: Math.min(chunkSize, size - diskOffset), id: map.subarray(slot * ID_BYTES, (slot + 1) * ID_BYTES) };
}

/** Slots in tasks of about 8 MiB: each task is worth its overhead, and in-flight memory stays bounded. */
export function* slotTasks<T>(items: T[], chunkSize: number): Generator<T[]> {
  const size = Math.max(1, Math.floor(TASK_BYTES / chunkSize));
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size);
}

/** A worker's failure to write (or read) the target (ENOSPC, EIO...), as the target's error. */
export function targetFailed(path: string, doing: 'writing' | 'reading or writing'): (err: Error) => never {
  return (err) => {
    throw new TargetError(`target ${path}: ${doing} failed (${err.message}); the restore is incomplete`, { target: path });
  };
}

export async function syncFile(path: string): Promise<void> {
  const handle = await fs.open(path, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
