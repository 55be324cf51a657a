/** readPartitionTable on tables sfdisk and sgdisk wrote, and on the damage a disk can have. */
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { readPartitionTable, type Partition } from '../../engine/partitions.js';
import { bufferBytes } from '../../engine/byte-reader.js';
import { hasCommand, MiB, requireCapability, tempDir } from '../helpers/index.js';
import { GPT_ARGS, MBR_SCRIPT, SECTOR, fileBytes, fileSize, flipByte, makeFilesystem, sfdiskDisk, sgdiskDisk, writeAt } from '../helpers/disks.js';

const GPT_PARTITIONS: Partition[] = [
  { number: 1, type: 'EFI System', typeId: 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b', start: 2048 * SECTOR, size: 10 * MiB, name: 'efi' },
  { number: 2, type: 'Linux filesystem', typeId: '0fc63daf-8483-4772-8e79-3d69d8477de4', start: 22528 * SECTOR, size: 20 * MiB, name: 'root' },
  { number: 3, type: 'Linux swap', typeId: '0657fd6d-a4ab-43c4-84e5-0933c84b4f4f', start: 63488 * SECTOR, size: 10 * MiB },
  { number: 4, type: 'Linux LVM', typeId: 'e6d6d379-f507-44c2-a23c-238f2a3df928', start: 83968 * SECTOR, size: 10 * MiB },
  { number: 5, type: 'Microsoft basic data', typeId: 'ebd0a0a2-b9e5-4433-87c0-68b6b72699c7', start: 104448 * SECTOR, size: 10 * MiB },
  { number: 6, type: 'BIOS boot', typeId: '21686148-6449-6e6f-744e-656564454649', start: 124928 * SECTOR, size: 1 * MiB },
  { number: 7, type: 'FreeBSD UFS', typeId: '516e7cb6-6ecf-11d6-8ff8-00022d09712b', start: 126976 * SECTOR, size: 5 * MiB },
];

const LAST_LBA = (200 * MiB) / SECTOR - 1;

async function tableOf(path: string) {
  return readPartitionTable(fileBytes(path), await fileSize(path));
}

/** What sfdisk itself reads back: number, start and size in bytes, type byte. */
function sfdiskView(path: string): { number: number; start: number; size: number; typeId: string }[] {
  const { partitiontable } = JSON.parse(execFileSync('sfdisk', ['--json', path], { encoding: 'utf8' })) as { partitiontable: { partitions: { node: string; start: number; size: number; type: string }[] } };
  return partitiontable.partitions.map((p) => ({ number: Number(/(\d+)$/.exec(p.node)![1]), start: p.start * SECTOR, size: p.size * SECTOR, typeId: `0x${p.type.padStart(2, '0')}` }));
}

async function mbrDisk(t: Test): Promise<string | null> {
  if (!requireCapability(t, hasCommand('sfdisk'), 'needs sfdisk (fdisk)')) return null;
  const disk = join(await tempDir(t), 'mbr.img');
  sfdiskDisk(disk, 200, MBR_SCRIPT);
  return disk;
}

async function gptDisk(t: Test): Promise<string | null> {
  if (!requireCapability(t, hasCommand('sgdisk'), 'needs sgdisk (gdisk)')) return null;
  const disk = join(await tempDir(t), 'gpt.img');
  sgdiskDisk(disk, 200, GPT_ARGS);
  return disk;
}

/** The EBR sectors of the extended partition starting at `extFirst`, in chain order. */
async function ebrChain(disk: string, extFirst: number): Promise<number[]> {
  const read = fileBytes(disk);
  const chain = [extFirst];
  for (;;) {
    const link = (await read(chain[chain.length - 1] * SECTOR + 446 + 16, 16));
    if (link.readUInt32LE(12) === 0) return chain;
    chain.push(extFirst + link.readUInt32LE(8));
  }
}

t.test('MBR: primaries 1-4, the extended partition, logicals from 5 in chain order, as sfdisk reads them', async (t) => {
  const disk = await mbrDisk(t);
  if (!disk) return;
  const table = await tableOf(disk);
  t.equal(table.scheme, 'mbr');
  t.same(table.problems, []);
  t.same(table.partitions.map(({ number, start, size, typeId }) => ({ number, start, size, typeId })), sfdiskView(disk));
  t.same(table.partitions.map((p) => [p.number, p.type, p.extended ?? false]), [
    [1, 'Linux', false],
    [2, 'Linux swap / Solaris', false],
    [3, 'Extended', true],
    [4, 'Linux LVM', false],
    [5, 'Linux', false],
    [6, 'HPFS/NTFS/exFAT', false],
    [7, 'W95 FAT32', false],
  ]);
});

t.test('an EBR chain that loops back is cut where it loops: the logicals before it stay', async (t) => {
  const disk = await mbrDisk(t);
  if (!disk) return;
  const before = await tableOf(disk);
  const extFirst = before.partitions[2].start / SECTOR;
  const chain = await ebrChain(disk, extFirst);
  t.equal(chain.length, 3, 'three EBRs, one per logical');
  const link = Buffer.alloc(16);
  link[4] = 0x05;
  link.writeUInt32LE(0, 8); // back to the first EBR
  link.writeUInt32LE(2048, 12);
  await writeAt(disk, chain[2] * SECTOR + 446 + 16, link);
  const table = await tableOf(disk);
  t.same(table.problems, [`extended partition 3: its EBR chain loops back to sector ${extFirst}; logical partitions after 7 ignored`]);
  t.same(table.partitions, before.partitions);
});

t.test('an EBR that links outside its extended partition, or lacks its signature, ends the chain there', async (t) => {
  const disk = await mbrDisk(t);
  if (!disk) return;
  const before = await tableOf(disk);
  const ext = before.partitions[2];
  const extFirst = ext.start / SECTOR;
  const chain = await ebrChain(disk, extFirst);
  const far = Buffer.alloc(4);
  far.writeUInt32LE(ext.size / SECTOR + 10);
  await writeAt(disk, chain[0] * SECTOR + 446 + 16 + 8, far);
  const outside = await tableOf(disk);
  t.same(outside.problems, [`extended partition 3: the EBR at sector ${extFirst} links to sector ${extFirst + ext.size / SECTOR + 10}, outside the extended partition; logical partitions after 5 ignored`]);
  t.same(outside.partitions.map((p) => p.number), [1, 2, 3, 4, 5]);

  const again = join(await tempDir(t), 'mbr2.img');
  sfdiskDisk(again, 200, MBR_SCRIPT);
  await writeAt(again, chain[1] * SECTOR + 510, Buffer.alloc(2));
  const unsigned = await tableOf(again);
  t.same(unsigned.problems, [`extended partition 3: the EBR at sector ${chain[1]} has no 0x55AA signature; logical partitions from 6 on ignored`]);
  t.same(unsigned.partitions.map((p) => p.number), [1, 2, 3, 4, 5]);
});

t.test('an MBR partition past the end of the disk is left out and named', async (t) => {
  const disk = await mbrDisk(t);
  if (!disk) return;
  execFileSync('truncate', ['-s', '150M', disk]);
  const table = await tableOf(disk);
  t.same(table.problems, ['partition 4: sectors 268288-409599 lie past the end of the disk (307200 sectors); left out']);
  t.same(table.partitions.map((p) => p.number), [1, 2, 3, 5, 6, 7]);
});

t.test('GPT: entries by index + 1, type names, partition names', async (t) => {
  const disk = await gptDisk(t);
  if (!disk) return;
  t.same(await tableOf(disk), { scheme: 'gpt', partitions: GPT_PARTITIONS, problems: [] });
});

t.test('GPT: a damaged primary header or entry array falls back to the backup header, and says so', async (t) => {
  const disk = await gptDisk(t);
  if (!disk) return;
  await flipByte(disk, SECTOR + 0x38);
  t.same(await tableOf(disk), { scheme: 'gpt', partitions: GPT_PARTITIONS, problems: [`GPT primary header damaged (header CRC32 mismatch); using the backup header at sector ${LAST_LBA}`] });
  await flipByte(disk, SECTOR + 0x38);
  await flipByte(disk, 2 * SECTOR + 56);
  t.same(await tableOf(disk), { scheme: 'gpt', partitions: GPT_PARTITIONS, problems: [`GPT primary header damaged (entry array CRC32 mismatch); using the backup header at sector ${LAST_LBA}`] });
});

t.test('GPT: a damaged backup header is named, the primary used', async (t) => {
  const disk = await gptDisk(t);
  if (!disk) return;
  await flipByte(disk, LAST_LBA * SECTOR + 0x38);
  t.same(await tableOf(disk), { scheme: 'gpt', partitions: GPT_PARTITIONS, problems: ['GPT backup header damaged (header CRC32 mismatch); the primary is used'] });
});

t.test('GPT: both headers damaged: no partitions, one problem naming both', async (t) => {
  const disk = await gptDisk(t);
  if (!disk) return;
  await flipByte(disk, SECTOR + 0x38);
  await writeAt(disk, LAST_LBA * SECTOR, Buffer.from('EFI TRAP'));
  t.same(await tableOf(disk), { scheme: 'gpt', partitions: [], problems: [`GPT primary header damaged (header CRC32 mismatch) and backup header at sector ${LAST_LBA} damaged (no "EFI PART" signature): no partitions read`] });
});

t.test('GPT on a disk cut short: entries past its end left out, the missing backup named', async (t) => {
  const disk = await gptDisk(t);
  if (!disk) return;
  execFileSync('truncate', ['-s', '50M', disk]);
  const table = await tableOf(disk);
  t.same(table.partitions, GPT_PARTITIONS.slice(0, 3));
  t.same(table.problems, [
    `GPT backup header damaged (header at sector ${LAST_LBA} is outside the disk); the primary is used`,
    'partition 4: sectors 83968-104447 are not within the disk (102400 sectors); left out',
    'partition 5: sectors 104448-124927 are not within the disk (102400 sectors); left out',
    'partition 6: sectors 124928-126975 are not within the disk (102400 sectors); left out',
    'partition 7: sectors 126976-137215 are not within the disk (102400 sectors); left out',
  ]);
});

t.test('no table: zeros, a filesystem on the whole disk (FAT, exFAT, ext4), 0x55AA over boot code', async (t) => {
  t.same(await readPartitionTable(bufferBytes(Buffer.alloc(MiB)), MiB), { scheme: 'none', partitions: [], problems: [] });
  const junk = Buffer.alloc(SECTOR, 0x5a);
  junk.writeUInt16LE(0xaa55, 510);
  t.equal((await readPartitionTable(bufferBytes(junk), MiB)).scheme, 'none', 'boot flags other than 0x00 and 0x80: not a table');
  const dir = await tempDir(t);
  for (const kind of ['fat32', 'vfat', 'exfat', 'ext4'] as const) {
    if (!requireCapability(t, hasCommand(kind === 'exfat' ? 'mkfs.exfat' : kind === 'ext4' ? 'mkfs.ext4' : 'mkfs.vfat'), `needs mkfs for ${kind}`)) continue;
    const image = join(dir, `${kind}.img`);
    makeFilesystem(kind, image, 64, 'WHOLE');
    t.equal((await tableOf(image)).scheme, 'none', `${kind} on the whole disk`);
  }
});

t.test('an MBR with no partitions is an empty MBR table', async (t) => {
  if (!requireCapability(t, hasCommand('sfdisk'), 'needs sfdisk')) return;
  const disk = join(await tempDir(t), 'empty.img');
  sfdiskDisk(disk, 8, 'label: dos\n');
  t.same(await tableOf(disk), { scheme: 'mbr', partitions: [], problems: [] });
});

t.test('an EBR chain longer than Linux follows (100) is cut there', async (t) => {
  const ebrs = 150;
  const disk = Buffer.alloc((2048 + ebrs * 2 + 2048) * SECTOR);
  const entry = (at: number, type: number, first: number, count: number): void => {
    disk[at + 4] = type;
    disk.writeUInt32LE(first, at + 8);
    disk.writeUInt32LE(count, at + 12);
  };
  entry(446, 0x05, 2048, ebrs * 2 + 2048);
  disk.writeUInt16LE(0xaa55, 510);
  for (let i = 0; i < ebrs; i++) {
    const at = (2048 + i * 2) * SECTOR;
    entry(at + 446, 0x83, 1, 1); // a one-sector logical right after its EBR
    if (i < ebrs - 1) entry(at + 446 + 16, 0x05, (i + 1) * 2, 2);
    disk.writeUInt16LE(0xaa55, at + 510);
  }
  const table = await readPartitionTable(bufferBytes(disk), disk.length);
  t.same(table.problems, ['extended partition 1: its EBR chain goes on past 100 EBRs; logical partitions after 104 ignored']);
  t.equal(table.partitions.length, 101, 'the extended partition and 100 logicals');
  t.same(table.partitions[100], { number: 104, type: 'Linux', typeId: '0x83', start: (2048 + 99 * 2 + 1) * SECTOR, size: SECTOR });
});
