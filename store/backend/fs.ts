/**
 * The local-directory backend: a key is a path below the store directory, and today's layout
 * and guarantees hold unchanged: durable writes are temp file, fsync, rename, fsync of the
 * directory; packs are appended with direct I/O where the filesystem allows it (append-file.ts).
 */
import { constants, promises as fs, type Stats } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { AppendFile, alignedStages } from '../append-file.js';
import { fsyncDir, writeFileDurable, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from '../durable.js';
import { InvalidInputError, NotAnObjectError, isAbsent } from '../errors.js';
import { kindOf } from '../small-file.js';
import type { Backend, BackendSpec, ObjectInfo, Staged, Upload } from './backend.js';

const KEY_PATTERN = /^(?!.*(?:^|\/)\.\.?(?:\/|$))[^/\0][^\0]*$/;

export class FsBackend implements Backend {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = resolve(dir);
  }

  get location(): string {
    return this.dir;
  }

  get localDir(): string {
    return this.dir;
  }

  get spec(): BackendSpec {
    return { kind: 'fs', dir: this.dir };
  }

  /** The path of `key`; a key that would leave the store directory is a programming error. */
  pathOf(key: string): string {
    if (!KEY_PATTERN.test(key) || key.endsWith('/')) throw new InvalidInputError(`not an object key: '${key}'`, { key });
    return join(this.dir, key);
  }

  async get(key: string): Promise<Buffer | null> {
    const path = this.pathOf(key);
    let handle: fs.FileHandle | undefined;
    try {
      // Checked before opening and after: opening a device can act on it, and a FIFO with no writer blocks a read.
      regularOrThrow(key, await fs.stat(path));
      handle = await fs.open(path, constants.O_RDONLY | constants.O_NONBLOCK);
      regularOrThrow(key, await handle.stat());
      return await handle.readFile();
    } catch (err) {
      if (isAbsent(err)) return null;
      throw err;
    } finally {
      await handle?.close();
    }
  }

  async readInto(key: string, offset: number, into: Buffer): Promise<number> {
    const handle = await fs.open(this.pathOf(key), 'r');
    try {
      let done = 0;
      while (done < into.byteLength) {
        const { bytesRead } = await handle.read(into, done, into.byteLength - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return done;
    } finally {
      await handle.close();
    }
  }

  async stat(key: string): Promise<ObjectInfo | null> {
    try {
      const stats = regularOrThrow(key, await fs.stat(this.pathOf(key)));
      return { key, size: stats.size, mtimeMs: stats.mtimeMs };
    } catch (err) {
      if (isAbsent(err)) return null;
      throw err;
    }
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    const cut = prefix.lastIndexOf('/');
    const base = prefix.slice(0, cut + 1);
    const found: ObjectInfo[] = [];
    await this.walk(base, prefix, found);
    return found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /**
   * Files below the directory of key prefix `base` whose keys start with `prefix`. Each name is
   * lstat'ed here: on a filesystem without d_type (FUSE) a typed listing stats every name and
   * fails whole when one goes meanwhile (LevelDB compacts in the background). A name that
   * goes while it is walked is absent; any other failure stops the listing.
   */
  private async walk(base: string, prefix: string, found: ObjectInfo[]): Promise<void> {
    let names: string[];
    try {
      names = await fs.readdir(base === '' ? this.dir : this.pathOf(base.slice(0, -1)));
    } catch (err) {
      if (isAbsent(err)) return;
      throw err;
    }
    for (const name of names) {
      const key = base + name;
      if (!key.startsWith(prefix) && !prefix.startsWith(key + '/')) continue;
      let stats;
      try {
        stats = await fs.lstat(join(this.dir, key));
        // A link to a file is that file: skipped, it would pass for absent (invariant 6).
        if (stats.isSymbolicLink()) stats = await fs.stat(join(this.dir, key));
      } catch (err) {
        if (isAbsent(err)) continue;
        throw err;
      }
      if (stats.isDirectory() && !standsForObject(name)) await this.walk(key + '/', prefix, found);
      else if (key.startsWith(prefix)) found.push({ key, size: stats.size, mtimeMs: stats.mtimeMs });
    }
  }

  async put(key: string, data: Uint8Array): Promise<void> {
    const path = this.pathOf(key);
    await this.makeParent(path);
    await writeFileDurable(path, data);
  }

  async create(key: string, data: Uint8Array): Promise<boolean> {
    const path = this.pathOf(key);
    await this.makeParent(path);
    const tmp = tempPathFor(path);
    await writeFileDurable(tmp, data);
    try {
      // link(2) makes the name only where there is none: an atomic create-if-absent of a whole file.
      await fs.link(tmp, path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err;
    } finally {
      await fs.rm(tmp, { force: true });
    }
    await fsyncDir(dirname(path));
    return true;
  }

  async delete(keys: string[]): Promise<void> {
    const dirs = new Set<string>();
    for (const key of keys) {
      const path = this.pathOf(key);
      await fs.rm(path, { force: true });
      dirs.add(dirname(path));
    }
    for (const dir of dirs) {
      if (await this.removeIfEmpty(dir)) dirs.add(dirname(dir));
    }
    for (const dir of dirs) await fsyncDir(dir).catch((err: unknown) => {
      if (!isAbsent(err)) throw err;
    });
  }

  /**
   * Keys have no directories of their own: one that a delete emptied goes with its last object
   * (`maps/<id>/`), as it would in an object store. The store's own directories (packs/, maps/...) stay.
   */
  private async removeIfEmpty(dir: string): Promise<boolean> {
    if (dirname(dir) === this.dir || dir === this.dir) return false;
    try {
      await fs.rmdir(dir);
      return true;
    } catch (err) {
      if (isAbsent(err) || ['ENOTEMPTY', 'EEXIST'].includes((err as NodeJS.ErrnoException).code ?? '')) return false;
      throw err;
    }
  }

  /** Whether the directory has any entry at all (an empty subdirectory too); an absent one has none. */
  async hasEntries(): Promise<boolean> {
    try {
      return (await fs.readdir(this.dir)).length > 0;
    } catch (err) {
      if (isAbsent(err)) return false;
      throw err;
    }
  }

  /** Makes the store's directory and those of its layout (`parts`), private (invariant 7). */
  async makeRoot(parts: readonly string[]): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: PRIVATE_DIR_MODE });
    // An existing empty directory keeps the mode it was made with.
    await fs.chmod(this.dir, PRIVATE_DIR_MODE);
    for (const part of parts) await fs.mkdir(this.pathOf(part), { mode: PRIVATE_DIR_MODE });
    await fsyncDir(this.dir);
  }

  async upload(key: string): Promise<Upload> {
    const path = this.pathOf(key);
    await this.makeParent(path);
    return new FsUpload(path, await AppendFile.create(path, alignedStages()));
  }

  async stage(key: string): Promise<Staged> {
    const path = this.pathOf(key);
    await this.makeParent(path);
    const tmp = tempPathFor(path);
    await (await fs.open(tmp, 'wx', PRIVATE_FILE_MODE)).close();
    return {
      path: tmp,
      commit: async () => {
        const handle = await fs.open(tmp, 'r+');
        try {
          await handle.sync();
        } finally {
          await handle.close();
        }
        await fs.rename(tmp, path);
        await fsyncDir(dirname(path));
      },
      discard: async () => {
        await fs.rm(tmp, { force: true });
        await this.removeIfEmpty(dirname(path));
      },
    };
  }

  async close(): Promise<void> {}

  /** Directories are made on first use, private (invariant 7); a new one is made durable in its parent. */
  private async makeParent(path: string): Promise<void> {
    const parent = dirname(path);
    const made = await fs.mkdir(parent, { recursive: true, mode: PRIVATE_DIR_MODE });
    if (made !== undefined) await fsyncDir(dirname(parent));
  }
}

/** Something else under an object's name (a directory, a FIFO) is neither the object nor its absence. */
function regularOrThrow(key: string, stats: Stats): Stats {
  if (!stats.isFile()) throw new NotAnObjectError(`${key} is ${kindOf(stats)}, not a regular file`, { key, kind: kindOf(stats), errno: stats.isDirectory() ? 'EISDIR' : 'EINVAL' });
  return stats;
}

/**
 * Whether a directory entry stands where an object would be though it is not a file. The store
 * makes directories only for key prefixes, whose names have no suffix (packs, maps/<id>): a
 * directory named like an object (`x.pack`), or anything else that is neither, is listed, so
 * that reading it fails (EISDIR) instead of it passing for absent.
 */
function standsForObject(name: string): boolean {
  return name.includes('.');
}

/** Temp files are dot-named beside their object and end in .tmp, as writeFileDurable's: listings show them, readers of objects skip dot-names, gc reclaims them. */
function tempPathFor(path: string): string {
  return join(dirname(path), `.${path.slice(dirname(path).length + 1)}.${randomBytes(4).toString('hex')}.tmp`);
}

class FsUpload implements Upload {
  constructor(
    private readonly path: string,
    private readonly file: AppendFile,
  ) {}

  get size(): number {
    return this.file.size;
  }

  append(buffers: Buffer[]): Promise<void> {
    return this.file.append(buffers);
  }

  async finish(): Promise<void> {
    await this.file.writeTail();
    await this.file.datasync();
    await this.file.close();
    await fsyncDir(dirname(this.path));
  }

  async abort(): Promise<void> {
    await this.file.close();
    await fs.rm(this.path, { force: true });
  }
}
