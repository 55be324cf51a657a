/** probeFilesystem / identifyFilesystem on filesystems the real mkfs tools made, checked against blkid. */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { identifyFilesystem, probeFilesystem, PROBE_BYTES } from '../../engine/filesystems.js';
import { bufferBytes } from '../../engine/byte-reader.js';
import { hasCommand, isRoot, requireCapability, tempDir } from '../helpers/index.js';
import { MKFS, blkid, fileBytes, flipByte, makeFilesystem, ntfsBootSector, writeAt, type FsKind } from '../helpers/disks.js';

const KINDS: [FsKind, number, string][] = [
  ['ext2', 16, 'ext2'],
  ['ext3', 16, 'ext3'],
  ['ext4', 16, 'ext4'],
  ['xfs', 300, 'xfs'],
  ['btrfs', 120, 'btrfs'],
  ['vfat', 32, 'vfat'],
  ['fat12', 4, 'vfat'],
  ['fat32', 64, 'vfat'],
  ['exfat', 16, 'exfat'],
  ['swap', 8, 'swap'],
];

for (const [kind, sizeMiB, type] of KINDS) {
  t.test(`${kind}: named as blkid names it, with its label and UUID`, async (t) => {
    if (!requireCapability(t, hasCommand(MKFS[kind]) && hasCommand('blkid'), `needs ${MKFS[kind]} and blkid`)) return;
    const image = join(await tempDir(t), `${kind}.img`);
    makeFilesystem(kind, image, sizeMiB, `L${kind}`.toUpperCase().slice(0, 8));
    const truth = blkid(image);
    t.equal(truth.TYPE, type, 'blkid agrees on the type');
    const found = await identifyFilesystem(fileBytes(image));
    // exFAT keeps its label in the root directory, out of the probe's reach.
    t.same(found, { type, ...(kind === 'exfat' ? {} : { label: truth.LABEL }), uuid: truth.UUID });
    t.equal(await probeFilesystem(fileBytes(image)), type);
  });
}

t.test('LVM physical volume (pvcreate on a loop device)', async (t) => {
  if (!requireCapability(t, isRoot() && hasCommand('pvcreate') && hasCommand('losetup'), 'needs root, losetup and lvm2')) return;
  const image = join(await tempDir(t), 'pv.img');
  execFileSync('truncate', ['-s', '16M', image]);
  const device = execFileSync('losetup', ['-f', '--show', image], { encoding: 'utf8' }).trim();
  try {
    // Without device-mapper only the label can be written: no volume group, no logical volume.
    execFileSync('pvcreate', ['-q', '-y', device], { stdio: 'pipe', env: { ...process.env, LVM_SUPPRESS_FD_WARNINGS: '1' } });
  } finally {
    execFileSync('losetup', ['-d', device]);
  }
  const truth = blkid(image);
  t.equal(truth.TYPE, 'LVM2_member');
  t.same(await identifyFilesystem(fileBytes(image)), { type: 'LVM2_member', uuid: truth.UUID });
});

t.test('ntfs from a documented boot sector: named, its serial as UUID; impossible geometry is damage', async (t) => {
  t.same(await identifyFilesystem(bufferBytes(ntfsBootSector(512))), { type: 'ntfs', uuid: '1234ABCD5678EF90' });
  t.same(await identifyFilesystem(bufferBytes(ntfsBootSector(1000))), { type: 'ntfs', damaged: 'ntfs boot sector has impossible geometry (1000 bytes per sector, 8 per cluster)' });
  t.equal(await probeFilesystem(bufferBytes(ntfsBootSector(1000))), null, 'a damaged superblock is no filesystem to mount');
});

t.test('a flipped byte in a checksummed superblock is damage, not a filesystem', async (t) => {
  const cases: [FsKind, number, number, string][] = [
    ['ext4', 16, 1024 + 0x78, 'ext4 superblock checksum mismatch'],
    ['xfs', 300, 108, 'xfs superblock checksum mismatch'],
    ['btrfs', 120, 0x10000 + 0x12b, 'btrfs superblock checksum mismatch'],
  ];
  for (const [kind, sizeMiB, offset, damaged] of cases) {
    if (!requireCapability(t, hasCommand(MKFS[kind]), `needs ${MKFS[kind]}`)) continue;
    const image = join(await tempDir(t), `${kind}.img`);
    makeFilesystem(kind, image, sizeMiB, 'label');
    await flipByte(image, offset);
    t.same(await identifyFilesystem(fileBytes(image)), { type: kind, damaged }, `${kind}: byte ${offset} flipped`);
    t.equal(await probeFilesystem(fileBytes(image)), null);
  }
});

t.test('ext4 with an impossible block size is damage', async (t) => {
  if (!requireCapability(t, hasCommand('mkfs.ext4'), 'needs mkfs.ext4')) return;
  const image = join(await tempDir(t), 'ext4.img');
  // Without metadata_csum the checksum cannot catch it; the geometry check does.
  execFileSync('truncate', ['-s', '16M', image]);
  execFileSync('mkfs.ext4', ['-q', '-F', '-O', '^metadata_csum', image], { stdio: 'pipe' });
  const logBlockSize = Buffer.alloc(4);
  logBlockSize.writeUInt32LE(9);
  await writeAt(image, 1024 + 0x18, logBlockSize);
  const found = await identifyFilesystem(fileBytes(image));
  t.match(found, { type: 'ext4', damaged: /^ext4 superblock has impossible geometry \(block size 2\^19, \d+ blocks per group, \d+ inodes\)$/ });
});

t.test('nothing recognisable: null, on a device of zeros and on one shorter than a probe', async (t) => {
  t.equal(await identifyFilesystem(bufferBytes(Buffer.alloc(PROBE_BYTES))), null);
  t.equal(await probeFilesystem(bufferBytes(Buffer.alloc(1000))), null);
  t.equal(await probeFilesystem(bufferBytes(Buffer.alloc(0))), null);
});

t.test('probeFilesystem reads the device once, within its first PROBE_BYTES', async (t) => {
  const reads: [number, number][] = [];
  await probeFilesystem(async (offset, length) => (reads.push([offset, length]), Buffer.alloc(length)));
  t.same(reads, [[0, PROBE_BYTES]]);
});
