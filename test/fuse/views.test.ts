/**
 * The format and differential views through a real mount, read by the real qemu-img: exact
 * sizes, clean checks, the same bytes as the restored disk, holes and differences exactly at
 * the slots the maps say, ENOENT (and one log line) for pairs that cannot be compared, and EIO
 * for exactly the range of a damaged chunk.
 */
import t, { type Test } from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { MiB, cliJson, requireCapability, seededBytes, tempDir, writeImage, type Part } from '../helpers/index.js';
import { corruptChunk } from '../helpers/corrupt.js';
import { checkProblems, hasQemuImg, mapRanges, qemuImg, qemuMap, slotRanges, virtualSize, type Range } from '../helpers/views.js';
import { canMount, errorCode, eventually, startMount } from './mounting.js';

const FORMATS = { vhd: 'vpc', vmdk: 'vmdk', qcow2: 'qcow2' } as const;

function canRun(t: Test): boolean {
  return canMount(t) && requireCapability(t, hasQemuImg(), 'needs qemu-img (qemu-utils)');
}

const padded = (size: number): number => Math.ceil(size / 512) * 512;

/** Slots (of 1 MiB) of `image` whose bytes `pick` selects. */
function slotsOf(size: number, pick: (slot: number) => boolean): Range[] {
  return slotRanges(Math.ceil(size / MiB), MiB, padded(size), pick);
}

const chunk = (image: Buffer, slot: number): Buffer => image.subarray(slot * MiB, (slot + 1) * MiB);
const isZero = (data: Buffer): boolean => data.every((b) => b === 0);

async function identical(t: Test, raw: string, file: string, format: string): Promise<void> {
  t.match(await qemuImg(['compare', '-f', 'raw', '-F', format, raw, file]), /Images are identical/, `${file} reads as ${raw}`);
}

t.test('views and differences of restore points', async (t) => {
  if (!canRun(t)) return;
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  const v1Parts: Part[] = [
    { kind: 'random', bytes: 3 * MiB, seed: 1 },
    { kind: 'zero', bytes: 5 * MiB },
    { kind: 'random', bytes: 2 * MiB, seed: 2 },
    { kind: 'zero', bytes: 6 * MiB },
    { kind: 'text', bytes: 4 * MiB },
    { kind: 'random', bytes: 1000, seed: 3 },
  ];
  const v1File = join(dir, 'v1', 'disk');
  const v2File = join(dir, 'v2', 'disk');
  const v3File = join(dir, 'v3', 'disk');
  for (const sub of ['v1', 'v2', 'v3', 'out', 'mnt']) await fs.mkdir(join(dir, sub));
  const size = await writeImage(v1File, v1Parts);
  const v1 = await fs.readFile(v1File);
  const v2 = Buffer.from(v1);
  v2.fill(0, 1 * MiB, 2 * MiB);
  seededBytes(80, MiB).copy(v2, 8 * MiB);
  seededBytes(120, 4096).copy(v2, 12 * MiB + 5000);
  await fs.writeFile(v2File, v2);
  await writeImage(v3File, [...v1Parts, { kind: 'random', bytes: MiB, seed: 4 }]);

  await cliJson(['init', '--store', store]);
  const backup = async (args: string[]): Promise<string> => (await cliJson<{ id: string }>(['backup', '--store', store, ...args])).id;
  const p1 = await backup([v1File]);
  const p2 = await backup([v2File]);
  const other = await backup(['--name', 'other', v1File]);
  const p4 = await backup(['--no-parent', v3File]);
  for (const id of [p1, p2]) await cliJson(['restore', '--store', store, id, join(dir, 'out', `${id}.raw`)]);
  const restored = (id: string): string => join(dir, 'out', `${id}.raw`);

  const mnt = join(dir, 'mnt');
  const mount = await startMount(t, store, mnt);
  const at = (...parts: string[]): string => join(mnt, ...parts);

  t.test('each restore point directory holds the views beside the image', async (t) => {
    t.same((await fs.readdir(at(p2))).sort(), ['disk.img', 'disk.qcow2', 'disk.vhd', 'disk.vmdk']);
    t.same((await fs.readdir(at('by-name', 'disk', 'latest'))).sort(), ['disk.img', 'disk.qcow2', 'disk.vhd', 'disk.vmdk']);
  });

  t.test('qemu-img: exact size, clean checks, the restored bytes', async (t) => {
    for (const [suffix, format] of Object.entries(FORMATS)) {
      const file = at(p2, `disk.${suffix}`);
      t.equal(await virtualSize(file, format), padded(size), `${suffix}: the disk's size, to the next sector`);
      if (format !== 'vpc') t.same(await checkProblems(file, format), {}, `${suffix}: qemu-img check is clean`);
      await identical(t, restored(p2), file, format);
    }
    t.match(await qemuImg(['compare', '-f', 'raw', '-F', 'qcow2', restored(p1), at(p1, 'disk.qcow2')]), /Images are identical/);
  });

  t.test('the qcow2 view holds data exactly at the slots that are not zero chunks', async (t) => {
    const expected = slotsOf(size, (slot) => !isZero(chunk(v2, slot)));
    t.same(mapRanges(await qemuMap(at(p2, 'disk.qcow2')), (e) => e.data), expected);
    t.same(mapRanges(await qemuMap(at(p2, 'disk.qcow2')), (e) => !e.data && e.zero), slotsOf(size, (slot) => isZero(chunk(v2, slot))));
  });

  t.test('diff/ lists parent..child and consecutive pairs of one name', async (t) => {
    t.same((await fs.readdir(at('diff'))).sort(), [`${p1}..${p2}`, `${p2}..${p4}`].sort());
    t.same(await fs.readdir(at('diff', `${p1}..${p2}`)), ['disk.qcow2']);
    t.same(await fs.readdir(at('diff', `${p2}..${p4}`)), [], 'a disk whose size changed has no difference');
  });

  t.test('a difference: backed by the older image, allocated exactly at the changed slots, the newer bytes', async (t) => {
    const file = at('diff', `${p1}..${p2}`, 'disk.qcow2');
    const info = JSON.parse(await qemuImg(['info', '--output=json', file])) as Record<string, unknown>;
    t.equal(info['backing-filename'], `../../${p1}/disk.img`);
    t.equal(info['backing-filename-format'], 'raw');
    t.same(await checkProblems(file), {});
    const entries = await qemuMap(file);
    const changed = (slot: number): boolean => !chunk(v1, slot).equals(chunk(v2, slot));
    t.same(mapRanges(entries, (e) => e.depth === 0), slotsOf(size, changed), 'the overlay holds the changed slots, nothing else');
    t.same(mapRanges(entries, (e) => e.depth === 0 && e.zero && !e.data), slotsOf(size, (slot) => changed(slot) && isZero(chunk(v2, slot))), 'a slot that became zero is a zero cluster');
    await identical(t, restored(p2), file, 'qcow2');
  });

  t.test('any other pair of one name resolves on lookup', async (t) => {
    const file = at('diff', `${p2}..${p1}`, 'disk.qcow2');
    await identical(t, restored(p1), file, 'qcow2');
  });

  t.test('pairs that cannot be compared: ENOENT and one line in the log naming why', async (t) => {
    t.equal(await errorCode(fs.stat(at('diff', `${p1}..${other}`))), 'ENOENT');
    t.equal(await errorCode(fs.stat(at('diff', `${p2}..${p4}`, 'disk.qcow2'))), 'ENOENT');
    t.equal(await errorCode(fs.stat(at('diff', `${p4}..${p1}`, 'disk.qcow2'))), 'ENOENT');
    await eventually(() => mount.stderr().includes(`disk 'disk' is ${size + MiB} bytes in ${p4} and ${size} bytes in ${p1}`), 5000, 'the size line');
    t.match(mount.stderr(), `no /diff/${p1}..${other}: restore points ${p1} (disk) and ${other} (other) have different names`);
    t.match(mount.stderr(), `no disk.qcow2 in /diff/${p2}..${p4}: disk 'disk' is ${size} bytes in ${p2} and ${size + MiB} bytes in ${p4}`);
    t.equal(mount.stderr().split('\n').filter((l) => l.includes(`/diff/${p1}..${other}`)).length, 1, 'once, however often it is looked up');
  });
});

/** Opens `file` and reads `length` bytes at `offset`: the bytes, or the errno code the open or the read failed with. */
async function pread(file: string, offset: number, length: number): Promise<Buffer | string> {
  let handle: fs.FileHandle | null = null;
  try {
    handle = await fs.open(file, 'r');
    const out = Buffer.alloc(length);
    const { bytesRead } = await handle.read(out, 0, length, offset);
    return out.subarray(0, bytesRead);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  } finally {
    await handle?.close();
  }
}

t.test('a damaged chunk: EIO through every view for exactly its range; a map that is gone: EIO on stat, logged once', async (t) => {
  if (!canRun(t)) return;
  const dir = await tempDir(t);
  const image = join(dir, 'disk.img');
  await writeImage(image, [{ kind: 'random', bytes: 6 * MiB, seed: 9 }]);
  const source = await fs.readFile(image);
  const store = join(dir, 'store');
  await cliJson(['init', '--store', store]);
  const { id } = await cliJson<{ id: string }>(['backup', '--store', store, image]);
  const { id: mapless } = await cliJson<{ id: string }>(['backup', '--store', store, image]);
  await corruptChunk(store, id, 'disk', 2);
  await fs.truncate(join(store, 'maps', mapless, 'disk.map'), 10);
  const mnt = join(dir, 'mnt');
  await fs.mkdir(mnt);
  const mount = await startMount(t, store, mnt);

  const vhd = join(mnt, id, 'disk.vhd');
  t.equal(await pread(vhd, 2 * MiB + 100, 100), 'EIO', 'vhd: inside the damaged chunk');
  t.same(await pread(vhd, 2 * MiB - 100, 100), source.subarray(2 * MiB - 100, 2 * MiB), 'vhd: just before it');
  t.same(await pread(vhd, 3 * MiB, 100), source.subarray(3 * MiB, 3 * MiB + 100), 'vhd: just after it');

  const qcow2 = join(mnt, id, 'disk.qcow2');
  const hostOffset = (slot: number): number => {
    const entry = entries.find((e) => e.start <= slot * MiB && slot * MiB < e.start + e.length)!;
    return entry.offset! + slot * MiB - entry.start;
  };
  const entries = await qemuMap(qcow2);
  t.equal(await pread(qcow2, hostOffset(2) + 100, 100), 'EIO', 'qcow2: inside the damaged chunk');
  for (const slot of [1, 3]) t.same(await pread(qcow2, hostOffset(slot), MiB), chunk(source, slot), `qcow2: slot ${slot} reads right`);
  t.same(await checkProblems(qcow2), {}, 'the metadata does not touch the damaged chunk');
  t.match(mount.stderr(), `restore point ${id} disk disk at offset ${2 * MiB}: `, 'logged with restore point, disk and offset');

  for (let i = 0; i < 3; i++) t.equal(await errorCode(fs.stat(join(mnt, mapless, 'disk.qcow2'))), 'EIO', 'the qcow2 view of a disk whose map is damaged');
  t.equal(await errorCode(fs.stat(join(mnt, mapless, 'disk.vhd'))), undefined, 'the VHD view needs no map to be listed');
  t.equal(await pread(join(mnt, mapless, 'disk.vhd'), 0, 100), 'EIO', 'but cannot be read');
  t.equal(mount.stderr().split('\n').filter((l) => l.startsWith(`chunkvault: cannot open /${mapless}/disk.qcow2: restore point ${mapless} disk disk: `)).length, 1, 'logged once');
});
