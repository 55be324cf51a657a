/**
 * A store and its parts. Engine code reaches packs, index, catalog and maps only through this
 * object, never through paths of its own; every object but the index (a host's own) lives
 * behind `backend`.
 */
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { ChunkvaultError, StoreExistsError, InvalidInputError, PasswordRequiredError, StoreNotWritableError } from './errors.js';
import { FORMAT_FILE, FORMAT_VERSION, encodeFormat, newFormat, readFormat, storeId, writeFormat, type StoreFormat } from './format.js';
import { DEFAULT_COMPRESSION, type Compression } from './compression.js';
import { Catalog, newRestorePointId } from './catalog.js';
import { ChunkIndex } from './index-db.js';
import { MAP_SUFFIX, ChunkMapWriter, readChunkMap } from './chunk-map.js';
import { PackWriter, packKey, packOfKey } from './pack.js';
import { acquireLock, describeLocks, listLocks, type HeldLock, type LockInfo, type LockOptions } from './lock.js';
import { errnoOf, storeReadError } from './errors.js';
import { objectName, type Backend, type ObjectInfo } from './backend/backend.js';
import { FsBackend } from './backend/fs.js';
import { syncIndex } from './index-cache.js';
import { newMasterKey, storeKeys, type Cipher, type StoreKeys } from './crypto.js';
import { addKey, unlockMaster, type ScryptParams } from './keys.js';

const PARTS = ['packs', 'index', 'catalog', 'maps', 'locks'] as const;
/** Where temp files of interrupted writes can be: beside catalog entries, maps and locks. */
const TMP_PREFIXES = ['catalog/', 'maps/', 'locks/'] as const;
const TMP_SUFFIX = '.tmp';

export interface StoreOptions {
  /** Where this host keeps the store's index when the store is not a local directory (default: defaultCacheDir). */
  cacheDir?: string;
  /** The passphrase of an encrypted store, asked for only when the store is one. */
  password?: () => Promise<string>;
}

/** `init` of an encrypted store: its AEAD and the first passphrase that wraps its new master key. */
export interface EncryptionRequest {
  cipher: Cipher;
  password: string;
  scrypt?: ScryptParams;
}

/** `${XDG_CACHE_HOME:-~/.cache}/chunkvault/<store id>`: one per store, whatever its location. */
export function defaultCacheDir(id: string, env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CACHE_HOME || join(env.HOME ?? homedir(), '.cache'), 'chunkvault', id);
}

/** A directory becomes its local backend; a backend is used as it is. */
function backendOf(backendOrDir: Backend | string): Backend {
  return typeof backendOrDir === 'string' ? new FsBackend(backendOrDir) : backendOrDir;
}

/** The index lives beside a local store, else in the cache directory the caller names or the store's default one. */
function indexDirOf(backend: Backend, options: StoreOptions, format: StoreFormat): string {
  if (options.cacheDir !== undefined) return resolve(options.cacheDir);
  if (backend.localDir !== null) return join(backend.localDir, 'index');
  return defaultCacheDir(storeId(format, backend.location));
}

/** An encrypted store's keys, from the passphrase; none for a plain store, which never asks for one. */
async function unlock(backend: Backend, format: StoreFormat, options: StoreOptions): Promise<StoreKeys | null> {
  if (!format.encryption) return null;
  if (!options.password) throw new PasswordRequiredError(`${backend.location} is encrypted: give its passphrase (CHUNKVAULT_PASSWORD, --password-file, or a terminal)`, { store: backend.location });
  const { master } = await unlockMaster(backend, await options.password());
  return storeKeys(format.encryption.cipher, master);
}

/** Hidden among a point's maps (labels never start with a dot). */
const CLAIM_OBJECT = '.claim';

function mapsPrefix(pointId: string): string {
  return `maps/${pointId}/`;
}
/**
 * Space set aside so that gc can always start on a full filesystem: taking its lock and opening
 * LevelDB (a new manifest and log, a flushed table) write before anything is freed.
 */
const RESERVE_FILE = 'reserve';
export const RESERVE_BYTES = 8 * 1024 * 1024;

export class Store {
  readonly catalog: Catalog;

  private constructor(
    /** Where every object of the store lives (see backend/backend.ts). */
    readonly backend: Backend,
    private current: StoreFormat,
    /** This host's LevelDB index of the store's chunks. */
    readonly indexDir: string,
    /** An encrypted store's keys, null for a plain store. */
    readonly keys: StoreKeys | null,
  ) {
    this.catalog = new Catalog(backend, keys?.sealer ?? null);
  }

  /** Where the store is, for messages: a directory, or s3://bucket/prefix. */
  get location(): string {
    return this.backend.location;
  }

  /** The store's directory when it is a local one (free space, the reserve, targets inside it), else null. */
  get localDir(): string | null {
    return this.backend.localDir;
  }

  get format(): StoreFormat {
    return this.current;
  }

  get chunkSize(): number {
    return this.current.chunkSize;
  }

  /** What backups compress with by default. */
  get compression(): Compression {
    return this.current.compression ?? DEFAULT_COMPRESSION;
  }

  /**
   * Changes the store's settings (the format file, written whole). A version 1 store becomes
   * version 2 here: also before its first zstd record (see allowZstd).
   */
  async configure(settings: Pick<StoreFormat, 'compression' | 'recompress'>): Promise<void> {
    const next: StoreFormat = { ...this.current, ...settings, version: Math.max(this.current.version, FORMAT_VERSION) };
    await writeFormat(this.backend, next);
    this.current = next;
  }

  /** Before the first record that needs format version 2: older chunkvaults then refuse the store instead of misreading it. */
  async allowVersion2Records(): Promise<void> {
    if (this.current.version < FORMAT_VERSION) await this.configure({});
  }

  static async init(
    backendOrDir: Backend | string,
    chunkSize: number,
    compression: Compression = DEFAULT_COMPRESSION,
    options: StoreOptions & { encryption?: EncryptionRequest } = {},
  ): Promise<Store> {
    const backend = backendOf(backendOrDir);
    const root = backend.location;
    const [format, occupied] = await Promise.all([backend.stat(FORMAT_FILE), isOccupied(backend)]).catch((err: unknown) => {
      // What the backend already named (no bucket, refused credentials, no answer) stays that.
      throw err instanceof ChunkvaultError ? err : storeReadError(root, err);
    });
    if (format) throw new StoreExistsError(`${root} is already a chunkvault store`, { store: root });
    if (occupied) {
      const need = backend.localDir === null ? 'holds something that is not a chunkvault store; init needs an empty prefix' : 'is not empty; init needs an empty or new directory';
      throw new InvalidInputError(`${root} ${need}`, { store: root });
    }
    if (backend instanceof FsBackend) await backend.makeRoot(PARTS);
    if (backend.localDir !== null) await backend.put(RESERVE_FILE, Buffer.alloc(RESERVE_BYTES));
    const { encryption } = options;
    if (encryption) await addKey(backend, newMasterKey(), encryption.password, encryption.scrypt);
    // The format file is written last: a store without it is not a store yet.
    if (!(await backend.create(FORMAT_FILE, Buffer.from(encodeFormat(newFormat(chunkSize, new Date(), compression, encryption?.cipher ?? null)))))) {
      throw new StoreExistsError(`${root} is already a chunkvault store`, { store: root });
    }
    const password = encryption ? () => Promise.resolve(encryption.password) : options.password;
    return Store.open(backend, { ...options, password });
  }

  static async open(backendOrDir: Backend | string, options: StoreOptions = {}): Promise<Store> {
    const backend = backendOf(backendOrDir);
    const format = await readFormat(backend);
    return new Store(backend, format, indexDirOf(backend, options, format), await unlock(backend, format, options));
  }

  /** Every pack with its size and mtime (when it was last written: gc recompresses packs by age). */
  async listPacks(): Promise<{ name: string; size: number; mtimeMs: number }[]> {
    const objects = await this.backend.list('packs/').catch((err: unknown) => {
      throw storeReadError(`${this.backend.location}/packs`, err);
    });
    const packs = [];
    for (const { key, size, mtimeMs } of objects) {
      const name = packOfKey(key);
      if (name !== null) packs.push({ name, size, mtimeMs });
    }
    return packs;
  }

  /** Packs it writes end in record tables: the first one upgrades the store to the format version that has them. */
  newPackWriter(cap?: number): PackWriter {
    return new PackWriter(this.backend, cap, () => this.allowVersion2Records());
  }

  /**
   * A new restore point id that no other writer holds. Map objects are written in place, so two
   * backups drawing the same id (same millisecond, same random bytes) would overwrite each
   * other's maps before the catalog's conditional create refused the second: the id is claimed
   * first with a conditional create of its own, in its maps prefix (gc removes it with the maps
   * of a backup that never committed).
   */
  async claimRestorePointId(now = Date.now()): Promise<string> {
    for (;;) {
      const id = newRestorePointId(now);
      if (await this.backend.create(mapsPrefix(id) + CLAIM_OBJECT, Buffer.alloc(0))) return id;
    }
  }

  createMapWriter(pointId: string, label: string, slots: number): Promise<ChunkMapWriter> {
    return ChunkMapWriter.create(this.backend, mapsPrefix(pointId) + label + MAP_SUFFIX, slots, this.keys?.sealer ?? null);
  }

  /** A disk's map; with `slots`, a map of any other length is damage (DamagedDataError). */
  readMap(pointId: string, label: string, slots?: number): Promise<Buffer> {
    return readChunkMap(this.backend, mapsPrefix(pointId) + label + MAP_SUFFIX, slots, this.keys?.sealer ?? null);
  }

  /** Deletes every object of a restore point's maps, temp files of its writers too. */
  async removeMaps(pointId: string): Promise<void> {
    await this.backend.delete((await this.listObjects(mapsPrefix(pointId))).map((o) => o.key));
  }

  /** Restore point ids that have maps, committed or not, with the time their newest map object was written. */
  async listMapDirs(): Promise<{ id: string; mtimeMs: number }[]> {
    const newest = new Map<string, number>();
    for (const { key, mtimeMs } of await this.listObjects('maps/')) {
      const id = key.split('/')[1];
      if (key.split('/').length === 3) newest.set(id, Math.max(newest.get(id) ?? -Infinity, mtimeMs));
    }
    return [...newest].map(([id, mtimeMs]) => ({ id, mtimeMs }));
  }

  /** Disk labels of the committed maps of a restore point; none when it has no maps. */
  async listMapLabels(pointId: string): Promise<string[]> {
    const names = (await this.listObjects(mapsPrefix(pointId))).map((o) => o.key.slice(mapsPrefix(pointId).length));
    return names.filter((n) => n.endsWith(MAP_SUFFIX) && !n.startsWith('.') && !n.includes('/')).map((n) => n.slice(0, -MAP_SUFFIX.length));
  }

  /** The objects below `prefix`; a listing that fails is an error naming what failed (the directory, for a local store), else the prefix. */
  private listObjects(prefix: string): Promise<ObjectInfo[]> {
    return this.backend.list(prefix).catch((err: unknown) => {
      throw storeReadError((err as NodeJS.ErrnoException).path ?? objectName(this.backend, prefix), err);
    });
  }

  /** Deletes packs for good: the deletions survive power loss once this returns. */
  async deletePacks(packs: string[]): Promise<void> {
    await this.backend.delete(packs.map(packKey));
  }

  /** Gives the reserved space back to the filesystem; false when there was none (or the store is not local). */
  async releaseReserve(): Promise<boolean> {
    if (!(await this.reserveInfo())) return false;
    await this.backend.delete([RESERVE_FILE]);
    return true;
  }

  /** Sets the reserve aside again, unless it is there; a filesystem too full for it is left as it is. No reserve when the store is not local. */
  async restoreReserve(): Promise<boolean> {
    if (this.localDir === null) return false;
    if (await this.reserveInfo()) return true;
    try {
      await this.backend.put(RESERVE_FILE, Buffer.alloc(RESERVE_BYTES));
      return true;
    } catch (err) {
      if (errnoOf(err) !== 'ENOSPC') throw err;
      await this.backend.delete([RESERVE_FILE]);
      return false;
    }
  }

  private async reserveInfo(): Promise<ObjectInfo | null> {
    if (this.localDir === null) return null;
    return this.backend.stat(RESERVE_FILE).catch((err: unknown) => {
      throw storeReadError(objectName(this.backend, RESERVE_FILE), err);
    });
  }

  /** Temp files of interrupted durable writes (catalog entries, maps, locks). */
  async tmpFiles(): Promise<ObjectInfo[]> {
    const found = [];
    for (const prefix of TMP_PREFIXES) found.push(...(await this.listObjects(prefix)).filter((o) => isTmpKey(o.key)));
    return found;
  }

  removeTmpFiles(keys: string[]): Promise<void> {
    return this.backend.delete(keys);
  }

  /** Bytes of every object of the store (and of a local store's index). */
  async diskUsage(): Promise<number> {
    return (await this.listObjects('')).reduce((sum, o) => sum + o.size, 0);
  }

  /**
   * Opens the index; when another process holds it, waits up to waitMs, then names the holder.
   * The index is a cache of the store's index segments: it catches up with them first, unless
   * `sync` is false (repair, which rebuilds it from the packs).
   */
  async openIndex(waitMs = 0, sync = true): Promise<ChunkIndex> {
    const index = await ChunkIndex.open(this.indexDir, { waitMs, describeHolder: async () => describeLocks(await this.locks()) });
    if (!sync) return index;
    try {
      await syncIndex(index, this.backend, this.keys?.sealer ?? null);
      return index;
    } catch (err) {
      await index.close();
      throw err;
    }
  }

  /** Every command that changes or reads packs registers first: the first write, so the place to say the store refuses writes. */
  lock(command: string, options: LockOptions = {}): Promise<HeldLock> {
    return acquireLock(this.backend, command, options).catch((err: NodeJS.ErrnoException) => {
      if (!['EACCES', 'EPERM', 'EROFS'].includes(err.code ?? '')) throw err;
      throw new StoreNotWritableError(`store ${this.location} is not writable (${err.code}); '${command}' needs to write to it: run it as the store's owner`, { store: this.location, code: err.code });
    });
  }

  locks(): Promise<LockInfo[]> {
    return listLocks(this.backend);
  }
}

/** Whether anything is where a new store would go: a local directory's entries are not walked (it may be a large tree). */
async function isOccupied(backend: Backend): Promise<boolean> {
  return backend instanceof FsBackend ? backend.hasEntries() : (await backend.list('')).length > 0;
}

/** A temp file of an interrupted durable write. */
function isTmpKey(key: string): boolean {
  return key.endsWith(TMP_SUFFIX);
}

