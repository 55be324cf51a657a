/**
 * `<label>.qcow2` and `diff/<older>..<newer>/<label>.qcow2`: qcow2 version 3 images laid out
 * from a chunk map, so qemu sees what the map knows: clusters of zero chunks (or, in a diff,
 * of unchanged chunks) are unallocated and qemu skips them, which libfuse2 (no SEEK_HOLE)
 * cannot otherwise tell it.
 *
 * File layout, in clusters: header | L1 table | the L2 tables that map anything | refcount
 * table | refcount blocks | data clusters in slot order. Every cluster of the file is used
 * once (refcount 1, so every L1 and L2 entry carries the COPIED flag), nothing is leaked, and
 * `qemu-img check` is clean. Metadata is generated per read from per-L2-table counts and one
 * state byte per slot: a 16 TiB disk of 1 MiB chunks needs 16 MiB of state, never its tables.
 *
 * Cluster size: the chunk size, up to qcow2's largest cluster (2 MiB); a bigger chunk (the
 * store allows 4 and 8 MiB) spans several clusters, all allocated or none.
 */
import { bytesPiece, paddedSize, writeU64, type Piece, type ViewLayout } from './layout.js';

/** Per slot: unallocated (a hole, or the backing file's bytes), disk data, or a qcow2 zero cluster. */
export const SLOT_UNALLOCATED = 0;
export const SLOT_DATA = 1;
export const SLOT_ZERO = 2;

export const MAX_CLUSTER_BYTES = 2 * 1024 * 1024;
const MAGIC = 0x514649fb;
const HEADER_V3_BYTES = 104;
const BACKING_FORMAT_EXTENSION = 0xe2792aca;
/** 16-bit refcounts (refcount_order 4): the default, and plenty for refcounts that are all 1. */
const REFCOUNT_ORDER = 4;
const REFCOUNT_BYTES = 2;
/** L2 entry flag bit 0: the cluster reads as zeros (version 3). */
const ZERO_CLUSTER = 1;

export interface Backing {
  /** As qemu resolves it: relative to the directory of the qcow2 file. */
  file: string;
  format: string;
}

export interface Qcow2Input {
  diskSize: number;
  chunkSize: number;
  /** One of the SLOT_ states per slot of the disk. */
  states: Uint8Array;
  backing?: Backing;
}

const ceilDiv = (a: number, b: number): number => Math.ceil(a / b);

interface Region {
  start: number;
  end: number;
}

export class Qcow2Layout implements ViewLayout {
  readonly clusterSize: number;
  readonly virtualSize: number;
  private readonly clusterBits: number;
  private readonly clustersPerSlot: number;
  private readonly clusters: number;
  private readonly l2Entries: number;
  private readonly l1Entries: number;
  /** Per L2 table: data clusters mapped by the tables before it (one more entry: the total). */
  private readonly dataBefore: Float64Array;
  /** Per L2 table: its place among the tables in the file, or -1 when it maps nothing and is left out. */
  private readonly l2Index: Int32Array;
  /** Per table in the file, which L2 table it is. */
  private readonly presentTables: Int32Array;
  private readonly header: Buffer;
  private readonly l1: Region;
  private readonly l2: Region;
  private readonly refcountTable: Region;
  private readonly refcountBlocks: Region;
  private readonly data: Region;
  private readonly usedClusters: number;
  private lastL2: { table: number; bytes: Buffer } | null = null;
  private lastData: { table: number; clusters: Float64Array } | null = null;

  constructor(private readonly input: Qcow2Input) {
    const { diskSize, chunkSize, states } = input;
    this.clusterSize = Math.min(chunkSize, MAX_CLUSTER_BYTES);
    this.clusterBits = Math.log2(this.clusterSize);
    if (!Number.isInteger(this.clusterBits) || chunkSize % this.clusterSize !== 0) throw new Error(`qcow2 view: chunk size ${chunkSize} is not a power of two`);
    this.clustersPerSlot = chunkSize / this.clusterSize;
    this.virtualSize = paddedSize(diskSize);
    this.clusters = ceilDiv(this.virtualSize, this.clusterSize);
    this.l2Entries = this.clusterSize / 8;
    this.l1Entries = Math.max(1, ceilDiv(this.clusters, this.l2Entries));
    if (states.length !== ceilDiv(diskSize, chunkSize)) throw new Error(`qcow2 view: ${states.length} slot states for ${ceilDiv(diskSize, chunkSize)} slots`);

    this.dataBefore = new Float64Array(this.l1Entries + 1);
    this.l2Index = new Int32Array(this.l1Entries).fill(-1);
    const present: number[] = [];
    for (let table = 0; table < this.l1Entries; table++) {
      let data = 0;
      let mapsAnything = false;
      for (let slot = this.firstSlot(table); slot < this.endSlot(table); slot++) {
        if (states[slot] === SLOT_UNALLOCATED) continue;
        mapsAnything = true;
        if (states[slot] === SLOT_DATA) data += this.clustersOfSlot(slot);
      }
      this.dataBefore[table + 1] = this.dataBefore[table] + data;
      if (mapsAnything) this.l2Index[table] = present.push(table) - 1;
    }
    this.presentTables = Int32Array.from(present);

    const C = this.clusterSize;
    const l1Clusters = ceilDiv(this.l1Entries * 8, C);
    const dataClusters = this.dataBefore[this.l1Entries];
    const beforeRefcounts = 1 + l1Clusters + present.length;
    let tableClusters = 1;
    let blockClusters = 1;
    for (;;) {
      const total = beforeRefcounts + tableClusters + blockClusters + dataClusters;
      const blocks = ceilDiv(total, C / REFCOUNT_BYTES);
      const tables = ceilDiv(blocks * 8, C);
      if (blocks === blockClusters && tables === tableClusters) break;
      blockClusters = Math.max(blockClusters, blocks);
      tableClusters = Math.max(tableClusters, tables);
    }
    const region = (startCluster: number, clusters: number): Region => ({ start: startCluster * C, end: (startCluster + clusters) * C });
    this.l1 = region(1, l1Clusters);
    this.l2 = region(1 + l1Clusters, present.length);
    this.refcountTable = region(beforeRefcounts, tableClusters);
    this.refcountBlocks = region(beforeRefcounts + tableClusters, blockClusters);
    this.data = region(beforeRefcounts + tableClusters + blockClusters, dataClusters);
    this.usedClusters = this.data.end / C;
    this.header = this.buildHeader(tableClusters);
  }

  get size(): number {
    return this.data.end;
  }

  /** Data clusters in the file: what qemu reads of it. */
  get dataClusters(): number {
    return this.dataBefore[this.l1Entries];
  }

  pieces(offset: number, length: number): Piece[] {
    const end = Math.min(offset + length, this.size);
    const pieces: Piece[] = [];
    for (let at = offset; at < end; ) {
      const upto = Math.min(end, this.regionEnd(at));
      for (const piece of this.piecesIn(at, upto)) pushMerged(pieces, piece);
      at = upto;
    }
    return pieces;
  }

  private regionEnd(at: number): number {
    for (const region of [this.l1, this.l2, this.refcountTable, this.refcountBlocks, this.data]) if (at < region.start) return region.start;
    return this.size;
  }

  private piecesIn(from: number, end: number): Piece[] {
    if (from < this.l1.start) return [bytesPiece(this.header, 0, from, end - from)];
    if (from < this.l1.end) return [entries(this.l1.start, 8, from, end, (into, i, at) => this.writeL1Entry(into, i, at))];
    if (from < this.l2.end) return this.l2Pieces(from, end);
    if (from < this.refcountTable.end) return [entries(this.refcountTable.start, 8, from, end, (into, i, at) => this.writeRefcountTableEntry(into, i, at))];
    if (from < this.refcountBlocks.end) {
      return [entries(this.refcountBlocks.start, REFCOUNT_BYTES, from, end, (into, i, at) => into.writeUInt16BE(i < this.usedClusters ? 1 : 0, at))];
    }
    return this.dataPieces(from, end);
  }

  private buildHeader(refcountTableClusters: number): Buffer {
    const header = Buffer.alloc(this.clusterSize);
    header.writeUInt32BE(MAGIC, 0);
    header.writeUInt32BE(3, 4);
    header.writeUInt32BE(this.clusterBits, 20);
    writeU64(header, this.virtualSize, 24);
    header.writeUInt32BE(this.l1Entries, 36);
    writeU64(header, this.l1.start, 40);
    writeU64(header, this.refcountTable.start, 48);
    header.writeUInt32BE(refcountTableClusters, 56);
    header.writeUInt32BE(REFCOUNT_ORDER, 96);
    header.writeUInt32BE(HEADER_V3_BYTES, 100);
    let at = HEADER_V3_BYTES;
    const backing = this.input.backing;
    if (backing) {
      const format = Buffer.from(backing.format);
      header.writeUInt32BE(BACKING_FORMAT_EXTENSION, at);
      header.writeUInt32BE(format.byteLength, at + 4);
      format.copy(header, at + 8);
      at += 8 + ceilDiv(format.byteLength, 8) * 8;
    }
    at += 8; // the end-of-extensions marker: type 0, length 0
    if (backing) {
      const name = Buffer.from(backing.file);
      writeU64(header, at, 8);
      header.writeUInt32BE(name.byteLength, 16);
      name.copy(header, at);
    }
    return header;
  }

  private writeL1Entry(into: Buffer, table: number, at: number): void {
    const index = table < this.l1Entries ? this.l2Index[table] : -1;
    if (index >= 0) writeU64(into, this.l2.start + index * this.clusterSize, at, true);
  }

  private writeRefcountTableEntry(into: Buffer, block: number, at: number): void {
    if (block < (this.refcountBlocks.end - this.refcountBlocks.start) / this.clusterSize) writeU64(into, this.refcountBlocks.start + block * this.clusterSize, at);
  }

  private l2Pieces(from: number, end: number): Piece[] {
    const pieces: Piece[] = [];
    for (let at = from; at < end; ) {
      const index = Math.floor((at - this.l2.start) / this.clusterSize);
      const start = this.l2.start + index * this.clusterSize;
      const upto = Math.min(end, start + this.clusterSize);
      pieces.push(bytesPiece(this.l2Table(this.presentTables[index]), start, at, upto - at));
      at = upto;
    }
    return pieces;
  }

  /** One L2 table, generated from the slot states; the last one is kept for the reads that follow. */
  private l2Table(table: number): Buffer {
    if (this.lastL2?.table === table) return this.lastL2.bytes;
    const bytes = Buffer.alloc(this.clusterSize);
    let data = this.dataBefore[table];
    const first = table * this.l2Entries;
    for (let cluster = first; cluster < Math.min(this.clusters, first + this.l2Entries); cluster++) {
      const state = this.input.states[Math.floor(cluster / this.clustersPerSlot)];
      const at = (cluster - first) * 8;
      if (state === SLOT_DATA) writeU64(bytes, this.data.start + data++ * this.clusterSize, at, true);
      else if (state === SLOT_ZERO) writeU64(bytes, ZERO_CLUSTER, at);
    }
    this.lastL2 = { table, bytes };
    return bytes;
  }

  private dataPieces(from: number, end: number): Piece[] {
    const pieces: Piece[] = [];
    for (let at = from; at < end; ) {
      const index = Math.floor((at - this.data.start) / this.clusterSize);
      const within = at - this.data.start - index * this.clusterSize;
      const upto = Math.min(end, at - within + this.clusterSize);
      const diskAt = this.virtualClusterOf(index) * this.clusterSize + within;
      const inDisk = Math.max(0, Math.min(upto - at, this.input.diskSize - diskAt));
      if (inDisk > 0) pieces.push({ kind: 'disk', at: diskAt, length: inDisk });
      if (upto - at > inDisk) pieces.push({ kind: 'zeros', length: upto - at - inDisk });
      at = upto;
    }
    return pieces;
  }

  /** Which cluster of the disk the `index`th data cluster of the file holds. */
  private virtualClusterOf(index: number): number {
    let low = 0;
    let high = this.l1Entries - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if (this.dataBefore[mid] <= index) low = mid;
      else high = mid - 1;
    }
    return this.dataClustersOf(low)[index - this.dataBefore[low]];
  }

  private dataClustersOf(table: number): Float64Array {
    if (this.lastData?.table === table) return this.lastData.clusters;
    const clusters = new Float64Array(this.dataBefore[table + 1] - this.dataBefore[table]);
    let n = 0;
    for (let slot = this.firstSlot(table); slot < this.endSlot(table); slot++) {
      if (this.input.states[slot] !== SLOT_DATA) continue;
      for (let c = 0; c < this.clustersOfSlot(slot); c++) clusters[n++] = slot * this.clustersPerSlot + c;
    }
    this.lastData = { table, clusters };
    return clusters;
  }

  private firstSlot(table: number): number {
    return (table * this.l2Entries) / this.clustersPerSlot;
  }

  private endSlot(table: number): number {
    return Math.min(this.input.states.length, ((table + 1) * this.l2Entries) / this.clustersPerSlot);
  }

  private clustersOfSlot(slot: number): number {
    return Math.min(this.clusters, (slot + 1) * this.clustersPerSlot) - slot * this.clustersPerSlot;
  }
}

/** Bytes [from, end) of a table of fixed-size entries starting at `start`; `write` fills entry i. */
function entries(start: number, entryBytes: number, from: number, end: number, write: (into: Buffer, i: number, at: number) => void): Piece {
  const first = Math.floor((from - start) / entryBytes);
  const last = Math.ceil((end - start) / entryBytes);
  const bytes = Buffer.alloc((last - first) * entryBytes);
  for (let i = first; i < last; i++) write(bytes, i, (i - first) * entryBytes);
  const skip = from - start - first * entryBytes;
  return { kind: 'bytes', data: bytes.subarray(skip, skip + end - from) };
}

/** Consecutive disk ranges become one piece, so a long read of the file is few disk reads. */
function pushMerged(pieces: Piece[], piece: Piece): void {
  const last = pieces[pieces.length - 1];
  if (last?.kind === 'disk' && piece.kind === 'disk' && last.at + last.length === piece.at) last.length += piece.length;
  else pieces.push(piece);
}
