/** Messages between the main thread and pool workers. Pure data: structured-cloned or transferred. */
import type { Compression } from '../store/compression.js';
import type { StoreKeys } from '../store/crypto.js';

/** What a worker derives an encrypted store's keys from: sent with every task, as the backend is. */
export type KeySpec = Pick<StoreKeys, 'cipher' | 'master'>;

/** Bytes [at, at+length) of a chunk slot come from source offset `from`; the rest of the slot is zero. */
export interface SlotRead {
  at: number;
  from: number;
  length: number;
}

/** Bytes [at, at+length) of a chunk slot. */
export interface SlotRange {
  at: number;
  length: number;
}

export interface SlotPlan {
  slot: number;
  /** Slot length: chunkSize, or less for the last slot of a disk. */
  length: number;
  reads: SlotRead[];
  /** Present when the slot changed only in part: these bytes are the parent's chunk's, not read from the source. */
  keep?: SlotRange[];
}

export interface BackupTask {
  op: 'backup';
  path: string;
  slots: SlotPlan[];
  /** Parent's ids for these slots (32 bytes each), or empty: equal ids skip compression. */
  parentIds: Uint8Array | null;
  /** Per slot, for slots with `keep`: the parent's chunk, null for a zero chunk (null for the other slots). */
  parentChunks: (ChunkRef | null)[] | null;
  /** A spent result buffer handed back (transferred) for the output, when large enough. */
  out: ArrayBuffer | null;
  compression: Compression;
}

export enum SlotOutcome {
  Zero = 0,
  Record = 1,
  SameAsParent = 2,
}

export interface BackupSlotResult {
  slot: number;
  outcome: SlotOutcome;
  /** Where the slot's whole pack record (header and payload) starts in `buffer`. */
  recordOffset: number;
  recordLength: number;
}

export interface BackupResult {
  /** slots.length ids of 32 bytes, then the records. Transferred, not copied. */
  buffer: ArrayBuffer;
  slots: BackupSlotResult[];
  bytesRead: number;
  /** Pack records read for the parent's part of partly changed slots (headers included). */
  bytesReadFromStore: number;
  /** Slots whose parent chunk could not be read or failed its check: nothing of the task may be stored. */
  problems: ChunkProblem[];
  /** Source reads and their summed latency, timed in the worker where the read happens (throttling). */
  reads: number;
  readMs: number;
}

/** A chunk to fetch from a pack: offset is the record's start. */
export interface ChunkRef {
  pack: string;
  offset: number;
  storedLength: number;
  rawLength: number;
  id: Uint8Array;
}

export interface RestoreSlot {
  diskOffset: number;
  length: number;
  /** null: a zero slot, written only where the target cannot hold holes. */
  chunk: ChunkRef | null;
}

export interface RestoreTask {
  op: 'restore';
  target: string;
  slots: RestoreSlot[];
}

export interface ChunkProblem {
  index: number;
  problem: string;
}

export interface RestoreResult {
  bytesWritten: number;
  problems: ChunkProblem[];
}

/**
 * An incremental restore onto a target that already holds a disk: only the slots given are
 * written. `compare`: each slot is read from the target and hashed first, and left alone when
 * it already holds the slot's chunk (or zeros). `holes`: zero slots are not written but handed
 * back, for the caller to punch holes there (a file target).
 */
export interface PatchTask {
  op: 'patch';
  target: string;
  slots: RestoreSlot[];
  compare: boolean;
  holes: boolean;
}

export interface PatchResult {
  bytesRead: number;
  bytesWritten: number;
  /** Slots written, data or zeros; the holes are not among them. */
  slotsWritten: number;
  /** Indices of zero slots to punch holes at (with `holes`). */
  holes: number[];
  problems: ChunkProblem[];
}

export interface VerifyTask {
  op: 'verify';
  chunks: ChunkRef[];
}

export interface VerifyResult {
  problems: ChunkProblem[];
}

export interface DecodeTask {
  op: 'decode';
  chunks: ChunkRef[];
  /** Per chunk, a spent buffer handed back (transferred) to decode into, or null. */
  outs: (ArrayBuffer | null)[];
}

/** Where one decoded chunk's bytes are: at the start of a buffer of its own, transferred. */
export interface DecodedChunk {
  buffer: ArrayBuffer;
  length: number;
}

export interface DecodeResult {
  /** One per chunk, in order; empty (length 0) where the chunk has a problem. */
  chunks: DecodedChunk[];
  problems: ChunkProblem[];
}

export interface RecompressTask {
  op: 'recompress';
  /** Live records of one pack, each decoded and re-hashed before it is rewritten. */
  chunks: ChunkRef[];
  /** zstd at a level: what records that are neither zstd nor settled are tried with. */
  compression: Compression;
  /** The share (0-1) by which a zstd payload must be smaller than the stored one to replace it. */
  minGain: number;
  /** A spent result buffer handed back (transferred) for the output, when large enough. */
  out: ArrayBuffer | null;
}

export enum RecordOutcome {
  /** Stored anew with zstd. */
  Recompressed = 0,
  /** zstd did not gain enough: the record as it was, marked settled. */
  Settled = 1,
  /** Already zstd or settled: copied byte for byte. */
  Copied = 2,
}

export interface RecompressedRecord {
  outcome: RecordOutcome;
  /** Where the chunk's new whole record (header and payload) starts in `buffer`. */
  recordOffset: number;
  recordLength: number;
}

export interface RecompressResult {
  /** The new records, one per chunk in order (none where a chunk has a problem). Transferred, not copied. */
  buffer: ArrayBuffer;
  records: RecompressedRecord[];
  problems: ChunkProblem[];
}

/** Loads the worker's code (BLAKE3, LZ4) and does nothing else: see WorkerPool. */
export interface LoadTask {
  op: 'load';
}

export type Task = BackupTask | RestoreTask | PatchTask | VerifyTask | DecodeTask | RecompressTask | LoadTask;
