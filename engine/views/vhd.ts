/**
 * `<label>.vhd`: a fixed VHD, which is the raw disk followed by a 512-byte footer.
 *
 * Sizes: readers disagree on where a VHD's size lives. Hyper-V, Windows and newer qemu read
 * the footer's current size; Virtual PC reads the CHS geometry, and qemu up to at least 7.2
 * (block/vpc.c, vpc_open) reads the geometry too unless the creator application is one it
 * knows to mean "current size" ('win ', 'qem2', 'd2v ', 'CTXS', 'tap\0') or the geometry is
 * the maximum 65535/16/255. The footer names its real creator, 'cvlt', and so that every one
 * of those readers sees the exact size it carries the spec's geometry when that geometry
 * covers the disk exactly, and otherwise the maximum geometry, as qemu itself writes for its
 * exact-size (force_size) images. A BIOS geometry hint is all that costs: LBA ignores it.
 */
import { createHash } from 'node:crypto';
import { diskPieces, bytesPiece, paddedSize, SECTOR, writeU64, type Piece, type ViewLayout } from './layout.js';

export const FOOTER_BYTES = 512;
const MAX_GEOMETRY = { cylinders: 65535, heads: 16, sectorsPerTrack: 255 };
const FIXED_DISK = 2;
/** VHD timestamps count seconds from 2000-01-01T00:00:00Z. */
const VHD_EPOCH_MS = Date.UTC(2000, 0, 1);

export interface Geometry {
  cylinders: number;
  heads: number;
  sectorsPerTrack: number;
}

/** The CHS geometry the VHD specification (appendix "CHS calculation") gives a disk of `totalSectors`. */
export function vhdGeometry(totalSectors: number): Geometry {
  const sectors = Math.min(totalSectors, 65535 * 16 * 255);
  let sectorsPerTrack: number;
  let heads: number;
  let cylinderTimesHeads: number;
  if (sectors >= 65535 * 16 * 63) {
    sectorsPerTrack = 255;
    heads = 16;
    cylinderTimesHeads = Math.floor(sectors / sectorsPerTrack);
  } else {
    sectorsPerTrack = 17;
    cylinderTimesHeads = Math.floor(sectors / sectorsPerTrack);
    heads = Math.max(4, Math.floor((cylinderTimesHeads + 1023) / 1024));
    if (cylinderTimesHeads >= heads * 1024 || heads > 16) {
      sectorsPerTrack = 31;
      heads = 16;
      cylinderTimesHeads = Math.floor(sectors / sectorsPerTrack);
    }
    if (cylinderTimesHeads >= heads * 1024) {
      sectorsPerTrack = 63;
      heads = 16;
      cylinderTimesHeads = Math.floor(sectors / sectorsPerTrack);
    }
  }
  return { cylinders: Math.floor(cylinderTimesHeads / heads), heads, sectorsPerTrack };
}

function sectorsOf(geometry: Geometry): number {
  return geometry.cylinders * geometry.heads * geometry.sectorsPerTrack;
}

/** The spec's geometry when it holds exactly `totalSectors`, else the maximum (see the top of this file). */
export function footerGeometry(totalSectors: number): Geometry {
  const spec = vhdGeometry(totalSectors);
  return sectorsOf(spec) === totalSectors ? spec : MAX_GEOMETRY;
}

/** A name-based (version 5 style) UUID: the same restore point and disk always get the same one. */
export function derivedUuid(...names: string[]): Buffer {
  const uuid = createHash('sha1').update(names.join('\0')).digest().subarray(0, 16);
  uuid[6] = (uuid[6] & 0x0f) | 0x50;
  uuid[8] = (uuid[8] & 0x3f) | 0x80;
  return uuid;
}

/** One's complement of the byte sum of the footer without its checksum field. */
export function footerChecksum(footer: Buffer): number {
  let sum = 0;
  for (let i = 0; i < FOOTER_BYTES; i++) if (i < 64 || i >= 68) sum += footer[i];
  return ~sum >>> 0;
}

export function vhdFooter(diskSize: number, time: Date, uuid: Buffer): Buffer {
  const size = paddedSize(diskSize);
  const footer = Buffer.alloc(FOOTER_BYTES);
  footer.write('conectix', 0, 'latin1');
  footer.writeUInt32BE(0x00000002, 8); // features: the reserved bit the spec says is always set
  footer.writeUInt32BE(0x00010000, 12); // format version 1.0
  footer.fill(0xff, 16, 24); // data offset: none, a fixed disk
  footer.writeUInt32BE(Math.max(0, Math.floor((time.getTime() - VHD_EPOCH_MS) / 1000)) >>> 0, 24);
  footer.write('cvlt', 28, 'latin1');
  footer.writeUInt32BE(0x00010000, 32);
  footer.write('Lnux', 36, 'latin1');
  writeU64(footer, size, 40);
  writeU64(footer, size, 48);
  const geometry = footerGeometry(size / SECTOR);
  footer.writeUInt16BE(geometry.cylinders, 56);
  footer.writeUInt8(geometry.heads, 58);
  footer.writeUInt8(geometry.sectorsPerTrack, 59);
  footer.writeUInt32BE(FIXED_DISK, 60);
  uuid.copy(footer, 68);
  footer.writeUInt32BE(footerChecksum(footer), 64);
  return footer;
}

/** Disk bytes, zeros up to the next sector, then the footer. */
export class VhdLayout implements ViewLayout {
  private readonly dataEnd: number;
  private readonly footer: Buffer;

  constructor(
    private readonly diskSize: number,
    time: Date,
    uuid: Buffer,
  ) {
    this.dataEnd = paddedSize(diskSize);
    this.footer = vhdFooter(diskSize, time, uuid);
  }

  get size(): number {
    return this.dataEnd + FOOTER_BYTES;
  }

  pieces(offset: number, length: number): Piece[] {
    const end = Math.min(offset + length, this.size);
    if (offset >= end) return [];
    const pieces: Piece[] = [];
    if (offset < this.dataEnd) pieces.push(...diskPieces(this.diskSize, offset, Math.min(end, this.dataEnd) - offset));
    if (end > this.dataEnd) {
      const from = Math.max(offset, this.dataEnd);
      pieces.push(bytesPiece(this.footer, this.dataEnd, from, end - from));
    }
    return pieces;
  }
}
