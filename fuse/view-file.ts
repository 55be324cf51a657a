/**
 * Open format views: a layout per view (built from the chunk maps on first use and kept while
 * its restore points exist), and reads that fill metadata and zeros here and take disk bytes
 * from the disk's reader, checked like the raw image's.
 */
import type { Store } from '../store/store.js';
import type { RestorePoint } from '../store/catalog.js';
import { openLayout, type ViewLayout } from '../engine/views/index.js';
import type { DiskReader, SlotRange } from '../engine/reader.js';
import { ReadAhead, type ImageFiles, type OpenFile } from './image-file.js';
import type { ViewNode } from './view-tree.js';

class OpenView implements OpenFile {
  private readonly ahead: ReadAhead | null;

  /** `reader` is null for a view of metadata only (a VMDK descriptor). */
  constructor(
    private readonly layout: ViewLayout,
    private readonly reader: DiskReader | null,
    maxAhead: number,
  ) {
    this.ahead = reader && new ReadAhead(reader.chunkSize, layout.size, maxAhead, (first, count) => this.prefetch(reader, first, count));
  }

  async read(into: Buffer, length: number, offset: number): Promise<number> {
    const reads: Promise<number>[] = [];
    let at = 0;
    for (const piece of this.layout.pieces(offset, length)) {
      if (piece.kind === 'bytes') {
        piece.data.copy(into, at);
        at += piece.data.byteLength;
        continue;
      }
      if (piece.kind === 'zeros') into.fill(0, at, at + piece.length);
      else reads.push(this.reader!.read(into.subarray(at, at + piece.length), piece.length, piece.at));
      at += piece.length;
    }
    // The read's own chunks are requested first, ahead of its read-ahead.
    this.ahead?.note(offset, length);
    await Promise.all(reads);
    return at;
  }

  /** The disk chunks behind chunk-sized units [first, first + count) of the view: the holes a qcow2 skips are not among them. */
  private prefetch(reader: DiskReader, first: number, count: number): void {
    const ranges: SlotRange[] = [];
    for (const piece of this.layout.pieces(first * reader.chunkSize, count * reader.chunkSize)) {
      if (piece.kind !== 'disk') continue;
      const slot = reader.slotOf(piece.at);
      ranges.push({ first: slot, count: reader.slotOf(piece.at + piece.length - 1) - slot + 1 });
    }
    reader.prefetchRanges(ranges);
  }
}

/** The restore points a view reads: its own, and the base of a difference. */
export function pointsOf(node: ViewNode): RestorePoint[] {
  return node.spec.format === 'qcow2-diff' ? [node.spec.point, node.spec.base] : [node.spec.point];
}

export class ViewFiles {
  private readonly layouts = new Map<string, { ids: string[]; layout: Promise<ViewLayout> }>();

  constructor(
    private readonly store: Store,
    private readonly images: ImageFiles,
  ) {}

  async size(node: ViewNode): Promise<number> {
    return (await this.layoutOf(node)).size;
  }

  async open(node: ViewNode): Promise<number> {
    const layout = await this.layoutOf(node);
    // A descriptor is all text: no disk to resolve.
    const reader = node.spec.format === 'vmdk' ? null : await this.images.readerOf(node.spec.point, node.spec.label);
    return this.images.register(new OpenView(layout, reader, this.images.readAheadChunks));
  }

  /** Drops the layouts of views whose restore points are gone; open handles keep theirs. */
  keepOnly(points: RestorePoint[]): void {
    const live = new Set(points.map((p) => p.id));
    for (const [path, { ids }] of this.layouts) if (!ids.every((id) => live.has(id))) this.layouts.delete(path);
  }

  private layoutOf(node: ViewNode): Promise<ViewLayout> {
    const known = this.layouts.get(node.path);
    if (known) return known.layout;
    const layout = openLayout(this.store, node.spec);
    this.layouts.set(node.path, { ids: pointsOf(node).map((p) => p.id), layout });
    // A map that could not be read is read again by the next use.
    layout.catch(() => this.layouts.get(node.path)?.layout === layout && this.layouts.delete(node.path));
    return layout;
  }
}
