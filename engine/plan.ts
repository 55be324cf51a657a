/**
 * Turns a disk's layout into chunk slots: which bytes each slot reads from the source,
 * which slots are zero without reading, and which reuse the parent's chunk unread.
 */
import type { SlotPlan, SlotRange, SlotRead } from './tasks.js';

/**
 * Changed bytes of a partly changed slot are read rounded out to this: the block size of the
 * filesystems and devices CBT lists come from, below which a device reads no less anyway.
 */
export const READ_ALIGN = 4096;
/**
 * A partly changed slot is read whole unless reading only its changed blocks spares at least
 * this share of the slot from the source. The production storage the source lives on is what
 * this spares; taking the rest from the parent costs a pack read on the store and, in a
 * worker, an LZ4 decode and a BLAKE3 check of the parent's chunk. Measured on the VM bench
 * disk (3 GiB ext4, its day of changes as a 64 KiB CBT list, 1 MiB slots, source and store
 * on one disk, both cold): 168 MB read from the source and 188 MB from packs in 2.6-2.8 s,
 * against 535 MB from the source in 3.1-3.5 s reading touched slots whole; with the source
 * warm in the page cache the whole reads win (2.0 s against 2.7 s), as copying cached pages
 * costs less than any pack read. So source bytes decide, and only a slot changed almost
 * entirely is read whole, which costs at most 1/15 more source bytes than its changed blocks.
 */
export const MIN_SPARED_SHARE = 1 / 16;

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
  /**
   * The source holds the disk's bytes only within `changed` (a recovery session's delta: its other
   * blocks are holes): a partly changed slot always takes the rest from the parent's chunk.
   */
  changedOnly?: boolean;
}

/** Consecutive slots decided without reading: zero, or the parent's ids. */
export interface UnreadRun {
  kind: 'zero' | 'parent';
  first: number;
  count: number;
}

export type SlotAction = { kind: 'read'; plan: SlotPlan } | UnreadRun;

export function wholeDisk(size: number, chunkSize: number): DiskLayout {
  return { size, chunkSize, extents: size > 0 ? [{ offset: 0, length: size, from: 0 }] : [], changed: null };
}

const end = (r: Range): number => r.offset + r.length;

/** Sorted copy in which overlapping or touching ranges are one. */
export function mergeRanges(ranges: Range[]): Range[] {
  const merged: Range[] = [];
  for (const r of [...ranges].sort((a, b) => a.offset - b.offset)) {
    const last = merged[merged.length - 1];
    if (last && r.offset <= end(last)) last.length = Math.max(end(last), end(r)) - last.offset;
    else merged.push({ offset: r.offset, length: r.length });
  }
  return merged;
}

/**
 * Bytes a CBT source reports discarded (`rbd diff` `exists: false`, thin_delta `left_only`)
 * or that `--skip-file` leaves out: zero in the backup, never read. They leave the extents
 * (so no read covers them) and join the changed ranges (so the parent's bytes there are not
 * kept); with no CBT list every slot is read anyway.
 */
export function discardRanges(layout: DiskLayout, discarded: Range[]): DiskLayout {
  const gone = mergeRanges(discarded);
  if (gone.length === 0) return layout;
  const extents: Extent[] = [];
  let g = 0;
  for (const extent of layout.extents) {
    let at = extent.offset;
    while (g < gone.length && end(gone[g]) <= at) g++;
    for (let k = g; k < gone.length && gone[k].offset < end(extent); k++) {
      if (gone[k].offset > at) extents.push({ offset: at, length: gone[k].offset - at, from: extent.from + (at - extent.offset) });
      at = Math.max(at, end(gone[k]));
    }
    if (at < end(extent)) extents.push({ offset: at, length: end(extent) - at, from: extent.from + (at - extent.offset) });
  }
  return { ...layout, extents, changed: layout.changed === null ? null : mergeRanges([...layout.changed, ...gone]) };
}

/**
 * When a disk grew or shrank since its parent, the slots from the one holding the smaller
 * end (a partial chunk in one of the two) to the child's end hold other bytes than the
 * parent's ids describe: they must be read whatever the CBT list says.
 */
export function resizedRange(parentSize: number, size: number, chunkSize: number): Range | null {
  if (parentSize === size) return null;
  const common = Math.min(parentSize, size);
  const from = common - (common % chunkSize);
  return from < size ? { offset: from, length: size - from } : null;
}

/** The source reads of slot [start, stop): the parts of the extents from `e` on that lie in it, at slot offsets. */
function extentReads(extents: Extent[], e: number, start: number, stop: number): SlotRead[] {
  const reads: SlotRead[] = [];
  for (let k = e; k < extents.length && extents[k].offset < stop; k++) {
    const from = Math.max(start, extents[k].offset);
    const to = Math.min(stop, end(extents[k]));
    if (to > from) reads.push({ at: from - start, from: extents[k].from + (from - extents[k].offset), length: to - from });
  }
  return reads;
}

/** The changed ranges from `c` on that touch slot [start, stop), at slot offsets, rounded out to READ_ALIGN and clamped to the slot. */
function changedBlocks(changed: Range[], c: number, start: number, stop: number): Range[] {
  const blocks: Range[] = [];
  for (let k = c; k < changed.length && changed[k].offset < stop; k++) {
    const from = Math.max(start, changed[k].offset - (changed[k].offset % READ_ALIGN));
    const to = Math.min(stop, Math.ceil(end(changed[k]) / READ_ALIGN) * READ_ALIGN);
    if (to > from) blocks.push({ offset: from - start, length: to - from });
  }
  return mergeRanges(blocks);
}

/** A read cut to slot bytes [from, to), which must lie within it. */
function cutRead(read: SlotRead, from: number, to: number): SlotRead {
  return { at: from, from: read.from + (from - read.at), length: to - from };
}

/**
 * Splits a slot's extent reads by its changed blocks: the changed parts are read from the
 * source, the others are the parent's (by the CBT list, the source holds the parent's bytes
 * there). Bytes outside every extent stay zero either way.
 */
function splitByChanges(reads: SlotRead[], blocks: Range[]): { reads: SlotRead[]; keep: SlotRange[] } {
  const split = { reads: [] as SlotRead[], keep: [] as SlotRange[] };
  let b = 0;
  for (const read of reads) {
    let at = read.at;
    const stop = read.at + read.length;
    while (b < blocks.length && end(blocks[b]) <= at) b++;
    for (let k = b; k < blocks.length && blocks[k].offset < stop && at < stop; k++) {
      if (blocks[k].offset > at) split.keep.push({ at, length: blocks[k].offset - at });
      const to = Math.min(stop, end(blocks[k]));
      split.reads.push(cutRead(read, Math.max(at, blocks[k].offset), to));
      at = to;
    }
    if (at < stop) split.keep.push({ at, length: stop - at });
  }
  return split;
}

const sum = (ranges: { length: number }[]): number => ranges.reduce((s, r) => s + r.length, 0);

/**
 * The plan of a slot a changed range touches: only its changed blocks read, the rest from the
 * parent's chunk, unless that spares too little of the source (MIN_SPARED_SHARE). Every slot a
 * CBT layout reads partly lies within the parent's disk: resizedRange marks the slots past
 * the common part changed whole.
 */
function changedSlotPlan(slot: number, length: number, reads: SlotRead[], blocks: Range[], changedOnly: boolean): SlotPlan {
  const split = splitByChanges(reads, blocks);
  const spared = sum(reads) - sum(split.reads);
  if (!changedOnly && spared < length * MIN_SPARED_SHARE) return { slot, length, reads };
  return { slot, length, reads: split.reads, keep: split.keep };
}

/**
 * Walks slots in order with two cursors over extents and changed ranges. Slots without
 * data are zero (the layout knows those bytes are zero: cheaper and truer than any parent
 * id); slots with data that touch no changed range reuse the parent's id; slots partly
 * changed read their changed blocks and take the rest from the parent's chunk. Runs of
 * unread slots are yielded whole, so the cost is O(read slots + extents + changed ranges):
 * a 1 TiB sparse disk plans as fast as its data.
 */
export function* planSlots(layout: DiskLayout): Generator<SlotAction> {
  const { size, chunkSize, extents, changed } = layout;
  const slots = Math.ceil(size / chunkSize);
  const runTo = (slot: number, boundary: number): number => Math.min(slots, Math.max(slot + 1, boundary));
  let e = 0;
  let c = 0;
  for (let slot = 0; slot < slots; ) {
    const start = slot * chunkSize;
    const stop = Math.min(start + chunkSize, size);
    while (e < extents.length && end(extents[e]) <= start) e++;
    if (e >= extents.length || extents[e].offset >= stop) {
      const next = runTo(slot, e < extents.length ? Math.floor(extents[e].offset / chunkSize) : slots);
      yield { kind: 'zero', first: slot, count: next - slot };
      slot = next;
      continue;
    }
    if (changed) {
      while (c < changed.length && end(changed[c]) <= start) c++;
      if (c >= changed.length || changed[c].offset >= stop) {
        const nextChange = c < changed.length ? Math.floor(changed[c].offset / chunkSize) : slots;
        const next = runTo(slot, Math.min(nextChange, Math.ceil(end(extents[e]) / chunkSize)));
        yield { kind: 'parent', first: slot, count: next - slot };
        slot = next;
        continue;
      }
    }
    const reads = extentReads(extents, e, start, stop);
    const plan = changed ? changedSlotPlan(slot, stop - start, reads, changedBlocks(changed, c, start, stop), layout.changedOnly === true) : { slot, length: stop - start, reads };
    yield { kind: 'read', plan };
    slot++;
  }
}

export type WorkUnit = SlotPlan[] | UnreadRun;

/**
 * Groups read slots into tasks of `slotsPerTask` (each task must be worth its ~30 us
 * overhead and the main thread's lookups per result), also across unread runs: the scattered
 * slots a CBT list touches still make full tasks, whose slots need not be consecutive.
 * Unread runs are yielded as they come, adjacent ones of a kind merged.
 */
export function* groupTasks(actions: Iterable<SlotAction>, slotsPerTask: number): Generator<WorkUnit> {
  let reads: SlotPlan[] = [];
  let unread: UnreadRun | null = null;
  for (const action of actions) {
    if (action.kind === 'read') {
      reads.push(action.plan);
      if (reads.length >= slotsPerTask) {
        yield reads;
        reads = [];
      }
    } else if (unread && unread.kind === action.kind && unread.first + unread.count === action.first) {
      unread.count += action.count;
    } else {
      if (unread) yield unread;
      unread = { ...action };
    }
  }
  if (reads.length > 0) yield reads;
  if (unread) yield unread;
}
