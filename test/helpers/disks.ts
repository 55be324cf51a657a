/** Partitioned disk images made by the real tools (sfdisk, sgdisk, mkfs.*), as sparse files. */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import type { ReadBytes } from '../../engine/byte-reader.js';

export const SECTOR = 512;

/** Primaries 1, 2 and 4 around an extended partition 3 holding logicals 5, 6 and 7. */
export const MBR_SCRIPT = 'label: dos\nstart=2048, size=20M, type=83\nsize=10M, type=82\nsize=100M, type=5\ntype=8e\nsize=10M, type=83\nsize=15M, type=7\ntype=b\n';

/** Seven GPT partitions of as many types, two of them named. */
export const GPT_ARGS = ['-n1:1M:+10M', '-t1:ef00', '-c1:efi', '-n2:0:+20M', '-t2:8300', '-c2:root', '-n3:0:+10M', '-t3:8200', '-n4:0:+10M', '-t4:8e00', '-n5:0:+10M', '-t5:0700', '-n6:0:+1M', '-t6:ef02', '-n7:0:+5M', '-t7:a503'];

/** A sparse file of sizeMiB with the partitions an sfdisk script describes (`label: dos` or `label: gpt` first). */
export function sfdiskDisk(path: string, sizeMiB: number, script: string): void {
  execFileSync('truncate', ['-s', `${sizeMiB}M`, path]);
  execFileSync('sfdisk', ['-q', path], { input: script, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** A sparse file of sizeMiB partitioned by sgdisk with `args` (-n, -t, -c...). */
export function sgdiskDisk(path: string, sizeMiB: number, args: string[]): void {
  execFileSync('truncate', ['-s', `${sizeMiB}M`, path]);
  execFileSync('sgdisk', [...args, path], { stdio: 'pipe' });
}

export type FsKind = 'ext2' | 'ext3' | 'ext4' | 'xfs' | 'btrfs' | 'vfat' | 'fat12' | 'fat32' | 'exfat' | 'swap';

/** The command each kind is made with: a test that needs one checks it is installed. */
export const MKFS: Record<FsKind, string> = {
  ext2: 'mkfs.ext2',
  ext3: 'mkfs.ext3',
  ext4: 'mkfs.ext4',
  xfs: 'mkfs.xfs',
  btrfs: 'mkfs.btrfs',
  vfat: 'mkfs.vfat',
  fat12: 'mkfs.vfat',
  fat32: 'mkfs.vfat',
  exfat: 'mkfs.exfat',
  swap: 'mkswap',
};

/** A filesystem of `kind` labelled `label` in a new sparse file of sizeMiB (xfs needs 300, btrfs 114). */
export function makeFilesystem(kind: FsKind, path: string, sizeMiB: number, label: string): void {
  execFileSync('truncate', ['-s', `${sizeMiB}M`, path]);
  const args: Record<FsKind, string[]> = {
    ext2: ['-q', '-F', '-L', label],
    ext3: ['-q', '-F', '-L', label],
    ext4: ['-q', '-F', '-L', label],
    xfs: ['-q', '-f', '-L', label],
    btrfs: ['-q', '-f', '-L', label],
    vfat: ['-F', '16', '-n', label],
    fat12: ['-F', '12', '-n', label],
    fat32: ['-F', '32', '-n', label],
    exfat: ['-L', label],
    swap: ['-L', label],
  };
  execFileSync(MKFS[kind], [...args[kind], path], { stdio: 'pipe' });
}

/** Copies `image` into `disk` at byte `start`, holes kept as holes. */
export function placeImage(disk: string, start: number, image: string): void {
  execFileSync('dd', [`if=${image}`, `of=${disk}`, `bs=${SECTOR}`, `seek=${start / SECTOR}`, 'conv=notrunc,sparse', 'status=none']);
}

/** What blkid itself says of a device (-p: from the superblock, not its cache). */
export function blkid(path: string): Record<string, string> {
  const out = execFileSync('blkid', ['-p', '-o', 'export', path], { encoding: 'utf8' });
  return Object.fromEntries(out.trim().split('\n').map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]));
}

/** XORs one byte of a file with 0xff. */
export async function flipByte(path: string, offset: number): Promise<void> {
  const handle = await fs.open(path, 'r+');
  try {
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, offset);
    byte[0] ^= 0xff;
    await handle.write(byte, 0, 1, offset);
  } finally {
    await handle.close();
  }
}

export async function writeAt(path: string, offset: number, data: Buffer): Promise<void> {
  const handle = await fs.open(path, 'r+');
  try {
    await handle.write(data, 0, data.length, offset);
  } finally {
    await handle.close();
  }
}

/** Reads of a plain file, for the parsers without a store (each read opens the file: tests only). */
export function fileBytes(path: string): ReadBytes {
  return async (offset, length) => {
    const handle = await fs.open(path, 'r');
    try {
      const into = Buffer.alloc(length);
      const { bytesRead } = await handle.read(into, 0, length, offset);
      return into.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  };
}

export async function fileSize(path: string): Promise<number> {
  return (await fs.stat(path)).size;
}

/** An NTFS boot sector laid out as documented (mkntfs needs ntfs-3g, which cannot be installed here). */
export function ntfsBootSector(bytesPerSector: number): Buffer {
  const sector = Buffer.alloc(512);
  sector.set([0xeb, 0x52, 0x90], 0);
  sector.write('NTFS    ', 3, 'latin1');
  sector.writeUInt16LE(bytesPerSector, 11);
  sector[13] = 8; // sectors per cluster
  sector[21] = 0xf8; // media: fixed disk
  sector.writeBigUInt64LE(204799n, 0x28); // total sectors
  sector.writeBigUInt64LE(4n, 0x30); // $MFT cluster
  sector.writeBigUInt64LE(0x1234abcd5678ef90n, 0x48); // volume serial
  sector.writeUInt16LE(0xaa55, 510);
  return sector;
}
