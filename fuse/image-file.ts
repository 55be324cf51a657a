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
 * and is topped up once half of it is consumed, so the pool gets multi-chunk tasks.
 */
export class OpenImage implements OpenFile {
  private lastSlot = -1;
  private window = 0;
  private aheadUntil = 0;

  constructor(
    readonly reader: DiskReader,
    private readonly maxAhead: number,
  ) {}

  read(into: Buffer, length: number, offset: number): Promise<number> {
    // The read's own chunks are requested first, ahead of its read-ahead.
    const done = this.reader.read(into, length, offset);
    this.readAhead(offset, length);
    return done;
  }

  private readAhead(offset: number, length: number): void {
    const first = this.reader.slotOf(offset);
    const last = this.reader.slotOf(Math.max(offset, Math.min(offset + length, this.reader.size) - 1));
    if (last === this.lastSlot) return;
    const sequential = offset === 0 || first === this.lastSlot || first === this.lastSlot + 1;
    this.lastSlot = last;
    if (!sequential) {
      this.window = 0;
      this.aheadUntil = last + 1;
      return;
    }
    this.window = Math.min(this.maxAhead, Math.max(1, this.window * 2));
    if (this.aheadUntil - (last + 1) > this.window / 2) return;
    const from = Math.max(this.aheadUntil, last + 1);
    this.aheadUntil = last + 1 + this.window;
    this.reader.prefetch(from, this.aheadUntil - from);
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
    return this.register(await this.openImage(node.point, node.label));
  }

  /** A disk with a read-ahead of its own, for a file served from it (a format view). */
  async openImage(point: RestorePoint, label: string): Promise<OpenImage> {
    return new OpenImage(await this.readerOf(point, label), this.options.readAheadChunks);
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

  private readerOf(point: RestorePoint, label: string): Promise<DiskReader> {
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
