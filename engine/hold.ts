/** Holds: a held restore point is never removed by prune and takes no slot in any rule. */
import type { Store } from '../store/store.js';
import type { RestorePoint } from '../store/catalog.js';
import { InvalidInputError } from './errors.js';
import { resolveRef } from './refs.js';

const MAX_REASON = 500;

export interface HoldReport {
  id: string;
  name: string;
  time: string;
  hold: RestorePoint['hold'];
  /** False when the restore point already was in the requested state. */
  changed: boolean;
}

function checkReason(reason: string): string {
  if (reason.length > MAX_REASON || /[\x00-\x1f\x7f]/.test(reason)) {
    throw new InvalidInputError(`--reason: at most ${MAX_REASON} characters on one line`, { reason });
  }
  return reason;
}

/**
 * The entry is rewritten whole, so a prune removing it meanwhile would see it written back: the
 * point is pinned before its entry is read again, and a prune that removes the entry after the
 * pin keeps its maps (see executePrune), so what is written back is a whole restore point.
 */
async function setHold(store: Store, ref: string, hold: (point: RestorePoint) => RestorePoint['hold']): Promise<HoldReport> {
  const { id } = resolveRef((await store.catalog.list()).points, ref);
  const lock = await store.lock(`hold ${id}`, { pins: [id] });
  try {
    const point = resolveRef((await store.catalog.list()).points, id);
    const next = hold(point);
    const changed = JSON.stringify(next) !== JSON.stringify(point.hold);
    if (changed) await store.catalog.put({ ...point, hold: next });
    return { id: point.id, name: point.name, time: point.time, hold: next, changed };
  } finally {
    await lock.release();
  }
}

/** Holds a restore point; holding it again replaces the reason when one is given, and keeps since. */
export async function hold(store: Store, ref: string, reason?: string): Promise<HoldReport> {
  if (reason !== undefined) checkReason(reason);
  return setHold(store, ref, (point) => ({ reason: reason ?? point.hold?.reason ?? '', since: point.hold?.since ?? new Date().toISOString() }));
}

export function release(store: Store, ref: string): Promise<HoldReport> {
  return setHold(store, ref, () => null);
}
