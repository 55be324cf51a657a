/**
 * Open image files: one DiskReader per restore point disk (resolved on first open and
 * kept while the restore point exists), one handle per open() with its own read-ahead.
 */
import type { Store } from '../store/store.js';
import type { RestorePoint } from '../store/catalog.js';
import { DiskReader, type ChunkFetcher } from '../engine/reader.js';
import type { ImageNode } from './tree.js';

/** What a file handle of the mount reads through. */
export interface OpenFile {
  read(into: Buffer, length: number, offset: number): Promise<number>;
}

/**
 * Read-ahead doubles from one chunk while reads stay sequential, up to maxAhead chunks,
 * and is topped up once half of it is consumed, so the pool gets multi-chunk tasks. It
 * counts in chunk-sized units of the file being read; `prefetch` starts decoding the
 * chunks behind units [first, first + count), which for a format view are not the disk's.
 */
export class ReadAhead {
  private lastUnit = -1;
  private window = 0;
  private aheadUntil = 0;

  constructor(
    private readonly unitBytes: number,
    private readonly fileSize: number,
    private readonly maxAhead: number,
    private readonly prefetch: (first: number, count: number) => void,
  ) {}

  /** After a read of file bytes [offset, offset + length) was requested. */
  note(offset: number, length: number): void {
    const first = Math.floor(offset / this.unitBytes);
    const last = Math.floor(Math.max(offset, Math.min(offset + length, this.fileSize) - 1) / this.unitBytes);
    if (last <= this.lastUnit && first >= this.lastUnit - this.window) return;
    // Readers with several requests in flight (qemu-img has 8) deliver them a little out of order.
    const sequential = offset === 0 || (first >= this.lastUnit - this.window && first <= Math.max(this.lastUnit + 1, this.aheadUntil));
    this.lastUnit = sequential ? Math.max(this.lastUnit, last) : last;
    if (!sequential) {
      this.window = 0;
      this.aheadUntil = last + 1;
      return;
    }
    this.window = Math.min(this.maxAhead, Math.max(1, this.window * 2));
    const next = this.lastUnit + 1;
    if (this.aheadUntil - next > this.window / 2) return;
    const from = Math.max(this.aheadUntil, next);
    this.aheadUntil = next + this.window;
    this.prefetch(from, this.aheadUntil - from);
  }
}

/** The disk's bytes [start, start + size): all of it, or one partition. */
class OpenImage implements OpenFile {
  private readonly ahead: ReadAhead;

  constructor(
    private readonly reader: DiskReader,
    maxAhead: number,
    private readonly start: number,
    private readonly size: number,
  ) {
    const chunk = reader.chunkSize;
    // Units of a chunk in the file's offsets: a partition that starts inside a slot straddles one slot more.
    this.ahead = new ReadAhead(chunk, size, maxAhead, (first, count) => {
      const from = Math.floor((start + first * chunk) / chunk);
      const to = Math.ceil(Math.min(start + (first + count) * chunk, reader.size) / chunk);
      reader.prefetch(from, to - from);
    });
  }

  read(into: Buffer, length: number, offset: number): Promise<number> {
    const inFile = Math.max(0, Math.min(length, this.size - offset));
    if (inFile === 0) return Promise.resolve(0);
    // The read's own chunks are requested first, ahead of its read-ahead.
    const done = this.reader.read(into, inFile, this.start + offset);
    this.ahead.note(offset, inFile);
    return done;
  }
}

export interface ImageFilesOptions {
  /** How many chunks a sequential reader may have decoded ahead of it. */
  readAheadChunks: number;
  /** How long opening an image waits for the index while a backup holds it. */
  indexWaitMs: number;
}

export class ImageFiles {
  private readonly readers = new Map<string, Promise<DiskReader>>();
  private readonly handles = new Map<number, OpenFile>();
  private nextHandle = 1;
  /** The last resolution queued: LevelDB admits one opener per process too, so they take turns. */
  private lastResolution: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly store: Store,
    private readonly fetcher: ChunkFetcher,
    private readonly options: ImageFilesOptions,
  ) {}

  async open(node: ImageNode): Promise<number> {
    return this.register(new OpenImage(await this.readerOf(node.point, node.label), this.readAheadChunks, node.partition?.start ?? 0, node.size));
  }

  /** True only when the point's catalog entry is gone (ENOENT); any other failure to tell is an error. */
  isPruned(point: RestorePoint): Promise<boolean> {
    return this.store.catalog.isAbsent(point.id);
  }

  get readAheadChunks(): number {
    return this.options.readAheadChunks;
  }

  register(file: OpenFile): number {
    const handle = this.nextHandle++;
    this.handles.set(handle, file);
    return handle;
  }

  /** undefined for a handle that is not open. */
  handle(handle: number): OpenFile | undefined {
    return this.handles.get(handle);
  }

  release(handle: number): void {
    this.handles.delete(handle);
  }

  /** Drops the readers of restore points that are gone; open handles keep theirs. */
  keepOnly(points: RestorePoint[]): void {
    const live = new Set(points.map((p) => p.id));
    for (const key of this.readers.keys()) if (!live.has(key.split('/')[0])) this.readers.delete(key);
  }

  /** Drops the point's readers: the chunk locations they resolved hold only while it is pinned. */
  forget(pointId: string): void {
    for (const key of this.readers.keys()) if (key.split('/')[0] === pointId) this.readers.delete(key);
  }

  /** The disk's reader, shared by every file served from it (image, partitions, views) and the reading of its partition table. */
  readerOf(point: RestorePoint, label: string): Promise<DiskReader> {
    const key = `${point.id}/${label}`;
    let reader = this.readers.get(key);
    if (!reader) {
      reader = this.resolveInTurn(point, label);
      this.readers.set(key, reader);
      // A failed resolution (index busy, map unreadable) is retried by the next open.
      reader.catch(() => this.readers.get(key) === reader && this.readers.delete(key));
    }
    return reader;
  }

  /**
   * Resolutions queued behind each other share one wait, counted from the open that asked:
   * queued opens never fight over the index with each other, and never wait longer for a
   * backup than indexWaitMs; one whose wait is used up still tries the index once.
   */
  private resolveInTurn(point: RestorePoint, label: string): Promise<DiskReader> {
    const deadline = Date.now() + this.options.indexWaitMs;
    const resolved = this.lastResolution
      .catch(() => undefined)
      .then(() => DiskReader.open(this.store, point, label, this.fetcher, Math.max(0, deadline - Date.now())));
    this.lastResolution = resolved;
    return resolved;
  }
}
