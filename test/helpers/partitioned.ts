/**
 * A restore point of three disks, for ls and the mount: `gpt` (GPT: vfat in 1, ext4 with a file
 * tree in 2, swap in 3), `mbr` (MBR: ext2 in 1, ext3 in logical 5, vfat in logical 6) and
 * `plain` (ext4, no partition table).
 */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import { cliJson, ext4Image, hasCommand, requireCapability, seededBytes, tempDir } from './index.js';
import { GPT_ARGS, MBR_SCRIPT, SECTOR, blkid, makeFilesystem, placeImage, sfdiskDisk, sgdiskDisk, type FsKind } from './disks.js';

export interface PartitionedFixture {
  dir: string;
  /** The files in gpt partition 2's ext4. */
  tree: string;
  store: string;
  id: string;
  /** Source image of each disk label. */
  images: Record<string, string>;
  /** blkid's UUID of the filesystem placed at `<label>.p<N>` (`plain` for the whole disk). */
  uuids: Record<string, string>;
}

const TOOLS = ['sfdisk', 'sgdisk', 'mkfs.ext4', 'e2label', 'mkfs.ext3', 'mkfs.ext2', 'mkfs.vfat', 'mkswap', 'blkid'];

export function canPartition(t: Test): boolean {
  return requireCapability(t, TOOLS.every(hasCommand), `needs ${TOOLS.join(', ')}`);
}

/** Places a new filesystem at partition `number` of `disk`, and returns its UUID. */
function fill(dir: string, disk: string, start: number, kind: FsKind, sizeMiB: number, label: string): string {
  const image = join(dir, `${label}.fs`);
  makeFilesystem(kind, image, sizeMiB, label);
  placeImage(disk, start, image);
  return blkid(image).UUID;
}

/** A few files of text and random bytes, for the ext4 in gpt partition 2. */
async function fileTree(tree: string): Promise<void> {
  await fs.mkdir(join(tree, 'etc'), { recursive: true });
  await fs.writeFile(join(tree, 'etc', 'hostname'), 'partitioned\n');
  await fs.writeFile(join(tree, 'random.bin'), seededBytes(17, 3_000_000));
}

export async function partitionedStore(t: Test): Promise<PartitionedFixture> {
  const dir = await tempDir(t);
  const tree = join(dir, 'tree');
  await fileTree(tree);
  const gpt = join(dir, 'gpt.img');
  const mbr = join(dir, 'mbr.img');
  const plain = join(dir, 'plain.img');
  sgdiskDisk(gpt, 200, GPT_ARGS);
  sfdiskDisk(mbr, 200, MBR_SCRIPT);
  const uuids: Record<string, string> = {};
  uuids['gpt.p1'] = fill(dir, gpt, 2048 * SECTOR, 'vfat', 10, 'ESP');
  const root = join(dir, 'root.fs');
  ext4Image(root, 20, tree);
  execFileSync('e2label', [root, 'root']);
  placeImage(gpt, 22528 * SECTOR, root);
  uuids['gpt.p2'] = blkid(root).UUID;
  uuids['gpt.p3'] = fill(dir, gpt, 63488 * SECTOR, 'swap', 10, 'swap');
  uuids['mbr.p1'] = fill(dir, mbr, 2048 * SECTOR, 'ext2', 20, 'boot');
  uuids['mbr.p5'] = fill(dir, mbr, 65536 * SECTOR, 'ext3', 10, 'var');
  uuids['mbr.p6'] = fill(dir, mbr, 88064 * SECTOR, 'vfat', 15, 'DATA');
  makeFilesystem('ext4', plain, 16, 'plain');
  uuids.plain = blkid(plain).UUID;
  const store = join(dir, 'store');
  await cliJson(['init', '--store', store]);
  const { id } = await cliJson<{ id: string }>(['backup', '--store', store, gpt, mbr, plain]);
  return { dir, tree, store, id, images: { gpt, mbr, plain }, uuids };
}
