/** Slot states of the qcow2 views, from chunk maps (32-byte id per slot). */
import { ID_BYTES, isZeroId } from '../../store/chunk-id.js';
import { slotId } from '../../store/chunk-map.js';
import { SLOT_DATA, SLOT_UNALLOCATED, SLOT_ZERO } from './qcow2.js';

/** A disk on its own: its zero chunks are holes, everything else is data. */
export function fullStates(map: Buffer): Uint8Array {
  const states = new Uint8Array(map.byteLength / ID_BYTES);
  for (let slot = 0; slot < states.length; slot++) if (!isZeroId(slotId(map, slot))) states[slot] = SLOT_DATA;
  return states;
}

/**
 * The newer disk over the older as backing file: unchanged slots are left to the backing
 * file, a slot that became zero is a zero cluster, any other change is data.
 */
export function diffStates(older: Buffer, newer: Buffer): Uint8Array {
  if (older.byteLength !== newer.byteLength) throw new Error(`diff of maps of ${older.byteLength} and ${newer.byteLength} bytes`);
  const states = new Uint8Array(newer.byteLength / ID_BYTES);
  for (let slot = 0; slot < states.length; slot++) {
    const id = slotId(newer, slot);
    if (id.equals(slotId(older, slot))) states[slot] = SLOT_UNALLOCATED;
    else states[slot] = isZeroId(id) ? SLOT_ZERO : SLOT_DATA;
  }
  return states;
}
