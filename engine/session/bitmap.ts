/**
 * One bit per block of a session's disk, set once and never cleared (a block written or
 * hydrated stays so). The file is the bits as they are in memory; only the 4 KiB pages
 * changed since the last save are written again, so a save costs what changed, not the disk.
 */
export const BITMAP_PAGE_BYTES = 4096;

export interface BitmapPage {
  page: number;
  bytes: Buffer;
}

export class BlockBitmap {
  private readonly changed = new Set<number>();
  private setCount: number;

  constructor(
    readonly blocks: number,
    readonly bits: Buffer = Buffer.alloc(BlockBitmap.bytesFor(blocks)),
  ) {
    this.setCount = countBits(bits, blocks);
  }

  static bytesFor(blocks: number): number {
    return Math.ceil(blocks / 8);
  }

  get count(): number {
    return this.setCount;
  }

  get complete(): boolean {
    return this.setCount === this.blocks;
  }

  has(block: number): boolean {
    return (this.bits[block >> 3] & (1 << (block & 7))) !== 0;
  }

  /** Blocks [first, last] all set. */
  hasAll(first: number, last: number): boolean {
    for (let b = first; b <= last; b++) if (!this.has(b)) return false;
    return true;
  }

  setRange(first: number, last: number): void {
    for (let b = first; b <= last; b++) {
      if (this.has(b)) continue;
      this.bits[b >> 3] |= 1 << (b & 7);
      this.setCount++;
      this.changed.add(Math.floor((b >> 3) / BITMAP_PAGE_BYTES));
    }
  }

  /** Copies of the pages changed since the last take: what a save writes. */
  takeChanged(): BitmapPage[] {
    const pages = [...this.changed].map((page) => ({ page, bytes: Buffer.from(this.bits.subarray(page * BITMAP_PAGE_BYTES, (page + 1) * BITMAP_PAGE_BYTES)) }));
    this.changed.clear();
    return pages;
  }

  /** A save that failed: its pages are written by the next one. */
  giveBack(pages: BitmapPage[]): void {
    for (const { page } of pages) this.changed.add(page);
  }
}

function countBits(bits: Buffer, blocks: number): number {
  let n = 0;
  for (let b = 0; b < blocks; b++) if (bits[b >> 3] & (1 << (b & 7))) n++;
  return n;
}
