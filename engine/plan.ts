/**
 * Turns a disk's layout into chunk slots: which bytes each slot reads from the source,
 * which slots are zero without reading, and which reuse the parent's chunk unread.
 */
import type { SlotPlan, SlotRead } from './tasks.js';

/** Disk bytes [offset, offset+length) hold data read from source offset `from`. */
export interface Extent {
  offset: number;
  length: number;
  from: number;
}

export interface Range {
  offset: number;
  length: number;
}

export interface DiskLayout {
  size: number;
  chunkSize: number;
  /** Sorted, non-overlapping. Bytes outside every extent are zero and never read. */
  extents: Extent[];
  /** Sorted changed ranges (CBT); slots touching none reuse the parent's id unread. null: read all. */
  changed: Range[] | null;
}

export type SlotAction = { kind: 'read'; plan: SlotPlan } | { kind: 'zero'; slot: number } | { kind: 'parent'; slot: number };

export function wholeDisk(size: number, chunkSize: number): DiskLayout {
  return { size, chunkSize, extents: size > 0 ? [{ offset: 0, length: size, from: 0 }] : [], changed: null };
}

/** Walks slots in order with two cursors over extents and changed ranges: O(slots + extents). */
export function* planSlots(layout: DiskLayout): Generator<SlotAction> {
  const { size, chunkSize, extents, changed } = layout;
  let e = 0;
  let c = 0;
  for (let slot = 0, start = 0; start < size; slot++, start += chunkSize) {
    const end = Math.min(start + chunkSize, size);
    if (changed) {
      while (c < changed.length && changed[c].offset + changed[c].length <= start) c++;
      if (c >= changed.length || changed[c].offset >= end) {
        yield { kind: 'parent', slot };
        continue;
      }
    }
    while (e < extents.length && extents[e].offset + extents[e].length <= start) e++;
    const reads: SlotRead[] = [];
    for (let k = e; k < extents.length && extents[k].offset < end; k++) {
      const from = Math.max(start, extents[k].offset);
      const to = Math.min(end, extents[k].offset + extents[k].length);
      if (to > from) reads.push({ at: from - start, from: extents[k].from + (from - extents[k].offset), length: to - from });
    }
    yield reads.length === 0 ? { kind: 'zero', slot } : { kind: 'read', plan: { slot, length: end - start, reads } };
  }
}

/** Consecutive slots decided without reading: zero, or the parent's ids. */
export interface UnreadRun {
  kind: 'zero' | 'parent';
  first: number;
  count: number;
}

export type WorkUnit = SlotPlan[] | UnreadRun;

/**
 * Groups consecutive read slots into tasks of `slotsPerTask` (each task must be worth its
 * ~30 us overhead) and consecutive unread slots of one kind into runs.
 */
export function* groupTasks(actions: Iterable<SlotAction>, slotsPerTask: number): Generator<WorkUnit> {
  let reads: SlotPlan[] = [];
  let unread: UnreadRun | null = null;
  for (const action of actions) {
    if (action.kind === 'read') {
      if (unread) yield unread;
      unread = null;
      reads.push(action.plan);
      if (reads.length >= slotsPerTask) {
        yield reads;
        reads = [];
      }
      continue;
    }
    if (reads.length > 0) yield reads;
    reads = [];
    if (unread && unread.kind === action.kind) unread.count++;
    else {
      if (unread) yield unread;
      unread = { kind: action.kind, first: action.slot, count: 1 };
    }
  }
  if (reads.length > 0) yield reads;
  if (unread) yield unread;
}
