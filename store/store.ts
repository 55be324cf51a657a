/**
 * A store directory and its parts. Engine code reaches packs, index, catalog and maps
 * only through this object, never through paths of its own.
 */
import { promises as fs } from 'node:fs';
import { join, resolve } from 'node:path';
import { StoreExistsError, InvalidInputError, StoreNotWritableError } from './errors.js';
import { FORMAT_FILE, FORMAT_VERSION, encodeFormat, newFormat, readFormat, type StoreFormat } from './format.js';
import { DEFAULT_COMPRESSION, type Compression } from './compression.js';
import { Catalog } from './catalog.js';
import { ChunkIndex } from './index-db.js';
import { MAP_SUFFIX, ChunkMapWriter, readChunkMap } from './chunk-map.js';
import { PackWriter, packKey, packOfKey } from './pack.js';
import { acquireLock, describeLocks, listLocks, type HeldLock, type LockInfo } from './lock.js';
import { fsyncDir, writeFileDurable, PRIVATE_DIR_MODE } from './durable.js';
import { errnoOf, isAbsent, storeReadError } from './errors.js';
import type { Backend } from './backend/backend.js';
import { FsBackend } from './backend/fs.js';

const PARTS = ['packs', 'index', 'catalog', 'maps', 'locks'] as const;
/**
 * Space set aside so that gc can always start on a full filesystem: taking its lock and opening
 * LevelDB (a new manifest and log, a flushed table) write before anything is freed.
 */
const RESERVE_FILE = 'reserve';
export const RESERVE_BYTES = 8 * 1024 * 1024;

export class Store {
  readonly catalog: Catalog;
  /** Where every object of the store lives (see backend/backend.ts). */
  readonly backend: Backend;

  private constructor(
    readonly dir: string,
    private current: StoreFormat,
  ) {
    this.backend = new FsBackend(dir);
    this.catalog = new Catalog(join(dir, 'catalog'));
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
    const next: StoreFormat = { ...this.current, ...settings, version: FORMAT_VERSION };
    await writeFileDurable(join(this.dir, FORMAT_FILE), encodeFormat(next));
    this.current = next;
  }

  /** Before the first record that needs format version 2: older chunkvaults then refuse the store instead of misreading it. */
  async allowVersion2Records(): Promise<void> {
    if (this.current.version < FORMAT_VERSION) await this.configure({});
  }

  static async init(dir: string, chunkSize: number, compression: Compression = DEFAULT_COMPRESSION): Promise<Store> {
    const root = resolve(dir);
    const existing = await readdirUnlessAbsent(root);
    if (existing.includes(FORMAT_FILE)) throw new StoreExistsError(`${root} is already a chunkvault store`, { store: root });
    if (existing.length > 0) throw new InvalidInputError(`${root} is not empty; init needs an empty or new directory`, { store: root });
    await fs.mkdir(root, { recursive: true, mode: PRIVATE_DIR_MODE });
    // An existing empty directory keeps the mode it was made with: a store is private (invariant 7).
    await fs.chmod(root, PRIVATE_DIR_MODE);
    for (const part of PARTS) await fs.mkdir(join(root, part), { mode: PRIVATE_DIR_MODE });
    await fsyncDir(root);
    await writeFileDurable(join(root, RESERVE_FILE), Buffer.alloc(RESERVE_BYTES));
    // The format file is written last: a directory without it is not a store yet.
    await writeFileDurable(join(root, FORMAT_FILE), encodeFormat(newFormat(chunkSize, new Date(), compression)));
    return Store.open(root);
  }

  static async open(dir: string): Promise<Store> {
    const root = resolve(dir);
    const format = await readFormat(root);
    return new Store(root, format);
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

  mapDir(pointId: string): string {
    return join(this.dir, 'maps', pointId);
  }

  mapPath(pointId: string, label: string): string {
    return join(this.mapDir(pointId), label + MAP_SUFFIX);
  }

  createMapWriter(pointId: string, label: string, slots: number): Promise<ChunkMapWriter> {
    return ChunkMapWriter.create(this.mapDir(pointId), label, slots);
  }

  /** A disk's map; with `slots`, a map of any other length is damage (DamagedDataError). */
  readMap(pointId: string, label: string, slots?: number): Promise<Buffer> {
    return readChunkMap(this.mapPath(pointId, label), slots);
  }

  async removeMaps(pointId: string): Promise<void> {
    await fs.rm(this.mapDir(pointId), { recursive: true, force: true });
  }

  /** Restore point ids that have a maps directory, committed or not, with the directory's mtime. */
  async listMapDirs(): Promise<{ id: string; mtimeMs: number }[]> {
    const dir = join(this.dir, 'maps');
    const entries = await fs.readdir(dir, { withFileTypes: true }).catch((err: unknown) => {
      throw storeReadError(dir, err);
    });
    const found = [];
    for (const entry of entries.filter((e) => e.isDirectory())) {
      const stat = await statUnlessAbsent(join(dir, entry.name));
      if (stat) found.push({ id: entry.name, mtimeMs: stat.mtimeMs });
    }
    return found;
  }

  /** Disk labels of the committed maps of a restore point; none when it has no maps directory. */
  async listMapLabels(pointId: string): Promise<string[]> {
    const names = await readdirUnlessAbsent(this.mapDir(pointId));
    return names.filter((n) => n.endsWith(MAP_SUFFIX) && !n.startsWith('.')).map((n) => n.slice(0, -MAP_SUFFIX.length));
  }

  /** Deletes packs for good: the deletions survive power loss once this returns. */
  async deletePacks(packs: string[]): Promise<void> {
    await this.backend.delete(packs.map(packKey));
  }

  /** Gives the reserved space back to the filesystem; false when there was none. */
  async releaseReserve(): Promise<boolean> {
    const path = join(this.dir, RESERVE_FILE);
    if (!(await statUnlessAbsent(path))) return false;
    await fs.rm(path, { force: true });
    await fsyncDir(this.dir);
    return true;
  }

  /** Sets the reserve aside again, unless it is there; a filesystem too full for it is left as it is. */
  async restoreReserve(): Promise<boolean> {
    const path = join(this.dir, RESERVE_FILE);
    if (await statUnlessAbsent(path)) return true;
    try {
      await writeFileDurable(path, Buffer.alloc(RESERVE_BYTES));
      return true;
    } catch (err) {
      if (errnoOf(err) !== 'ENOSPC') throw err;
      await fs.rm(path, { force: true });
      return false;
    }
  }

  /** Temp files of interrupted durable writes (catalog entries, maps), relative to the store. */
  async tmpFiles(): Promise<{ path: string; size: number; mtimeMs: number }[]> {
    const dirs = ['catalog', ...(await this.listMapDirs()).map(({ id }) => join('maps', id))];
    const found = [];
    for (const dir of dirs) {
      for (const name of await readdirUnlessAbsent(join(this.dir, dir))) {
        if (!name.endsWith('.tmp')) continue;
        const stat = await statUnlessAbsent(join(this.dir, dir, name));
        if (stat) found.push({ path: join(dir, name), size: stat.size, mtimeMs: stat.mtimeMs });
      }
    }
    return found;
  }

  async removeTmpFiles(paths: string[]): Promise<void> {
    for (const path of paths) await fs.rm(join(this.dir, path), { force: true });
  }

  /**
   * Bytes of every file below the store directory. A file that goes while it is walked (LevelDB
   * compacts its tables in the background) is absent, not an error; the walk lstats each name
   * itself, since a filesystem without d_type (FUSE) makes a typed listing stat them, failing whole.
   */
  diskUsage(): Promise<number> {
    return treeBytes(this.dir);
  }

  /** Opens the index; when another process holds it, waits up to waitMs, then names the holder. */
  openIndex(waitMs = 0): Promise<ChunkIndex> {
    return ChunkIndex.open(join(this.dir, 'index'), { waitMs, describeHolder: async () => describeLocks(await this.locks()) });
  }

  /** Every command that changes or reads packs registers first: the first write, so the place to say the store refuses writes. */
  lock(command: string): Promise<HeldLock> {
    return acquireLock(join(this.dir, 'locks'), command).catch((err: NodeJS.ErrnoException) => {
      if (!['EACCES', 'EPERM', 'EROFS'].includes(err.code ?? '')) throw err;
      throw new StoreNotWritableError(`store ${this.dir} is not writable (${err.code}); '${command}' needs to write to it: run it as the store's owner`, { store: this.dir, code: err.code });
    });
  }

  locks(): Promise<LockInfo[]> {
    return listLocks(join(this.dir, 'locks'));
  }
}

/** Bytes of the files below `dir`; names that vanish meanwhile count nothing. */
async function treeBytes(dir: string): Promise<number> {
  let bytes = 0;
  for (const name of await readdirUnlessAbsent(dir)) {
    const path = join(dir, name);
    const stats = await statUnlessAbsent(path, fs.lstat);
    if (stats?.isDirectory()) bytes += await treeBytes(path);
    else if (stats?.isFile()) bytes += stats.size;
  }
  return bytes;
}

/** A stat (or lstat), or null when the file is absent (ENOENT); any other failure is an error naming it. */
async function statUnlessAbsent(path: string, stat: (path: string) => Promise<import('node:fs').Stats> = fs.stat): Promise<import('node:fs').Stats | null> {
  try {
    return await stat(path);
  } catch (err) {
    if (isAbsent(err)) return null;
    throw storeReadError(path, err);
  }
}

/** A directory's names, or none when it is absent (ENOENT); any other failure is an error naming it. */
async function readdirUnlessAbsent(path: string): Promise<string[]> {
  try {
    return await fs.readdir(path);
  } catch (err) {
    if (isAbsent(err)) return [];
    throw storeReadError(path, err);
  }
}

