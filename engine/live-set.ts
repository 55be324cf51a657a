/**
 * The set of chunk ids gc must keep, built from chunk maps at tens of millions of ids per
 * second: an open-addressing hash table of each id's first 8 bytes in a flat Uint32Array,
 * with no per-id allocation. Two ids sharing their first 8 bytes make one look live when
 * it is not: gc then keeps a dead chunk, the safe direction; it never loses a live one.
 */
import { ID_BYTES, isZeroId } from '../store/chunk-id.js';

const EMPTY = 0;
const MAX_LOAD = 0.5;

export class LiveSet {
  /** Pairs (low, high) of each id's first 8 bytes; (0, 0) marks an empty slot. */
  private table = new Uint32Array(2 * 1024);
  private count = 0;
  /** An id whose first 8 bytes are zero cannot sit in the table; the zero id itself is never live. */
  private zeroPrefixLive = false;
  /** Map slots read so far, zero slots included: the mark rate's numerator. */
  refs = 0;

  get size(): number {
    return this.count + (this.zeroPrefixLive ? 1 : 0);
  }

  /** Adds every non-zero id of a chunk map (32 bytes per slot). */
  addMap(map: Buffer): void {
    const slots = Math.floor(map.byteLength / ID_BYTES);
    for (let slot = 0, at = 0; slot < slots; slot++, at += ID_BYTES) {
      const low = map.readUInt32LE(at);
      const high = map.readUInt32LE(at + 4);
      if (low === EMPTY && high === EMPTY) {
        if (!isZeroId(map.subarray(at, at + ID_BYTES))) this.zeroPrefixLive = true;
        continue;
      }
      this.insert(low, high);
    }
    this.refs += slots;
  }

  has(id: Buffer): boolean {
    const low = id.readUInt32LE(0);
    const high = id.readUInt32LE(4);
    if (low === EMPTY && high === EMPTY) return this.zeroPrefixLive && !isZeroId(id);
    const mask = this.table.length / 2 - 1;
    for (let i = low & mask; ; i = (i + 1) & mask) {
      const l = this.table[2 * i];
      const h = this.table[2 * i + 1];
      if (l === low && h === high) return true;
      if (l === EMPTY && h === EMPTY) return false;
    }
  }

  private insert(low: number, high: number): void {
    if (this.count + 1 > (this.table.length / 2) * MAX_LOAD) this.grow();
    const table = this.table;
    const mask = table.length / 2 - 1;
    // Ids are BLAKE3 output: their low word is already uniformly spread.
    for (let i = low & mask; ; i = (i + 1) & mask) {
      const l = table[2 * i];
      const h = table[2 * i + 1];
      if (l === low && h === high) return;
      if (l === EMPTY && h === EMPTY) {
        table[2 * i] = low;
        table[2 * i + 1] = high;
        this.count++;
        return;
      }
    }
  }

  private grow(): void {
    const old = this.table;
    this.table = new Uint32Array(old.length * 2);
    this.count = 0;
    for (let i = 0; i < old.length; i += 2) if (old[i] !== EMPTY || old[i + 1] !== EMPTY) this.insert(old[i], old[i + 1]);
  }
}
