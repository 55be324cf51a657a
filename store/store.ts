/**
 * A store directory and its parts. Engine code reaches packs, index, catalog and maps
 * only through this object, never through paths of its own.
 */
import { promises as fs } from 'node:fs';
import { join, resolve } from 'node:path';
import { StoreExistsError, InvalidInputError } from '../engine/errors.js';
import { FORMAT_FILE, encodeFormat, readFormat, type StoreFormat } from './format.js';
import { Catalog } from './catalog.js';
import { ChunkIndex } from './index-db.js';
import { MAP_SUFFIX, ChunkMapWriter, readChunkMap } from './chunk-map.js';
import { PackWriter, packFileName, PACK_SUFFIX } from './pack.js';
import { acquireLock, describeLocks, listLocks, type HeldLock, type LockInfo } from './lock.js';
import { fsyncDir, writeFileDurable } from './durable.js';

const PARTS = ['packs', 'index', 'catalog', 'maps', 'locks'] as const;

export class Store {
  readonly catalog: Catalog;

  private constructor(
    readonly dir: string,
    readonly format: StoreFormat,
  ) {
    this.catalog = new Catalog(join(dir, 'catalog'));
  }

  get chunkSize(): number {
    return this.format.chunkSize;
  }

  static async init(dir: string, chunkSize: number): Promise<Store> {
    const root = resolve(dir);
    const existing = await fs.readdir(root).catch(() => null);
    if (existing?.includes(FORMAT_FILE)) throw new StoreExistsError(`${root} is already a chunkvault store`, { store: root });
    if (existing && existing.length > 0) throw new InvalidInputError(`${root} is not empty; init needs an empty or new directory`, { store: root });
    await fs.mkdir(root, { recursive: true });
    for (const part of PARTS) await fs.mkdir(join(root, part));
    await fsyncDir(root);
    // The format file is written last: a directory without it is not a store yet.
    await writeFileDurable(join(root, FORMAT_FILE), encodeFormat(chunkSize, new Date()));
    return Store.open(root);
  }

  static async open(dir: string): Promise<Store> {
    const root = resolve(dir);
    const format = await readFormat(root);
    return new Store(root, format);
  }

  packPath(pack: string): string {
    return join(this.dir, 'packs', packFileName(pack));
  }

  get packsDir(): string {
    return join(this.dir, 'packs');
  }

  async listPacks(): Promise<{ name: string; size: number }[]> {
    const files = (await fs.readdir(this.packsDir)).filter((n) => n.endsWith(PACK_SUFFIX));
    const packs = [];
    for (const file of files) packs.push({ name: file.slice(0, -PACK_SUFFIX.length), size: (await fs.stat(join(this.packsDir, file))).size });
    return packs;
  }

  newPackWriter(cap?: number): PackWriter {
    return new PackWriter(this.packsDir, cap);
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

  readMap(pointId: string, label: string): Promise<Buffer> {
    return readChunkMap(this.mapPath(pointId, label));
  }

  async removeMaps(pointId: string): Promise<void> {
    await fs.rm(this.mapDir(pointId), { recursive: true, force: true });
  }

  /** Opens the index; when another process holds it, waits up to waitMs, then names the holder. */
  openIndex(waitMs = 0): Promise<ChunkIndex> {
    return ChunkIndex.open(join(this.dir, 'index'), { waitMs, describeHolder: async () => describeLocks(await this.locks()) });
  }

  lock(command: string): Promise<HeldLock> {
    return acquireLock(join(this.dir, 'locks'), command);
  }

  locks(): Promise<LockInfo[]> {
    return listLocks(join(this.dir, 'locks'));
  }
}
