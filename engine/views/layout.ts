/**
 * A format view is a file generated from a disk's chunk map, nothing stored: its layout says,
 * for any byte range of the file, which bytes are disk bytes (read and checked like the raw
 * image), which are format metadata computed here, and which are zeros.
 */

export type Piece =
  | { kind: 'disk'; at: number; length: number }
  | { kind: 'bytes'; data: Buffer }
  | { kind: 'zeros'; length: number };

export interface ViewLayout {
  /** The view file's size in bytes. */
  readonly size: number;
  /** The pieces of file bytes [offset, offset + length), clipped at the end of the file, in order. */
  pieces(offset: number, length: number): Piece[];
}

/** qemu and the VHD and VMDK formats count in 512-byte sectors. */
export const SECTOR = 512;

/**
 * What a view shows of a disk whose size is not a multiple of 512: the disk followed by zeros
 * up to the next sector, as qemu presents the raw file itself (its raw driver rounds up too).
 */
export function paddedSize(diskSize: number): number {
  return Math.ceil(diskSize / SECTOR) * SECTOR;
}

/** Disk bytes [at, at + length), with what lies past the end of the disk as zeros. */
export function diskPieces(diskSize: number, at: number, length: number): Piece[] {
  const inDisk = Math.max(0, Math.min(length, diskSize - at));
  const pieces: Piece[] = [];
  if (inDisk > 0) pieces.push({ kind: 'disk', at, length: inDisk });
  if (length > inDisk) pieces.push({ kind: 'zeros', length: length - inDisk });
  return pieces;
}

/** Bytes [offset, offset + length) of a buffer that sits at `start` in the file. */
export function bytesPiece(data: Buffer, start: number, offset: number, length: number): Piece {
  return { kind: 'bytes', data: data.subarray(offset - start, offset - start + length) };
}

/** Writes an unsigned integer below 2^53 as 8 big-endian bytes, with bit 63 when `flag63`. */
export function writeU64(into: Buffer, value: number, at: number, flag63 = false): void {
  into.writeUInt32BE((Math.floor(value / 2 ** 32) | (flag63 ? 0x80000000 : 0)) >>> 0, at);
  into.writeUInt32BE(value % 2 ** 32, at + 4);
}
