/**
 * A session's writable disk: blocks not yet in its content file are read from the restore
 * point; writes go to the content file (the sparse delta, or the hydration TARGET) a whole
 * block at a time the first time (read-modify-write), then in place. Two bitmaps say which
 * blocks the content file holds (`present`: written or hydrated) and which the guest wrote
 * (`dirty`: the changed-block list a later backup reads). Bits are set in memory once their
 * bytes are written, and saved by sync() after the content file is durable, so a bit on disk
 * never claims bytes a crash could have lost.
 */
import type { FileHandle } from 'node:fs/promises';
import { BlockBitmap, BITMAP_PAGE_BYTES } from './bitmap.js';
import { BlockLocks } from './block-locks.js';

/** What the restore point's disk offers (DiskReader). */
export interface BaseDisk {
  readonly chunkSize: number;
  read(into: Buffer, length: number, offset: number): Promise<number>;
  /** The bytes are all in zero slots (no chunk to read). */
  isZero(offset: number, length: number): boolean;
  /** Writes whole slots [first, first + count) into the file `target` at their offsets, past the cache; zero slots only unless `skipZeros`. */
  writeSlots(target: string, first: number, count: number, skipZeros: boolean): Promise<void>;
}

export interface SavedBitmap {
  bits: BlockBitmap;
  file: FileHandle;
}

export interface CowDiskFiles {
  content: FileHandle;
  /** The content file's path: workers write whole chunks of hydration into it themselves. */
  contentPath: string;
  present: SavedBitmap;
  dirty: SavedBitmap;
}

export class CowDisk {
  private readonly locks = new BlockLocks();
  private lastSync: Promise<void> = Promise.resolve();
  private guestOps = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly base: BaseDisk,
    private readonly files: CowDiskFiles,
    readonly size: number,
    readonly blockSize: number,
  ) {}

  get blocks(): number {
    return this.files.present.bits.blocks;
  }

  get present(): BlockBitmap {
    return this.files.present.bits;
  }

  get dirty(): BlockBitmap {
    return this.files.dirty.bits;
  }

  /** Bytes of disk the blocks [first, last] cover (the last block of the disk may be short). */
  bytesOf(first: number, last: number): number {
    return Math.min(this.size, (last + 1) * this.blockSize) - first * this.blockSize;
  }

  read(into: Buffer, length: number, offset: number): Promise<number> {
    return this.asGuest(() => this.readRange(into, length, offset));
  }

  write(data: Buffer, length: number, offset: number): Promise<number> {
    return this.asGuest(() => this.writeRange(data, length, offset));
  }

  /** The restore point has only zero slots under blocks [first, last]. */
  baseIsZero(first: number, last: number): boolean {
    return this.base.isZero(first * this.blockSize, this.bytesOf(first, last));
  }

  /** Resolves once no guest read or write is under way: hydration goes only then. */
  guestIdle(): Promise<void> {
    if (this.guestOps === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Makes every write and copy finished so far durable: the content file first, then the
   * bitmap pages that changed. Syncs run one after another; each saves what had finished when it began.
   */
  sync(): Promise<void> {
    const run = this.lastSync.catch(() => undefined).then(() => this.syncNow());
    this.lastSync = run;
    return run;
  }

  /**
   * Copies the restore point's bytes of blocks [first, last] that the content file lacks into
   * it; `skipZeros`: the content file reads zero where nothing was written (a new sparse file),
   * so zero slots are only marked. A chunk that decodes to zeros is written: only the map says "zero".
   * Returns the bytes of disk made present.
   */
  hydrate(first: number, last: number, skipZeros: boolean): Promise<number> {
    return this.locks.run(first, last, async () => {
      let copied = 0;
      for (const [from, to] of this.missingRuns(first, last)) {
        const offset = from * this.blockSize;
        const end = offset + this.bytesOf(from, to);
        // Whole chunks go from a worker straight into the file; the bytes of a chunk the guest wrote part of come here.
        const chunk = this.base.chunkSize;
        const wholeFrom = Math.ceil(offset / chunk) * chunk;
        const wholeEnd = end === this.size ? end : Math.floor(end / chunk) * chunk;
        if (wholeFrom < wholeEnd) {
          await this.copyHere(offset, wholeFrom, skipZeros);
          await this.base.writeSlots(this.files.contentPath, wholeFrom / chunk, Math.ceil((wholeEnd - wholeFrom) / chunk), skipZeros);
          await this.copyHere(wholeEnd, end, skipZeros);
        } else {
          await this.copyHere(offset, end, skipZeros);
        }
        this.present.setRange(from, to);
        copied += end - offset;
      }
      return copied;
    });
  }

  /** Copies the restore point's bytes [offset, end) into the content file through the cache. */
  private async copyHere(offset: number, end: number, skipZeros: boolean): Promise<void> {
    const length = end - offset;
    if (length <= 0) return;
    if (this.base.isZero(offset, length)) {
      if (!skipZeros) await writeFully(this.files.content, zeros(length), offset);
      return;
    }
    const bytes = Buffer.allocUnsafe(length);
    await this.base.read(bytes, length, offset);
    await writeFully(this.files.content, bytes, offset);
  }

  private async asGuest<T>(work: () => Promise<T>): Promise<T> {
    this.guestOps++;
    try {
      return await work();
    } finally {
      if (--this.guestOps === 0) this.idleWaiters.splice(0).forEach((wake) => wake());
    }
  }

  private async readRange(into: Buffer, length: number, offset: number): Promise<number> {
    const end = Math.min(offset + length, this.size);
    if (offset >= end) return 0;
    // Runs of blocks from one source: the content file or the restore point.
    let runStart = offset;
    while (runStart < end) {
      const inContent = this.present.has(this.blockOf(runStart));
      let runEnd = Math.min(end, (this.blockOf(runStart) + 1) * this.blockSize);
      while (runEnd < end && this.present.has(this.blockOf(runEnd)) === inContent) runEnd = Math.min(end, runEnd + this.blockSize);
      const piece = into.subarray(runStart - offset, runEnd - offset);
      if (inContent) await readFully(this.files.content, piece, runStart);
      else await this.base.read(piece, piece.length, runStart);
      runStart = runEnd;
    }
    return end - offset;
  }

  /** Past the end of the disk nothing is written: a disk does not grow. */
  private async writeRange(data: Buffer, length: number, offset: number): Promise<number> {
    const end = Math.min(offset + length, this.size);
    if (offset >= end) return 0;
    const first = this.blockOf(offset);
    const last = this.blockOf(end - 1);
    return this.locks.run(first, last, async () => {
      const head = this.baseBefore(offset, first);
      const tail = this.baseAfter(end, last);
      const pieces = [await head, data.subarray(0, end - offset), await tail];
      const start = offset - pieces[0].length;
      await writeFully(this.files.content, pieces[0].length + pieces[2].length === 0 ? pieces[1] : Buffer.concat(pieces), start);
      this.present.setRange(first, last);
      this.dirty.setRange(first, last);
      return end - offset;
    });
  }

  /** The restore point's bytes of `block` before `offset`, when the content file does not have the block yet. */
  private async baseBefore(offset: number, block: number): Promise<Buffer> {
    const blockStart = block * this.blockSize;
    if (offset === blockStart || this.present.has(block)) return Buffer.alloc(0);
    const bytes = Buffer.allocUnsafe(offset - blockStart);
    await this.base.read(bytes, bytes.length, blockStart);
    return bytes;
  }

  /** The restore point's bytes of `block` from `end` to the block's end, likewise. */
  private async baseAfter(end: number, block: number): Promise<Buffer> {
    const blockEnd = Math.min(this.size, (block + 1) * this.blockSize);
    if (end === blockEnd || this.present.has(block)) return Buffer.alloc(0);
    const bytes = Buffer.allocUnsafe(blockEnd - end);
    await this.base.read(bytes, bytes.length, end);
    return bytes;
  }

  private blockOf(offset: number): number {
    return Math.floor(offset / this.blockSize);
  }

  private *missingRuns(first: number, last: number): Generator<[number, number]> {
    let b = first;
    while (b <= last) {
      if (this.present.has(b)) {
        b++;
        continue;
      }
      const from = b;
      while (b + 1 <= last && !this.present.has(b + 1)) b++;
      yield [from, b];
      b++;
    }
  }

  private async syncNow(): Promise<void> {
    // Taken before the content sync: pages of writes that finish during it wait for the next sync.
    const present = this.present.takeChanged();
    const dirty = this.dirty.takeChanged();
    try {
      await this.files.content.datasync();
      await saveBitmapPages(this.files.present.file, present);
      await saveBitmapPages(this.files.dirty.file, dirty);
    } catch (err) {
      this.present.giveBack(present);
      this.dirty.giveBack(dirty);
      throw err;
    }
  }
}

async function saveBitmapPages(file: FileHandle, pages: { page: number; bytes: Buffer }[]): Promise<void> {
  if (pages.length === 0) return;
  for (const { page, bytes } of pages) await writeFully(file, bytes, page * BITMAP_PAGE_BYTES);
  await file.datasync();
}

export async function writeFully(file: FileHandle, data: Buffer, position: number): Promise<void> {
  for (let done = 0; done < data.length; ) done += (await file.write(data, done, data.length - done, position + done)).bytesWritten;
}

async function readFully(file: FileHandle, into: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < into.length) {
    const { bytesRead } = await file.read(into, done, into.length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  // Past the content file's end (a device target is never shorter; a file may have been cut): zeros.
  into.fill(0, done);
}

let zeroBuffer = Buffer.alloc(0);

/** `length` zero bytes, from one buffer kept for that: writing zeros costs no allocation or fill. */
function zeros(length: number): Buffer {
  if (zeroBuffer.length < length) zeroBuffer = Buffer.alloc(length);
  return zeroBuffer.subarray(0, length);
}
