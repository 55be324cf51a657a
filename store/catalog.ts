/**
 * The catalog of restore points: one small JSON file per restore point, written last
 * (after packs, index and maps are durable), so a restore point that is listed is complete.
 * Plain files, not LevelDB, so a mount can watch for new restore points while a backup
 * holds the index. In an encrypted store each file is its JSON sealed (crypto.ts), bound to
 * the restore point's id.
 */
import { randomBytes } from 'node:crypto';
import { MAX_CHUNK_SIZE, MIN_CHUNK_SIZE } from './format.js';
import { RestorePointExistsError, SealBrokenError, storeReadError, type StoreReadError } from './errors.js';
import type { Sealer } from './crypto.js';
import { objectName, type Backend } from './backend/backend.js';

export type BackupKind = 'full' | 'cbt' | 'extents';

export interface DiskEntry {
  label: string;
  size: number;
}

export interface Hold {
  reason: string;
  since: string;
}

export interface BackupStats {
  bytesRead: number;
  bytesNew: number;
  chunksTotal: number;
  chunksNew: number;
  chunksZero: number;
  seconds: number;
  /** Time source reads were held back by --max-latency / --max-rate; absent in points made before throttling. */
  secondsThrottled?: number;
  /** Pack bytes read for the parent's part of partly changed slots; absent in points made before sub-chunk reads. */
  bytesReadFromStore?: number;
  /** Bytes of --skip-file files backed up as zeros, unread; absent in points made before --skip-file. */
  bytesSkipped?: number;
}

export interface RestorePoint {
  id: string;
  name: string;
  /** When the snapshot was taken: what retention uses. */
  time: string;
  created: string;
  chunkSize: number;
  kind: BackupKind;
  parent: string | null;
  disks: DiskEntry[];
  hold: Hold | null;
  stats: BackupStats;
}

const SUFFIX = '.json';
const ID_PATTERN = /^[0-9a-f]{16}$/;
/** Labels become file names in maps/ and the mount: a safe alphabet. */
export const LABEL_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** Names group restore points and become a directory of the mount. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._@:+-]{0,127}$/;
/** Times as toISOString writes them: they become directory names of the mount. */
export const TIME_PATTERN = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
/** 1 PiB: far beyond any virtual disk, and small enough that every slot count is exact. */
export const MAX_DISK_BYTES = 2 ** 50;
const KINDS: readonly string[] = ['full', 'cbt', 'extents'] satisfies BackupKind[];
const STAT_FIELDS = ['bytesRead', 'bytesNew', 'chunksTotal', 'chunksNew', 'chunksZero', 'seconds'] as const;

export function isRestorePointId(text: string): boolean {
  return ID_PATTERN.test(text);
}

/** Ids sort by creation: 6 bytes of milliseconds, 2 random bytes. */
export function newRestorePointId(now = Date.now()): string {
  return now.toString(16).padStart(12, '0').slice(-12) + randomBytes(2).toString('hex');
}

export function encodeRestorePoint(point: RestorePoint): string {
  return JSON.stringify(point, null, 2) + '\n';
}

type Fields = Record<string, unknown>;

const isObject = (v: unknown): v is Fields => typeof v === 'object' && v !== null && !Array.isArray(v);
const isCount = (v: unknown, max = Number.MAX_SAFE_INTEGER): boolean => Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) <= max;
const isTime = (v: unknown): boolean => typeof v === 'string' && TIME_PATTERN.test(v) && !Number.isNaN(Date.parse(v));
const isChunkSize = (v: unknown): boolean => isCount(v, MAX_CHUNK_SIZE) && (v as number) >= MIN_CHUNK_SIZE && ((v as number) & ((v as number) - 1)) === 0;

function disksProblem(disks: unknown): string | null {
  if (!Array.isArray(disks) || disks.length === 0) return 'disks';
  const labels = new Set<string>();
  for (const disk of disks as unknown[]) {
    if (!isObject(disk) || typeof disk.label !== 'string' || !LABEL_PATTERN.test(disk.label) || labels.has(disk.label)) return 'disk label';
    if (!isCount(disk.size, MAX_DISK_BYTES)) return `disk ${disk.label} size`;
    labels.add(disk.label);
  }
  return null;
}

function holdProblem(hold: unknown): string | null {
  if (hold === null) return null;
  return isObject(hold) && typeof hold.reason === 'string' && typeof hold.since === 'string' ? null : 'hold';
}

function statsProblem(stats: unknown): string | null {
  if (!isObject(stats)) return 'stats';
  const bad = STAT_FIELDS.find((f) => typeof stats[f] !== 'number' || !Number.isFinite(stats[f]) || (stats[f] as number) < 0);
  return bad ? `stats.${bad}` : null;
}

/**
 * The first field of an entry that fails validation, or null. Every value that later sizes
 * a loop, names a file or becomes a path in the mount is checked here, once.
 */
function entryProblem(p: Fields, fileId: string): string | null {
  if (typeof p.id !== 'string' || !ID_PATTERN.test(p.id)) return 'id';
  if (p.id !== fileId) return `id ${p.id} is not the file's name`;
  if (typeof p.name !== 'string' || !NAME_PATTERN.test(p.name) || p.name.includes('@latest')) return 'name';
  if (!isTime(p.time)) return 'time';
  if (!isTime(p.created)) return 'created';
  if (!isChunkSize(p.chunkSize)) return 'chunkSize';
  if (typeof p.kind !== 'string' || !KINDS.includes(p.kind)) return 'kind';
  if (p.parent !== null && (typeof p.parent !== 'string' || !ID_PATTERN.test(p.parent))) return 'parent';
  return disksProblem(p.disks) ?? holdProblem(p.hold) ?? statsProblem(p.stats);
}

/** The entry stored as `<fileId>.json`, or why it cannot be trusted. */
export function decodeRestorePoint(text: string, fileId: string): RestorePoint | { problem: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { problem: 'not valid JSON' };
  }
  if (!isObject(parsed)) return { problem: 'not an object' };
  const problem = entryProblem(parsed, fileId);
  return problem ? { problem: `invalid ${problem}` } : (parsed as unknown as RestorePoint);
}

/** A catalog file that is there but cannot be trusted: reported, never taken for absent. */
export interface DamagedEntry {
  /** The file's name without .json: the id it claims, or whatever a stray file is called. */
  id: string;
  problem: string;
}

/** What a sealed entry is bound to: its kind and its restore point's id. */
function entryAd(id: string): Buffer {
  return Buffer.from(`chunkvault catalog ${id}`);
}

/** Read at most this many entries at once: thousands list quickly, and a low descriptor limit is not hit. */
const READ_CONCURRENCY = 16;
const PREFIX = 'catalog/';

export class Catalog {
  constructor(
    private readonly backend: Backend,
    /** An encrypted store's sealer: each entry is sealed, bound to its restore point's id, so one copied over another does not open. */
    private readonly sealer: Sealer | null = null,
  ) {}

  /** An entry's stored bytes: its JSON, sealed in an encrypted store. */
  private encode(point: RestorePoint): Buffer {
    const text = Buffer.from(encodeRestorePoint(point));
    return this.sealer ? this.sealer.seal(text, entryAd(point.id)) : text;
  }

  /** The entry stored as `<id>.json`, or why it cannot be trusted. */
  private decode(bytes: Buffer, id: string): RestorePoint | { problem: string } {
    if (!this.sealer) return decodeRestorePoint(bytes.toString('utf8'), id);
    try {
      return decodeRestorePoint(this.sealer.open(bytes, entryAd(id)).toString('utf8'), id);
    } catch (err) {
      if (err instanceof SealBrokenError) return { problem: 'sealed entry does not open' };
      throw err;
    }
  }

  private keyOf(id: string): string {
    return PREFIX + id + SUFFIX;
  }

  private readError(key: string, err: unknown): StoreReadError {
    return storeReadError(objectName(this.backend, key), err);
  }

  /** The entries' names: dot-names are temp files of interrupted writes, not entries. */
  private async names(): Promise<string[]> {
    const objects = await this.backend.list(PREFIX).catch((err: unknown) => {
      throw this.readError(PREFIX, err);
    });
    return objects.map((o) => o.key.slice(PREFIX.length)).filter((n) => n.endsWith(SUFFIX) && !n.startsWith('.') && !n.includes('/'));
  }

  /** The bytes of entries `names`; null for one removed meanwhile (absent); any other error stops the listing. */
  private async readAll(names: string[]): Promise<(Buffer | null)[]> {
    const texts: (Buffer | null)[] = new Array(names.length).fill(null);
    let next = 0;
    const reader = async (): Promise<void> => {
      for (let i = next++; i < names.length; i = next++) {
        const key = PREFIX + names[i];
        const bytes = await this.backend.get(key).catch((err: unknown) => {
          throw this.readError(key, err);
        });
        texts[i] = bytes;
      }
    };
    await Promise.all(Array.from({ length: Math.min(READ_CONCURRENCY, names.length) }, reader));
    return texts;
  }

  /**
   * Newest first by snapshot time, then by id. Entries that cannot be trusted are reported
   * in `damaged`, not hidden; a listing or an entry that cannot be read stops the listing.
   */
  async list(): Promise<{ points: RestorePoint[]; damaged: string[]; problems: DamagedEntry[] }> {
    const names = await this.names();
    const texts = await this.readAll(names);
    const points: RestorePoint[] = [];
    const problems: DamagedEntry[] = [];
    texts.forEach((text, i) => {
      if (text === null) return; // removed while listing
      const id = names[i].slice(0, -SUFFIX.length);
      const point = this.decode(text, id);
      if ('problem' in point) problems.push({ id, problem: point.problem });
      else points.push(point);
    });
    points.sort((a, b) => b.time.localeCompare(a.time) || b.id.localeCompare(a.id));
    return { points, damaged: problems.map((p) => p.id), problems };
  }

  /** Whether the entry of `id` is absent: true only when the backend says so; any other failure to tell is an error. */
  async isAbsent(id: string): Promise<boolean> {
    const key = this.keyOf(id);
    try {
      return (await this.backend.stat(key)) === null;
    } catch (err) {
      throw this.readError(key, err);
    }
  }

  /**
   * Makes a new restore point visible: a conditional create, so that two writers of one id
   * cannot overwrite each other; the entry already there is left as it is.
   */
  async commit(point: RestorePoint): Promise<void> {
    if (!(await this.backend.create(this.keyOf(point.id), this.encode(point)))) {
      throw new RestorePointExistsError(`restore point ${point.id} already exists in ${objectName(this.backend, PREFIX)}; nothing was overwritten: run the backup again`, { restorePoint: point.id });
    }
  }

  /** Replaces the entry of an existing restore point (a hold, a release). */
  async put(point: RestorePoint): Promise<void> {
    await this.backend.put(this.keyOf(point.id), this.encode(point));
  }

  async remove(id: string): Promise<void> {
    await this.backend.delete([this.keyOf(id)]);
  }
}
