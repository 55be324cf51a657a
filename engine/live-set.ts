/**
 * The set of chunk ids gc must keep, built from chunk maps at tens of millions of ids per
 * second: an open-addressing hash table of each id's first 8 bytes in a flat Uint32Array,
 * with no per-id allocation. Two ids sharing their first 8 bytes make one look live when
 * it is not: gc then keeps a dead chunk, the safe direction; it never loses a live one.
 */
import { endianness } from 'node:os';
import { ID_BYTES, isZeroId } from '../store/chunk-id.js';

const EMPTY = 0;
const MAX_LOAD = 0.5;
/** Maps are read as native 32-bit words; single ids must be read the same way. */
const NATIVE_LE = endianness() === 'LE';

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

  /**
   * Adds every non-zero id of a chunk map (32 bytes per slot). `neighbour`, an already
   * added map of the same disk in an adjacent restore point, lets unchanged slots skip the
   * table: successive restore points of a disk share most of their ids.
   */
  addMap(map: Buffer, neighbour: Buffer | null = null): void {
    const words = wordsOf(map);
    const before = neighbour ? wordsOf(neighbour) : new Uint32Array(0);
    const slots = Math.floor(map.byteLength / ID_BYTES);
    for (let slot = 0, w = 0; slot < slots; slot++, w += ID_BYTES / 4) {
      const low = words[w];
      const high = words[w + 1];
      if (w + 1 < before.length && before[w] === low && before[w + 1] === high && (low !== EMPTY || high !== EMPTY)) continue;
      if (low === EMPTY && high === EMPTY) {
        if (!isZeroId(map.subarray(slot * ID_BYTES, (slot + 1) * ID_BYTES))) this.zeroPrefixLive = true;
        continue;
      }
      this.insert(low, high);
    }
    this.refs += slots;
  }

  has(id: Buffer): boolean {
    const low = NATIVE_LE ? id.readUInt32LE(0) : id.readUInt32BE(0);
    const high = NATIVE_LE ? id.readUInt32LE(4) : id.readUInt32BE(4);
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

/** The map as native 32-bit words (copied once when its bytes are not 4-aligned). */
function wordsOf(map: Buffer): Uint32Array {
  const bytes = map.byteOffset % 4 === 0 ? map : Buffer.from(map);
  return new Uint32Array(bytes.buffer, bytes.byteOffset, Math.floor(bytes.byteLength / 4));
}
