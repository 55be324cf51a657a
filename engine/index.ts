/**
 * The engine's public face: what the CLI, the FUSE mount, benchmarks and tests call.
 * Validates user input before anything is written; internals trust their arguments.
 */
import { Store } from '../store/store.js';
import { backendAt, type S3Access } from '../store/backend/open.js';
import { DEFAULT_CHUNK_SIZE, parseChunkSize } from '../store/format.js';
import { CIPHERS, DEFAULT_CIPHER, isCipher, type Cipher } from '../store/crypto.js';
import { checkPassword } from '../store/keys.js';
import { InvalidInputError, PasswordRequiredError } from './errors.js';
import { DEFAULT_COMPRESSION, parseCompression } from '../store/compression.js';
import type { BackupKind, BackupStats, DamagedEntry, RestorePoint } from '../store/catalog.js';
import { backup, type BackupProgress } from './backup.js';
import { WorkerPool } from './pool.js';
import { prepareDisks, type LayoutOptions, type PreparedBackup } from './layout.js';
import { prepareSessionBackup } from './session/backup-session.js';
import { throttleLimits } from './throttle.js';
import { openSources } from './source.js';
import { checkName, parseTime } from './names.js';
import { checkSpace, diskNeed, estimateBackupBytes } from './space.js';

export { Store } from '../store/store.js';
export { restore, type RestoreOptions, type RestoreSummary } from './restore.js';
export { verify, type VerifyReport, type VerifyOptions } from './verify.js';
export { stats, type StoreStats } from './stats.js';
export { repair, type RepairReport } from './repair.js';
export { resolveRef } from './refs.js';
export { planPrune, executePrune, type PrunePlan, type PruneOptions } from './prune.js';
export { applyRetention, parseDuration, type RetentionPolicy, type RetentionDecision } from './retention.js';
export { hold, release, type HoldReport } from './hold.js';
export { configureStore, parseRecompression, DEFAULT_RECOMPRESS_AGE, type StoreSettings, type SettingsChange } from './config.js';
export { parseAge } from './age.js';
export { gc, planGc, executeGc, previewGc, parseMaxUnused, recompressOrder, DEFAULT_MAX_UNUSED_PERCENT, type GcOptions, type GcPlan, type GcReport, type RecompressionReport } from './gc.js';
export { checkSpace, estimateBackupBytes, diskNeed, freeBytes, type DiskNeed, type SpaceCheck } from './space.js';
export type { BackupProgress } from './backup.js';
export { fileExtentMap, type FileExtentMap } from './extents.js';
export { listContents, type PointContents, type DiskContents, type PartitionContents, type ContentsProblem } from './disk-contents.js';
export { probeFilesystem, identifyFilesystem, type FilesystemInfo, type FilesystemProbe } from './filesystems.js';
export { readPartitionTable, type Partition, type PartitionTable } from './partitions.js';
export type { RestorePoint, DamagedEntry } from '../store/catalog.js';
export { listSessions, describeSession, sessionAt, SESSION_BLOCK_BYTES, type SessionListing, type SessionRecord, type SessionRequest } from './session/session.js';
export type { HydrationProgress } from './session/hydrate.js';
export { listKeys, addPassword, removeKey, changePassword, exportKey, addPasswordFromExport, type KeyInfo, type NewPassword } from './keys.js';
export * from './errors.js';

/** How to reach a store: its S3 endpoint and region (when it is s3://), and this host's cache directory for its index. */
export interface StoreAccess extends S3Access {
  cacheDir?: string;
  /** An encrypted store's passphrase, asked for only when the store is one. */
  password?: () => Promise<string>;
}

/** `--encryption`: a cipher, `none`, or true for the flag without a value (DEFAULT_CIPHER). */
function parseEncryption(text: string | true): Cipher | null {
  if (text === true) return DEFAULT_CIPHER;
  if (text === 'none') return null;
  if (isCipher(text)) return text;
  throw new InvalidInputError(`--encryption: '${text}' is not one of ${[...CIPHERS, 'none'].join(', ')}`, { value: text });
}

/** The passphrase an encrypted store is created with, from the caller; before anything is written. */
async function initPassword(location: string, access: StoreAccess): Promise<string> {
  if (!access.password) throw new PasswordRequiredError(`init of an encrypted store ${location} needs a passphrase (CHUNKVAULT_PASSWORD, --password-file, or a terminal)`, { store: location });
  const password = await access.password();
  checkPassword(password);
  return password;
}

/** `location` is a directory or `s3://BUCKET/PREFIX`; `encryption` a cipher, true for the default one, or `none` (the default). */
export async function initStore(location: string, chunkSize?: string, compression?: string, access: StoreAccess = {}, encryption: string | true = 'none'): Promise<Store> {
  const size = chunkSize === undefined ? DEFAULT_CHUNK_SIZE : parseChunkSize(chunkSize);
  const codec = compression === undefined ? DEFAULT_COMPRESSION : parseCompression(compression, '--compression');
  const cipher = parseEncryption(encryption);
  const request = cipher === null ? undefined : { cipher, password: await initPassword(location, access) };
  return Store.init(backendAt(location, access), size, codec, { cacheDir: access.cacheDir, encryption: request });
}

export function openStore(location: string, access: StoreAccess = {}): Promise<Store> {
  return Store.open(backendAt(location, access), { cacheDir: access.cacheDir, password: access.password });
}

export interface BackupRequest extends LayoutOptions {
  sources: string[];
  name?: string;
  time?: string;
  threads?: number;
  /** Hold reads back when the source's read latency rises above this. */
  maxLatencyMs?: number;
  /** Cap on the source read rate, in MB/s (10^6 bytes). */
  maxRateMBps?: number;
  /** Start even when the space pre-flight says the store's filesystem may be too small. */
  force?: boolean;
  /** `lz4`, `none`, `zstd` or `zstd:LEVEL`; the store's default when absent. */
  compression?: string;
  onProgress?: (progress: BackupProgress) => void;
  /** A stopped recovery session's directory: back up what its guest wrote, on the session's restore point. */
  session?: string;
}

export interface BackupReport extends BackupStats {
  id: string;
  name: string;
  time: string;
  kind: BackupKind;
  parent: string | null;
  disks: { label: string; size: number }[];
  secondsThrottled: number;
  /** What the inputs held that the backup ignored (unknown keys of a CBT list...). */
  warnings: string[];
  bytesReadFromStore: number;
  bytesSkipped: number;
}

export function backupReport(point: RestorePoint, warnings: string[]): BackupReport {
  return {
    id: point.id,
    name: point.name,
    time: point.time,
    kind: point.kind,
    parent: point.parent,
    disks: point.disks,
    ...point.stats,
    secondsThrottled: point.stats.secondsThrottled ?? 0,
    bytesReadFromStore: point.stats.bytesReadFromStore ?? 0,
    bytesSkipped: point.stats.bytesSkipped ?? 0,
    warnings,
  };
}

/** What a backup reads: its sources, or a stopped recovery session's writes (named as its restore point by default). */
async function prepareBackup(store: Store, request: BackupRequest): Promise<{ name: string; prepared: PreparedBackup }> {
  if (request.session === undefined) {
    const sources = await openSources(request.sources);
    const name = checkName(request.name ?? sources[0].label);
    return { name, prepared: await prepareDisks(store, sources, name, request) };
  }
  checkSessionRequest(request);
  const prepared = await prepareSessionBackup(store, request.session);
  return { name: checkName(request.name ?? prepared.parent!.name), prepared };
}

/** A session names the source, the parent and the changed blocks itself. */
function checkSessionRequest(request: BackupRequest): void {
  const clash = [
    request.sources.length > 0 && 'SOURCE',
    request.parent !== undefined && '--parent/--no-parent',
    (request.changed ?? []).length > 0 && '--changed',
    (request.extents ?? []).length > 0 && '--extents',
    (request.skipFiles ?? []).length > 0 && '--skip-file',
  ].filter((x): x is string => x !== false);
  if (clash.length > 0) throw new InvalidInputError(`--from-session takes its disk, parent and changed blocks from the session: drop ${clash.join(', ')}`, { flags: clash });
}

export async function runBackup(store: Store, request: BackupRequest): Promise<BackupReport> {
  const time = request.time === undefined ? new Date().toISOString() : parseTime(request.time);
  // Workers take ~50 ms to load their native modules: let that overlap the planning below.
  const pool = new WorkerPool(store.backend, request.threads, store.keys);
  try {
    const throttle = throttleLimits(request.maxLatencyMs, request.maxRateMBps);
    const compression = request.compression === undefined ? store.compression : parseCompression(request.compression, '--compression');
    const { name, prepared } = await prepareBackup(store, request);
    const { disks, kind, parent, implicitParent, warnings } = prepared;
    await checkSpace(store, estimateBackupBytes(disks.map((d) => diskNeed(d.layout)), store.chunkSize, parent), request.force === true);
    if (compression.codec === 'zstd') await store.allowVersion2Records();
    const point = await backup(store, disks, { name, time, kind, parent, implicitParent, pool, throttle, compression, onProgress: request.onProgress });
    return backupReport(point, warnings);
  } finally {
    await pool.close();
  }
}

export interface ListEntry {
  id: string;
  name: string;
  time: string;
  disks: { label: string; size: number }[];
  held: boolean;
  /** Why and since when it is held (see hold), or null. */
  hold: RestorePoint['hold'];
  bytesNew: number;
  kind: BackupKind;
  parent: string | null;
}

/** Restore points newest first, and the catalog entries that cannot be trusted (never hidden). */
export async function listRestorePoints(store: Store): Promise<{ points: ListEntry[]; damaged: DamagedEntry[] }> {
  const { points, problems } = await store.catalog.list();
  return {
    points: points.map((p) => ({ id: p.id, name: p.name, time: p.time, disks: p.disks, held: p.hold !== null, hold: p.hold, bytesNew: p.stats.bytesNew, kind: p.kind, parent: p.parent })),
    damaged: problems,
  };
}
