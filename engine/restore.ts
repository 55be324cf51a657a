/**
 * Restore a disk of a restore point to a file or block device; workers decode, verify and
 * write. In full (this module), or onto a target holding a known disk already (rollback.ts).
 */
import { promises as fs } from 'node:fs';
import { resolve } from 'node:path';
import type { Store } from '../store/store.js';
import type { RestorePoint, DiskEntry } from '../store/catalog.js';
import { isZeroId } from '../store/chunk-id.js';
import { InvalidInputError } from './errors.js';
import { appendRange, damageAt, type DamagedRange } from './damage.js';

export { damageAt } from './damage.js';
export { RESTORE_COMMAND } from './restore-steps.js';
import { openTarget, type Target } from './target.js';
import { performance } from 'node:perf_hooks';
import { resolveRef } from './refs.js';
import { pipeline, type WorkerPool } from './pool.js';
import { locateChunks, uniqueIds } from './locate.js';
import type { ChunkRef, RestoreSlot } from './tasks.js';
import { readListedMap, resolveRefs, slotAt, slotTasks, syncFile, underRestoreLock, targetFailed, withPool } from './restore-steps.js';
import { checkIncremental, patchDisk, requireRestoredTarget, type Incremental } from './rollback.js';

/** Restored disks are private unless asked otherwise (design invariant 7). */
const PRIVATE_MODE = 0o600;

export interface RestoreOptions {
  /** Write what can be restored and report the rest, instead of stopping at the first damage. */
  partial?: boolean;
  disk?: string;
  threads?: number;
  /** Permission bits (0 to 0o7777) of a restored file; a new file is otherwise 0600, an existing one keeps its mode. */
  mode?: number;
  /** REF of the restore point whose disk the target holds: write only the slots whose ids differ. */
  onto?: string;
  /** With `onto`: `[LABEL=]FILE`, a CBT list of what the target wrote since; the slots it touches are written too. */
  changed?: string;
  /** Read the target, hash each slot, write only the slots that differ. */
  compare?: boolean;
  onProgress?: (done: number, total: number) => void;
}

export interface RestoreSummary {
  /** With --partial: ranges that could not be restored (left zero); empty otherwise. */
  unrestored: DamagedRange[];
  id: string;
  disk: string;
  target: string;
  size: number;
  /** full; onto (--onto, `onto` the known restore point's id); compare (--compare). */
  mode: 'full' | 'onto' | 'compare';
  onto: string | null;
  /** Bytes read from the target (--compare only). */
  bytesRead: number;
  /** Bytes written to the target, data and zeros; holes punched are not writes. */
  bytesWritten: number;
  /** Bytes of a file target made holes again (a slot that became zero). */
  bytesPunched: number;
  /** Slots written or punched. */
  slotsWritten: number;
  seconds: number;
}

/** What writing a disk did to the target. */
export type Written = Pick<RestoreSummary, 'bytesRead' | 'bytesWritten' | 'bytesPunched' | 'slotsWritten' | 'unrestored'>;

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
    const { diskOffset, length, id } = slotAt(map, slot, size, chunkSize);
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

export async function restore(store: Store, ref: string, target: string, options: RestoreOptions = {}): Promise<RestoreSummary> {
  const started = performance.now();
  return withPool(store, options.threads, async (pool) => {
    const { points, damaged } = await store.catalog.list();
    const point = resolveRef(points, ref, damaged);
    const disk = pickDisk(point, options.disk);
    const incremental = await checkIncremental(options, points, damaged, point, disk);
    const targetPath = resolve(target);
    const out = await openTarget(store, targetPath, disk.size);
    try {
      if (out.isDevice && options.mode !== undefined) throw new InvalidInputError(`--mode is for a file target; ${targetPath} is a block device (its mode is left alone); nothing was written`, { target: targetPath });
      if (incremental) requireRestoredTarget(out, targetPath, disk.size, incremental);
      const written = incremental ? await patchDisk(store, pool, point, disk, out, incremental, options) : await writeDisk(store, pool, point, disk, out, options);
      return { id: point.id, disk: disk.label, target: targetPath, size: disk.size, ...modeOf(incremental), ...written, seconds: (performance.now() - started) / 1000 };
    } finally {
      await out.release();
    }
  });
}

function modeOf(incremental: Incremental | null): Pick<RestoreSummary, 'mode' | 'onto'> {
  if (!incremental) return { mode: 'full', onto: null };
  return incremental.kind === 'onto' ? { mode: 'onto', onto: incremental.known.id } : { mode: 'compare', onto: null };
}

/** The restore proper, under the store's lock, onto a target already checked. */
async function writeDisk(store: Store, pool: WorkerPool, point: RestorePoint, disk: DiskEntry, out: Target, options: RestoreOptions): Promise<Written> {
  const partial = options.partial === true;
  return underRestoreLock(store, point, async () => {
    const map = await readListedMap(store, point, disk.label);
    const ids = uniqueIds(map);
    const refs = resolveRefs(point, disk, map, ids, await locateChunks(store, ids), partial);
    const { slots, missing } = restoreSlots(map, disk.size, point.chunkSize, refs, out.isDevice);
    if (!out.isDevice) await prepareFile(out, disk.size, options.mode);
    const unrestored = missing.map((slot) => ({ slot, problem: 'chunk missing from the index' }));
    let bytesWritten = 0;
    await pipeline(
      slotTasks(slots, point.chunkSize),
      pool.window,
      (batch) => pool.restore({ op: 'restore', target: out.path, slots: batch }).catch(targetFailed(out.path, 'writing')),
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
    const restoredSlots = slots.length + missing.length - unrestored.length;
    return { bytesRead: 0, bytesWritten, bytesPunched: 0, slotsWritten: restoredSlots, unrestored: unrestoredRanges(unrestored) };
  });
}

function unrestoredRanges(items: { slot: RestoreSlot; problem: string }[]): DamagedRange[] {
  const ranges: DamagedRange[] = [];
  for (const { slot, problem } of items.sort((a, b) => a.slot.diskOffset - b.slot.diskOffset)) appendRange(ranges, slot.diskOffset, slot.length, problem);
  return ranges;
}
