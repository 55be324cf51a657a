/** Partition files in the mount: names, sizes, bytes, a loop-mounted ext4 inside one, damaged tables. */
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { HASH_READ_BYTES, MiB, cliJson, hasCommand, requireCapability, sha256File, treeDigest } from '../helpers/index.js';
import { SECTOR, flipByte, writeAt } from '../helpers/disks.js';
import { corruptChunk } from '../helpers/corrupt.js';
import { canPartition, partitionedStore } from '../helpers/partitioned.js';
import { canMount, errorCode, isMountpoint, startMount } from './mounting.js';

async function sha256Range(path: string, start: number, size: number): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { start, end: start + size - 1, highWaterMark: HASH_READ_BYTES })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Partition files of the fixture: disk label, number, first sector, size; the extended partition mbr 3 has none. */
/** What a disk always shows beside its partition files: its image and its format views, sorted. */
const diskFiles = (label: string): string[] => ['img', 'qcow2', 'vhd', 'vmdk'].map((suffix) => `${label}.${suffix}`);

const PARTITIONS: [string, number, number, number][] = [
  ['gpt', 1, 2048, 10 * MiB],
  ['gpt', 2, 22528, 20 * MiB],
  ['gpt', 3, 63488, 10 * MiB],
  ['gpt', 4, 83968, 10 * MiB],
  ['gpt', 5, 104448, 10 * MiB],
  ['gpt', 6, 124928, 1 * MiB],
  ['gpt', 7, 126976, 5 * MiB],
  ['mbr', 1, 2048, 20 * MiB],
  ['mbr', 2, 43008, 10 * MiB],
  ['mbr', 4, 268288, 141312 * SECTOR],
  ['mbr', 5, 65536, 10 * MiB],
  ['mbr', 6, 88064, 15 * MiB],
  ['mbr', 7, 120832, 147456 * SECTOR],
];

function mountInside(t: Test, image: string, at: string): void {
  const device = execFileSync('losetup', ['-r', '-f', '--show', image], { encoding: 'utf8' }).trim();
  t.teardown(() => execFileSync('losetup', ['-d', device]));
  execFileSync('mount', ['-o', 'ro', device, at]);
  t.teardown(() => isMountpoint(at) && execFileSync('umount', ['-l', at]));
}

t.test('partition files: looked up before any listing, exact sizes, the source bytes, read-only; by-name too', async (t) => {
  if (!canMount(t) || !canPartition(t)) return;
  if (!requireCapability(t, hasCommand('losetup'), 'needs losetup')) return;
  const f = await partitionedStore(t);
  const [point] = await cliJson<{ time: string }[]>(['list', '--store', f.store]);
  // Both GPT headers damaged in a second restore point: its disk is served, without partition files.
  const broken = join(f.dir, 'broken.img');
  await fs.copyFile(f.images.gpt, broken);
  await flipByte(broken, SECTOR + 0x38);
  await flipByte(broken, (200 * 2048 - 1) * SECTOR + 0x38);
  const { id: brokenId } = await cliJson<{ id: string }>(['backup', '--store', f.store, broken]);
  // And a third whose first chunk, the one holding its table, is damaged in the store (made its own by a byte in the gap before partition 1).
  const unreadable = join(f.dir, 'unreadable.img');
  await fs.copyFile(f.images.gpt, unreadable);
  await writeAt(unreadable, 40 * SECTOR, Buffer.from('mine'));
  const { id: unreadableId } = await cliJson<{ id: string }>(['backup', '--store', f.store, unreadable]);
  await corruptChunk(f.store, unreadableId, 'unreadable', 0);
  const mnt = join(f.dir, 'mnt');
  await fs.mkdir(mnt);
  const mount = await startMount(t, f.store, mnt);
  const at = join(mnt, f.id);

  t.equal((await fs.stat(join(at, 'gpt.p2.img'))).size, 20 * MiB, 'a partition file is found by a lookup before its directory is listed');
  t.same((await fs.readdir(at)).sort(), [...['gpt', 'mbr', 'plain'].flatMap(diskFiles), ...PARTITIONS.map(([label, n]) => `${label}.p${n}.img`)].sort());
  for (const [label, number, first, size] of PARTITIONS) {
    const file = join(at, `${label}.p${number}.img`);
    t.equal((await fs.stat(file)).size, size, `${label}.p${number}.img size`);
    t.equal(await sha256File(file), await sha256Range(f.images[label], first * SECTOR, size), `${label}.p${number}.img bytes`);
  }
  const byName = join(mnt, 'by-name', 'gpt', point.time, 'mbr.p5.img');
  t.equal(await sha256File(byName), await sha256Range(f.images.mbr, 65536 * SECTOR, 10 * MiB), 'the same file under by-name');
  t.equal(await errorCode(fs.open(join(at, 'gpt.p1.img'), 'r+')), 'EROFS');

  const inside = join(f.dir, 'inside');
  await fs.mkdir(inside);
  mountInside(t, join(at, 'gpt.p2.img'), inside);
  t.equal(await treeDigest(inside), await treeDigest(f.tree), 'the ext4 in a loop-mounted partition file holds the source files');
  t.equal(await fs.readFile(join(inside, 'etc', 'hostname'), 'utf8'), 'partitioned\n');
  execFileSync('umount', [inside]);

  const brokenDir = join(mnt, brokenId);
  await fs.readdir(mnt);
  await fs.stat(brokenDir);
  t.equal(mount.stderr(), '', 'listing the root and stat-ing a restore point directory read no partition table');
  t.same((await fs.readdir(brokenDir)).sort(), diskFiles('broken'), 'both GPT headers damaged: no partition files');
  t.same((await fs.readdir(brokenDir)).sort(), diskFiles('broken'));
  t.equal(await sha256File(join(brokenDir, 'broken.img')), await sha256File(broken), 'the raw disk still reads right');
  t.equal(
    mount.stderr(),
    `chunkvault: partition table of /${brokenId}/broken.img: GPT primary header damaged (header CRC32 mismatch) and backup header at sector ${200 * 2048 - 1} damaged (header CRC32 mismatch): no partitions read\n`,
    'said once',
  );

  const unreadableDir = join(mnt, unreadableId);
  t.same((await fs.readdir(unreadableDir)).sort(), diskFiles('unreadable'), 'a table in a damaged chunk: no partition files');
  t.same((await fs.readdir(unreadableDir)).sort(), diskFiles('unreadable'));
  t.equal(await errorCode(fs.readFile(join(unreadableDir, 'unreadable.img'))), 'EIO', 'reads of the damaged chunk fail');
  const logged = mount.stderr().split('\n').filter((line) => line.includes(unreadableId));
  t.equal(logged.length, 2, 'the table and the read, each said once');
  t.match(logged[0], new RegExp(`^chunkvault: partition table of /${unreadableId}/unreadable.img: restore point ${unreadableId} disk unreadable at offset 0: .+; no partition files for it$`));
});
