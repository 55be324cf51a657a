/**
 * `<label>.vmdk`: a monolithicFlat descriptor whose one extent is `<label>.img` beside it, so
 * a VMDK reader gets the raw image through its own flat-extent code.
 */
import { bytesPiece, paddedSize, SECTOR, type Piece, type ViewLayout } from './layout.js';
import { vhdGeometry } from './vhd.js';

/** The descriptor text; `cid` is any 32-bit content id, derived by the caller so it stays stable. */
export function vmdkDescriptor(diskSize: number, extentFile: string, cid: number): string {
  const sectors = paddedSize(diskSize) / SECTOR;
  const geometry = vhdGeometry(sectors);
  return [
    '# Disk DescriptorFile',
    'version=1',
    `CID=${cid.toString(16).padStart(8, '0')}`,
    'parentCID=ffffffff',
    'createType="monolithicFlat"',
    '',
    '# Extent description',
    `RW ${sectors} FLAT "${extentFile}" 0`,
    '',
    '# The Disk Data Base',
    '#DDB',
    '',
    'ddb.virtualHWVersion = "4"',
    `ddb.geometry.cylinders = "${geometry.cylinders}"`,
    `ddb.geometry.heads = "${geometry.heads}"`,
    `ddb.geometry.sectors = "${geometry.sectorsPerTrack}"`,
    'ddb.adapterType = "lsilogic"',
    '',
  ].join('\n');
}

export class VmdkLayout implements ViewLayout {
  private readonly text: Buffer;

  constructor(diskSize: number, extentFile: string, cid: number) {
    this.text = Buffer.from(vmdkDescriptor(diskSize, extentFile, cid));
  }

  get size(): number {
    return this.text.byteLength;
  }

  pieces(offset: number, length: number): Piece[] {
    const end = Math.min(offset + length, this.size);
    return offset < end ? [bytesPiece(this.text, 0, offset, end - offset)] : [];
  }
}
