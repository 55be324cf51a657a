/**
 * Incremental restore onto a target that holds a disk already (desync's in-place mode):
 * `--onto KNOWN_REF` writes only the slots whose ids differ between the two maps, and those a
 * CBT list of the target's own writes since touches, reading nothing from the target;
 * `--compare` has the workers read and hash every slot of the target and writes only those
 * that differ. A rerun after a crash converges: every slot a killed run may have left half
 * way is one the rerun writes again (--onto) or finds differing (--compare).
 */
import { promises as fs } from 'node:fs';
import type { Store } from '../store/store.js';
import type { DiskEntry, RestorePoint } from '../store/catalog.js';
import { ID_BYTES, isZeroId } from '../store/chunk-id.js';
import { InvalidInputError, TargetError } from './errors.js';
import { parseChangedList } from './cbt.js';
import { crashPoint } from './crash.js';
import { damageAt } from './damage.js';
import { readInputFile } from './json-input.js';
import { locateChunks, uniqueIds } from './locate.js';
import { checkLabel } from './names.js';
import { mergeRanges, type Range } from './plan.js';
import { pipeline, type WorkerPool } from './pool.js';
import { punchHoles } from './punch-hole.js';
import { resolveRef } from './refs.js';
import { readListedMap, resolveRefs, slotAt, slotTasks, syncFile, targetFailed, underRestoreLock } from './restore-steps.js';
import type { RestoreOptions, Written } from './restore.js';
import type { Target } from './target.js';
import type { RestoreSlot } from './tasks.js';

/** An incremental restore, its inputs checked: onto a known restore point's disk (and a CBT list's ranges), or by comparing. */
export type Incremental = { kind: 'onto'; known: RestorePoint; changed: Range[] } | { kind: 'compare' };

/** The incremental restore the options ask for, everything it needs read and checked; null for a full restore. */
export async function checkIncremental(options: RestoreOptions, points: RestorePoint[], damaged: string[], point: RestorePoint, disk: DiskEntry): Promise<Incremental | null> {
  if (options.onto !== undefined && options.compare) {
    throw new InvalidInputError('--onto and --compare are two ways of restoring onto a disk the target holds; give one of them (nothing was written)', { flags: ['--onto', '--compare'] });
  }
  if (options.changed !== undefined && options.onto === undefined) {
    throw new InvalidInputError('--changed needs --onto KNOWN_REF: a changed-block list says what the target wrote since it held that restore point (nothing was written)', { flag: '--changed' });
  }
  const flag = options.compare ? '--compare' : options.onto !== undefined ? '--onto' : null;
  if (flag === null) return null;
  if (options.partial) {
    throw new InvalidInputError(`--partial is for a full restore, not with ${flag}: a slot left unrestored would hold neither disk, and a later ${flag} could not tell (nothing was written)`, { flag });
  }
  if (options.compare) return { kind: 'compare' };
  const known = knownPoint(points, damaged, options.onto!, point, disk);
  return { kind: 'onto', known, changed: options.changed === undefined ? [] : await changedRanges(options.changed, disk) };
}

/** KNOWN_REF, when the target can hold its disk: the same machine's, that disk, its size, its chunk layout. */
function knownPoint(points: RestorePoint[], damaged: string[], ref: string, point: RestorePoint, disk: DiskEntry): RestorePoint {
  const known = resolveRef(points, ref, damaged);
  const refuse = (why: string, data: Record<string, unknown>, instead = 'restore in full instead, or use --compare'): InvalidInputError =>
    new InvalidInputError(`--onto ${ref}: ${why}; ${instead} (nothing was written)`, { onto: known.id, restorePoint: point.id, ...data });
  if (known.name !== point.name) throw refuse(`restore point ${known.id} is of '${known.name}', ${point.id} of '${point.name}'`, { name: known.name });
  const knownDisk = known.disks.find((d) => d.label === disk.label);
  if (!knownDisk) throw refuse(`restore point ${known.id} has no disk '${disk.label}' (it has ${known.disks.map((d) => d.label).join(', ')})`, { disk: disk.label });
  if (knownDisk.size !== disk.size) throw refuse(`disk '${disk.label}' has ${knownDisk.size} bytes in ${known.id} and ${disk.size} in ${point.id}; a resized disk cannot be restored onto`, { knownSize: knownDisk.size, size: disk.size }, 'restore it in full instead');
  if (known.chunkSize !== point.chunkSize) throw refuse(`${known.id} has ${known.chunkSize}-byte chunks and ${point.id} ${point.chunkSize}-byte ones; their maps do not line up`, { knownChunkSize: known.chunkSize });
  return known;
}

/** `[LABEL=]FILE`: the CBT list of the disk restored, parsed by cbt.ts. */
async function changedRanges(spec: string, disk: DiskEntry): Promise<Range[]> {
  const eq = spec.indexOf('=');
  const label = eq > 0 ? checkLabel(spec.slice(0, eq)) : disk.label;
  const file = eq > 0 ? spec.slice(eq + 1) : spec;
  if (label !== disk.label) throw new InvalidInputError(`--changed ${spec}: this restore writes disk '${disk.label}', not '${label}' (nothing was written)`, { flag: '--changed', label });
  if (file === '') throw new InvalidInputError(`--changed ${spec} names no file`, { flag: '--changed' });
  return parseChangedList(await readInputFile(file, '--changed'), file, disk.size);
}

/**
 * An incremental restore writes onto what the target holds, so the target must be there, and
 * a file exactly the disk's size: it is never truncated, and bytes past the disk's end would
 * make it another disk. A device may be larger, as for a full restore (openTarget checked that).
 */
export function requireRestoredTarget(out: Target, target: string, size: number, incremental: Incremental): void {
  const flag = `--${incremental.kind}`;
  if (!out.exists) throw new TargetError(`target ${target} does not exist; ${flag} writes onto a disk restored before: restore in full to create it (nothing was written)`, { target, flag });
  if (!out.isDevice && out.bytes !== size) {
    throw new TargetError(`target ${target} has ${out.bytes} bytes and the disk ${size}; ${flag} writes onto a file of the disk's exact size and never truncates it: restore in full instead (nothing was written)`, {
      target,
      flag,
      bytes: out.bytes,
      size,
    });
  }
}

/** Slots whose ids differ between the maps, or that a changed range touches. */
export function differingSlots(map: Buffer, knownMap: Buffer, changed: Range[], chunkSize: number): number[] {
  const count = map.byteLength / ID_BYTES;
  const touched = new Uint8Array(count);
  for (const range of changed) touched.fill(1, Math.floor(range.offset / chunkSize), Math.floor((range.offset + range.length - 1) / chunkSize) + 1);
  const slots: number[] = [];
  for (let slot = 0; slot < count; slot++) {
    const at = slot * ID_BYTES;
    if (touched[slot] === 1 || map.compare(knownMap, at, at + ID_BYTES, at, at + ID_BYTES) !== 0) slots.push(slot);
  }
  return slots;
}

/** The chosen slots of `map` with their chunks located; a chunk the index lacks stops the restore. */
async function slotsToWrite(store: Store, point: RestorePoint, disk: DiskEntry, map: Buffer, chosen: number[]): Promise<RestoreSlot[]> {
  const ids = new Map<string, Buffer>();
  for (const slot of chosen) uniqueIds(slotAt(map, slot, disk.size, point.chunkSize).id, ids);
  const refs = resolveRefs(point, disk, map, ids, await locateChunks(store, ids), false);
  return chosen.map((slot) => {
    const { diskOffset, length, id } = slotAt(map, slot, disk.size, point.chunkSize);
    return { diskOffset, length, chunk: isZeroId(id) ? null : refs.get(id.toString('hex'))! };
  });
}

/** Zero slots of a file target become holes, as a full restore leaves them; zeros where its filesystem cannot punch holes. */
async function zeroSlots(pool: WorkerPool, path: string, slots: RestoreSlot[], chunkSize: number, written: Written): Promise<void> {
  written.slotsWritten += slots.length;
  if (await punchHoles(path, mergeRanges(slots.map((s) => ({ offset: s.diskOffset, length: s.length }))))) {
    written.bytesPunched += slots.reduce((sum, s) => sum + s.length, 0);
    return;
  }
  const results = await Promise.all(Array.from(slotTasks(slots, chunkSize), (batch) => pool.patch({ op: 'patch', target: path, slots: batch, compare: false, holes: false }).catch(targetFailed(path, 'writing'))));
  for (const result of results) written.bytesWritten += result.bytesWritten;
}

/** The incremental restore proper, under the store's lock, onto a target already checked. */
export async function patchDisk(store: Store, pool: WorkerPool, point: RestorePoint, disk: DiskEntry, out: Target, incremental: Incremental, options: RestoreOptions): Promise<Written> {
  return underRestoreLock(store, point, async () => {
    const map = await readListedMap(store, point, disk.label);
    const chosen =
      incremental.kind === 'onto'
        ? differingSlots(map, await readListedMap(store, incremental.known, disk.label), incremental.changed, point.chunkSize)
        : Array.from({ length: map.byteLength / ID_BYTES }, (_, slot) => slot);
    const slots = await slotsToWrite(store, point, disk, map, chosen);
    if (options.mode !== undefined) await fs.chmod(out.path, options.mode);
    const compare = incremental.kind === 'compare';
    const written: Written = { bytesRead: 0, bytesWritten: 0, bytesPunched: 0, slotsWritten: 0, unrestored: [] };
    const holes: RestoreSlot[] = [];
    await pipeline(
      slotTasks(slots, point.chunkSize),
      pool.window,
      (batch) => pool.patch({ op: 'patch', target: out.path, slots: batch, compare, holes: !out.isDevice }).catch(targetFailed(out.path, compare ? 'reading or writing' : 'writing')),
      async (result, batch) => {
        const [damaged] = result.problems;
        if (damaged) throw damageAt(point, disk.label, batch[damaged.index].diskOffset, damaged.problem);
        written.bytesRead += result.bytesRead;
        written.bytesWritten += result.bytesWritten;
        written.slotsWritten += result.slotsWritten;
        for (const index of result.holes) holes.push(batch[index]);
        crashPoint('restore-mid-write');
        options.onProgress?.(batch[batch.length - 1].diskOffset + batch[batch.length - 1].length, disk.size);
      },
    );
    await zeroSlots(pool, out.path, holes, point.chunkSize, written);
    await syncFile(out.path);
    return written;
  });
}
