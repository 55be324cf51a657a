/**
 * The engine's public face: what the CLI, the FUSE mount, benchmarks and tests call.
 * Validates user input before anything is written; internals trust their arguments.
 */
import { Store } from '../store/store.js';
import { DEFAULT_CHUNK_SIZE, parseChunkSize } from '../store/format.js';
import type { RestorePoint } from '../store/catalog.js';
import { backup, type BackupProgress } from './backup.js';
import { wholeDisk } from './plan.js';
import { openSources } from './source.js';
import { checkName, parseTime } from './names.js';

export { Store } from '../store/store.js';
export { restore, type RestoreOptions, type RestoreSummary } from './restore.js';
export { verify, type VerifyReport, type VerifyOptions } from './verify.js';
export { stats, type StoreStats } from './stats.js';
export { resolveRef } from './refs.js';
export type { BackupProgress } from './backup.js';
export type { RestorePoint } from '../store/catalog.js';
export * from './errors.js';

export async function initStore(dir: string, chunkSize?: string): Promise<Store> {
  return Store.init(dir, chunkSize === undefined ? DEFAULT_CHUNK_SIZE : parseChunkSize(chunkSize));
}

export function openStore(dir: string): Promise<Store> {
  return Store.open(dir);
}

export interface BackupRequest {
  sources: string[];
  name?: string;
  time?: string;
  threads?: number;
  onProgress?: (progress: BackupProgress) => void;
}

export interface BackupReport {
  id: string;
  name: string;
  time: string;
  disks: { label: string; size: number }[];
  bytesRead: number;
  bytesNew: number;
  chunksTotal: number;
  chunksNew: number;
  chunksZero: number;
  seconds: number;
}

export function backupReport(point: RestorePoint): BackupReport {
  return { id: point.id, name: point.name, time: point.time, disks: point.disks, ...point.stats };
}

export async function runBackup(store: Store, request: BackupRequest): Promise<BackupReport> {
  const time = request.time === undefined ? new Date().toISOString() : parseTime(request.time);
  const sources = await openSources(request.sources);
  const name = checkName(request.name ?? sources[0].label);
  const disks = sources.map((s) => ({ label: s.label, path: s.path, layout: wholeDisk(s.size, store.chunkSize), parentMap: null }));
  const point = await backup(store, disks, { name, time, kind: 'full', parent: null, threads: request.threads, onProgress: request.onProgress });
  return backupReport(point);
}

export interface ListEntry {
  id: string;
  name: string;
  time: string;
  disks: { label: string; size: number }[];
  held: boolean;
  bytesNew: number;
}

export async function listRestorePoints(store: Store): Promise<ListEntry[]> {
  const { points } = await store.catalog.list();
  return points.map((p) => ({ id: p.id, name: p.name, time: p.time, disks: p.disks, held: p.hold !== null, bytesNew: p.stats.bytesNew }));
}
