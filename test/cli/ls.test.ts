/** chunkvault ls: disks, partition tables, partitions and filesystems of a restore point. */
import t from 'tap';
import { join } from 'node:path';
import { MiB, cli, cliJson, treeDigest } from '../helpers/index.js';
import { SECTOR, flipByte, writeAt } from '../helpers/disks.js';
import { canPartition, partitionedStore } from '../helpers/partitioned.js';
import { corruptChunk } from '../helpers/corrupt.js';

const GPT_TYPES = {
  esp: { type: 'EFI System', typeId: 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b' },
  linux: { type: 'Linux filesystem', typeId: '0fc63daf-8483-4772-8e79-3d69d8477de4' },
  swap: { type: 'Linux swap', typeId: '0657fd6d-a4ab-43c4-84e5-0933c84b4f4f' },
  lvm: { type: 'Linux LVM', typeId: 'e6d6d379-f507-44c2-a23c-238f2a3df928' },
  basic: { type: 'Microsoft basic data', typeId: 'ebd0a0a2-b9e5-4433-87c0-68b6b72699c7' },
  bios: { type: 'BIOS boot', typeId: '21686148-6449-6e6f-744e-656564454649' },
  ufs: { type: 'FreeBSD UFS', typeId: '516e7cb6-6ecf-11d6-8ff8-00022d09712b' },
};

function partition(number: number, kind: { type: string; typeId: string }, startSector: number, sizeMiB: number, rest: Record<string, unknown> = {}) {
  return { number, ...kind, start: startSector * SECTOR, size: sizeMiB * MiB, ...rest, filesystem: null };
}

/** What a read-only command must leave as it was; LevelDB rewrites its manifest on every open. */
function dataDigest(store: string): Promise<string[]> {
  return Promise.all(['packs', 'maps', 'catalog'].map((part) => treeDigest(join(store, part))));
}

t.test('ls', async (t) => {
  if (!canPartition(t)) return;
  // One store for all: building it costs seconds; the tests that damage it come last.
  const f = await partitionedStore(t);

  await t.test('ls --json: every disk, its table, its partitions and the filesystem in each', async (t) => {
    const digest = await dataDigest(f.store);
    const got = await cliJson<Record<string, unknown>>(['ls', '--store', f.store, f.id]);
    const [point] = await cliJson<{ name: string; time: string }[]>(['list', '--store', f.store]);
    t.same(got, {
      id: f.id,
      name: 'gpt',
      time: point.time,
      disks: [
        {
          label: 'gpt',
          size: 200 * MiB,
          scheme: 'gpt',
          filesystem: null,
          partitions: [
            { ...partition(1, GPT_TYPES.esp, 2048, 10, { name: 'efi' }), filesystem: { type: 'vfat', label: 'ESP', uuid: f.uuids['gpt.p1'] } },
            { ...partition(2, GPT_TYPES.linux, 22528, 20, { name: 'root' }), filesystem: { type: 'ext4', label: 'root', uuid: f.uuids['gpt.p2'] } },
            { ...partition(3, GPT_TYPES.swap, 63488, 10), filesystem: { type: 'swap', label: 'swap', uuid: f.uuids['gpt.p3'] } },
            partition(4, GPT_TYPES.lvm, 83968, 10),
            partition(5, GPT_TYPES.basic, 104448, 10),
            partition(6, GPT_TYPES.bios, 124928, 1),
            partition(7, GPT_TYPES.ufs, 126976, 5),
          ],
          problems: [],
        },
        {
          label: 'mbr',
          size: 200 * MiB,
          scheme: 'mbr',
          filesystem: null,
          partitions: [
            { number: 1, type: 'Linux', typeId: '0x83', start: 2048 * SECTOR, size: 20 * MiB, filesystem: { type: 'ext2', label: 'boot', uuid: f.uuids['mbr.p1'] } },
            { number: 2, type: 'Linux swap / Solaris', typeId: '0x82', start: 43008 * SECTOR, size: 10 * MiB, filesystem: null },
            { number: 3, type: 'Extended', typeId: '0x05', start: 63488 * SECTOR, size: 100 * MiB, extended: true, filesystem: null },
            { number: 4, type: 'Linux LVM', typeId: '0x8e', start: 268288 * SECTOR, size: 141312 * SECTOR, filesystem: null },
            { number: 5, type: 'Linux', typeId: '0x83', start: 65536 * SECTOR, size: 10 * MiB, filesystem: { type: 'ext3', label: 'var', uuid: f.uuids['mbr.p5'] } },
            { number: 6, type: 'HPFS/NTFS/exFAT', typeId: '0x07', start: 88064 * SECTOR, size: 15 * MiB, filesystem: { type: 'vfat', label: 'DATA', uuid: f.uuids['mbr.p6'] } },
            { number: 7, type: 'W95 FAT32', typeId: '0x0b', start: 120832 * SECTOR, size: 147456 * SECTOR, filesystem: null },
          ],
          problems: [],
        },
        { label: 'plain', size: 16 * MiB, scheme: 'none', filesystem: { type: 'ext4', label: 'plain', uuid: f.uuids.plain }, partitions: [], problems: [] },
      ],
    });
    t.same(await dataDigest(f.store), digest, 'ls changes nothing in the store');

    const plain = await cli(['ls', '--store', f.store, 'gpt@latest', '--disk', 'plain']);
    t.same(plain, { code: 0, stderr: '', stdout: `restore point ${f.id} (gpt, ${point.time})\ndisk plain  16.0 MiB  no partition table  ext4 "plain" ${f.uuids.plain}\n` });
    const human = await cli(['ls', '--store', f.store, f.id, '--disk', 'mbr']);
    t.equal(human.code, 0);
    t.same(human.stdout.split('\n').slice(1, 5), [
      'disk mbr  200 MiB  mbr',
      '  #  TYPE                  START   SIZE      NAME  FILESYSTEM',
      `  1  Linux                 2048    20.0 MiB        ext2 "boot" ${f.uuids['mbr.p1']}`,
      '  2  Linux swap / Solaris  43008   10.0 MiB        -',
    ]);
  });

  await t.test('ls: an unknown ref or disk is the usual one-line error, exit 2', async (t) => {
    t.same(await cli(['ls', '--store', f.store, 'nope']), { code: 2, stdout: '', stderr: "chunkvault: no restore point 'nope' (a REF is an id, an id prefix, latest or NAME@latest)\n" });
    t.same(await cli(['ls', '--store', f.store, f.id, '--disk', 'sdz']), { code: 2, stdout: '', stderr: `chunkvault: restore point ${f.id} has no disk 'sdz' (it has gpt, mbr, plain)\n` });
  });

  await t.test('ls: a damaged table or superblock is a problem beside the rest, exit 0', async (t) => {
    const { gpt, mbr } = f.images;
    await flipByte(gpt, SECTOR + 0x38); // the primary GPT header
    await flipByte(gpt, 22528 * SECTOR + 1024 + 0x78); // the label in partition 2's ext4 superblock
    // The last logical's EBR links back to the first: a loop.
    const link = Buffer.alloc(16);
    link[4] = 0x05;
    link.writeUInt32LE(2048, 12);
    await writeAt(mbr, (120832 - 2048) * SECTOR + 446 + 16, link);
    const { id } = await cliJson<{ id: string }>(['backup', '--store', f.store, gpt, mbr]);

    const got = await cliJson<{ disks: { label: string; problems: unknown[]; partitions: { number: number; filesystem: unknown }[] }[] }>(['ls', '--store', f.store, id]);
    t.same(got.disks[0].problems, [
      { partition: null, problem: `GPT primary header damaged (header CRC32 mismatch); using the backup header at sector ${200 * 2048 - 1}` },
      { partition: 2, problem: 'ext4 superblock checksum mismatch' },
    ]);
    t.same(got.disks[0].partitions.map((p) => p.number), [1, 2, 3, 4, 5, 6, 7], 'the backup header lists them all');
    t.equal(got.disks[0].partitions[1].filesystem, null);
    t.same(got.disks[1].problems, [{ partition: null, problem: 'extended partition 3: its EBR chain loops back to sector 63488; logical partitions after 7 ignored' }]);
    t.same(got.disks[1].partitions.map((p) => p.number), [1, 2, 3, 4, 5, 6, 7]);

    const human = await cli(['ls', '--store', f.store, id]);
    t.equal(human.code, 0);
    t.match(human.stdout, `\n  PROBLEM GPT primary header damaged (header CRC32 mismatch); using the backup header at sector 409599\n  PROBLEM partition 2: ext4 superblock checksum mismatch\ndisk mbr`);
    t.match(human.stdout, /\n {2}PROBLEM extended partition 3: its EBR chain loops back to sector 63488; logical partitions after 7 ignored\n$/);
  });

  await t.test('ls: a damaged chunk is damaged data naming restore point, disk and offset, exit 1', async (t) => {
    await corruptChunk(f.store, f.id, 'gpt', 0);
    const digest = await dataDigest(f.store);
    const result = await cli(['ls', '--store', f.store, f.id]);
    t.equal(result.code, 1);
    t.equal(result.stdout, '');
    t.match(result.stderr, new RegExp(`^chunkvault: restore point ${f.id} disk gpt at offset 0: [^\\n]+\\n$`));
    t.same(await dataDigest(f.store), digest);
    t.equal((await cli(['ls', '--store', f.store, f.id, '--disk', 'plain'])).code, 0, 'the other disks still list');
  });
});

