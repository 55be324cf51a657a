/**
 * What filesystem (or volume manager, or swap) a device holds, from its superblock, with the
 * names blkid gives them: ext2/ext3/ext4, xfs, btrfs, vfat, exfat, ntfs, swap, LVM2_member.
 * A superblock whose magic is there but whose checksum or basic geometry is wrong is reported
 * as damaged rather than named: nothing should try to mount it on our word.
 */
import type { ReadBytes } from './byte-reader.js';
import { crc32c } from './crc32c.js';

export interface FilesystemInfo {
  type: string;
  label?: string;
  uuid?: string;
}

export type FilesystemProbe = FilesystemInfo | { type: string; damaged: string };

/** What a probe needs to see of a device: every probe below reads within it. */
export const PROBE_BYTES = 0x11000;

const SECTOR = 512;

/** NUL-padded (and for FAT, space-padded) text; undefined when empty. */
function text(bytes: Buffer, encoding: BufferEncoding = 'utf8'): string | undefined {
  const value = bytes.toString(encoding).replace(/\0.*$/s, '').trimEnd();
  return value === '' ? undefined : value;
}

/** A UUID as blkid prints it: 8-4-4-4-12 lowercase hex, bytes in order. */
function uuidOf(bytes: Buffer): string | undefined {
  if (bytes.every((b) => b === 0)) return undefined;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

function withOptional(type: string, label: string | undefined, uuid: string | undefined): FilesystemInfo {
  return { type, ...(label === undefined ? {} : { label }), ...(uuid === undefined ? {} : { uuid }) };
}

// ext2/3/4 feature bits (linux/fs/ext4/ext4.h), as blkid tells the three apart.
const EXT_COMPAT_HAS_JOURNAL = 0x4;
const EXT_INCOMPAT_JOURNAL_DEV = 0x8;
const EXT2_INCOMPAT_SUPPORTED = 0x2 | 0x10; // filetype, meta_bg
const EXT3_INCOMPAT_SUPPORTED = EXT2_INCOMPAT_SUPPORTED | 0x4; // + recover
const EXT2_RO_COMPAT_SUPPORTED = 0x1 | 0x2 | 0x4; // sparse_super, large_file, btree_dir
const EXT_RO_COMPAT_METADATA_CSUM = 0x400;
const EXT_SUPERBLOCK = 1024;
const EXT_CHECKSUM_AT = 0x3fc;

function extType(compat: number, incompat: number, roCompat: number): string {
  if (incompat & EXT_INCOMPAT_JOURNAL_DEV) return 'jbd';
  const ext2Like = (roCompat & ~EXT2_RO_COMPAT_SUPPORTED) === 0;
  if (!(compat & EXT_COMPAT_HAS_JOURNAL) && ext2Like && (incompat & ~EXT2_INCOMPAT_SUPPORTED) === 0) return 'ext2';
  if (compat & EXT_COMPAT_HAS_JOURNAL && ext2Like && (incompat & ~EXT3_INCOMPAT_SUPPORTED) === 0) return 'ext3';
  return 'ext4';
}

function probeExt(sb: Buffer): FilesystemProbe | null {
  if (sb.length < 1024 || sb.readUInt16LE(0x38) !== 0xef53) return null;
  const type = extType(sb.readUInt32LE(0x5c), sb.readUInt32LE(0x60), sb.readUInt32LE(0x64));
  const logBlockSize = sb.readUInt32LE(0x18);
  if (logBlockSize > 6 || sb.readUInt32LE(0x20) === 0 || sb.readUInt32LE(0x00) === 0) {
    return { type, damaged: `${type} superblock has impossible geometry (block size 2^${10 + logBlockSize}, ${sb.readUInt32LE(0x20)} blocks per group, ${sb.readUInt32LE(0)} inodes)` };
  }
  // The kernel stores crc32c without its final inversion.
  if (sb.readUInt32LE(0x64) & EXT_RO_COMPAT_METADATA_CSUM && sb.readUInt32LE(EXT_CHECKSUM_AT) !== (~crc32c(sb.subarray(0, EXT_CHECKSUM_AT)) >>> 0)) {
    return { type, damaged: `${type} superblock checksum mismatch` };
  }
  return withOptional(type, text(sb.subarray(0x78, 0x88)), uuidOf(sb.subarray(0x68, 0x78)));
}

const XFS_CRC_AT = 224;

function probeXfs(sb: Buffer): FilesystemProbe | null {
  if (sb.length < SECTOR || sb.toString('latin1', 0, 4) !== 'XFSB') return null;
  const blockSize = sb.readUInt32BE(4);
  const sectorSize = sb.readUInt16BE(102);
  if (!isPowerOfTwo(blockSize) || blockSize < 512 || blockSize > 65536 || !isPowerOfTwo(sectorSize) || sectorSize < 512 || sectorSize > sb.length) {
    return { type: 'xfs', damaged: `xfs superblock has impossible geometry (block size ${blockSize}, sector size ${sectorSize})` };
  }
  if ((sb.readUInt16BE(100) & 0xf) === 5) {
    const sector = Buffer.from(sb.subarray(0, sectorSize));
    const stored = sector.readUInt32LE(XFS_CRC_AT);
    sector.writeUInt32LE(0, XFS_CRC_AT);
    if (stored !== crc32c(sector)) return { type: 'xfs', damaged: 'xfs superblock checksum mismatch' };
  }
  return withOptional('xfs', text(sb.subarray(108, 120)), uuidOf(sb.subarray(32, 48)));
}

const BTRFS_SUPERBLOCK = 0x10000;
const BTRFS_SUPERBLOCK_BYTES = 4096;
const BTRFS_CSUM_CRC32C = 0;

function probeBtrfs(sb: Buffer): FilesystemProbe | null {
  if (sb.length < BTRFS_SUPERBLOCK_BYTES || sb.toString('latin1', 0x40, 0x48) !== '_BHRfS_M') return null;
  // Other checksum kinds (xxhash, sha256, blake2) are not checked here.
  if (sb.readUInt16LE(0xc4) === BTRFS_CSUM_CRC32C && sb.readUInt32LE(0) !== crc32c(sb.subarray(0x20, BTRFS_SUPERBLOCK_BYTES))) {
    return { type: 'btrfs', damaged: 'btrfs superblock checksum mismatch' };
  }
  return withOptional('btrfs', text(sb.subarray(0x12b, 0x12b + 256)), uuidOf(sb.subarray(0x20, 0x30)));
}

function hasBootSignature(sector: Buffer): boolean {
  return sector.length >= SECTOR && sector.readUInt16LE(510) === 0xaa55;
}

/** The jump instruction every FAT and NTFS boot sector starts with. */
function hasBootJump(sector: Buffer): boolean {
  return sector[0] === 0xe9 || (sector[0] === 0xeb && sector[2] === 0x90);
}

/** A FAT BIOS parameter block that makes sense (as blkid's vfat probe checks it). */
export function isFatBootSector(sector: Buffer): boolean {
  if (!hasBootSignature(sector) || !hasBootJump(sector) || sector.toString('latin1', 3, 11) === 'NTFS    ' || sector.toString('latin1', 3, 11) === 'EXFAT   ') return false;
  const bytesPerSector = sector.readUInt16LE(11);
  const media = sector[21];
  return (
    isPowerOfTwo(bytesPerSector) && bytesPerSector >= 512 && bytesPerSector <= 4096 &&
    isPowerOfTwo(sector[13]) && sector.readUInt16LE(14) > 0 && (sector[16] === 1 || sector[16] === 2) &&
    (media === 0xf0 || media >= 0xf8)
  );
}

/** FAT32 keeps its sectors per FAT at 36 and its label and serial further on than FAT12/16. */
function probeFat(sector: Buffer): FilesystemProbe | null {
  if (!isFatBootSector(sector)) return null;
  const fat32 = sector.readUInt16LE(22) === 0 && sector.readUInt32LE(36) !== 0;
  const at = fat32 ? 64 : 36;
  // Extended boot signature 0x29: the serial and label fields are there.
  if (sector[at + 2] !== 0x29) return { type: 'vfat' };
  const serial = sector.readUInt32LE(at + 3).toString(16).toUpperCase().padStart(8, '0');
  const label = text(sector.subarray(at + 7, at + 18), 'latin1');
  return withOptional('vfat', label === 'NO NAME' ? undefined : label, `${serial.slice(0, 4)}-${serial.slice(4)}`);
}

export function isNtfsBootSector(sector: Buffer): boolean {
  return hasBootSignature(sector) && sector.toString('latin1', 3, 11) === 'NTFS    ';
}

/** NTFS keeps its label in the $Volume file, out of a probe's reach: the serial is its UUID, as blkid shows it. */
function probeNtfs(sector: Buffer): FilesystemProbe | null {
  if (!isNtfsBootSector(sector)) return null;
  const bytesPerSector = sector.readUInt16LE(11);
  if (!isPowerOfTwo(bytesPerSector) || bytesPerSector < 256 || bytesPerSector > 4096 || sector[13] === 0) {
    return { type: 'ntfs', damaged: `ntfs boot sector has impossible geometry (${bytesPerSector} bytes per sector, ${sector[13]} per cluster)` };
  }
  const serial = sector.readBigUInt64LE(0x48);
  return withOptional('ntfs', undefined, serial === 0n ? undefined : serial.toString(16).toUpperCase().padStart(16, '0'));
}

export function isExfatBootSector(sector: Buffer): boolean {
  return hasBootSignature(sector) && sector.toString('latin1', 3, 11) === 'EXFAT   ';
}

function probeExfat(sector: Buffer): FilesystemProbe | null {
  if (!isExfatBootSector(sector)) return null;
  const serial = sector.readUInt32LE(100).toString(16).toUpperCase().padStart(8, '0');
  return withOptional('exfat', undefined, `${serial.slice(0, 4)}-${serial.slice(4)}`);
}

/** Swap's signature ends its first page; pages other than 4 KiB (arm64, ppc64) are not looked for. */
const SWAP_PAGE = 4096;

function probeSwap(page: Buffer): FilesystemProbe | null {
  if (page.length < SWAP_PAGE) return null;
  const signature = page.toString('latin1', SWAP_PAGE - 10, SWAP_PAGE);
  if (signature === 'SWAP-SPACE') return { type: 'swap' };
  if (signature !== 'SWAPSPACE2') return null;
  return withOptional('swap', text(page.subarray(1052, 1068)), uuidOf(page.subarray(1036, 1052)));
}

/** An LVM physical volume's label is in one of its first four sectors. */
function probeLvm(head: Buffer): FilesystemProbe | null {
  for (let sector = 0; sector < 4; sector++) {
    const label = head.subarray(sector * SECTOR, (sector + 1) * SECTOR);
    if (label.length < SECTOR || label.toString('latin1', 0, 8) !== 'LABELONE' || label.toString('latin1', 24, 32) !== 'LVM2 001') continue;
    const id = label.toString('latin1', 32, 64);
    // LVM prints its 32-character ids in groups of 6-4-4-4-4-4-6.
    const uuid = [0, 6, 10, 14, 18, 22, 26].map((from, i, all) => id.slice(from, all[i + 1] ?? 32)).join('-');
    return { type: 'LVM2_member', uuid };
  }
  return null;
}

/** Every probe on the first PROBE_BYTES of a device, most specific magic first; null when none matches. */
export async function identifyFilesystem(read: ReadBytes): Promise<FilesystemProbe | null> {
  const head = await read(0, PROBE_BYTES);
  return (
    probeExt(head.subarray(EXT_SUPERBLOCK, EXT_SUPERBLOCK + 1024)) ??
    probeXfs(head) ??
    probeBtrfs(head.subarray(BTRFS_SUPERBLOCK, BTRFS_SUPERBLOCK + BTRFS_SUPERBLOCK_BYTES)) ??
    probeNtfs(head) ??
    probeExfat(head) ??
    probeFat(head) ??
    probeSwap(head) ??
    probeLvm(head)
  );
}

export function isDamaged(probe: FilesystemProbe): probe is { type: string; damaged: string } {
  return 'damaged' in probe;
}

/** The filesystem's name (blkid's TYPE), or null when none is recognised or its superblock is damaged. */
export async function probeFilesystem(read: (offset: number, length: number) => Promise<Buffer>): Promise<string | null> {
  const probe = await identifyFilesystem(read);
  return probe === null || isDamaged(probe) ? null : probe.type;
}
