/**
 * Through the FUSE mount (the real CLI in a child process), damage of every kind but the
 * flipped byte test/fuse/damage.test.ts covers: a deleted pack, a truncated pack, index
 * entries lost, a deleted chunk map. Reads touching a damaged range fail with EIO, every
 * other byte reads as backed up, each problem is logged once with restore point, disk and
 * offset, and the mount stays up.
 */
import t, { type Test } from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { RECORD_HEADER_BYTES } from '../../store/pack.js';
import { canMount, startMount } from '../fuse/mounting.js';
import { CS, buildFixture, copyStore, dropIndexEntries, packOf } from './fixture.js';

/** The bytes read, or the error code of the read. */
async function readAt(path: string, offset: number, length: number): Promise<Buffer | string> {
  const handle = await fs.open(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buf, 0, length, offset);
    return buf.subarray(0, bytesRead);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  } finally {
    await handle.close();
  }
}

async function readsAs(t: Test, file: string, source: Buffer, offset: number, length: number, what: string): Promise<void> {
  const read = await readAt(file, offset, length);
  t.ok(Buffer.isBuffer(read) && read.equals(source.subarray(offset, offset + length)), `${what}: bytes ${offset}-${offset + length - 1} read as backed up${Buffer.isBuffer(read) ? '' : ` (got ${read})`}`);
}

async function failsWithEio(t: Test, file: string, offset: number, length: number, what: string): Promise<void> {
  t.equal(await readAt(file, offset, length), 'EIO', `${what}: a read of bytes ${offset}-${offset + length - 1} fails with EIO`);
}

t.test('EIO only for the damaged ranges of each damaged disk', async (t) => {
  if (!canMount(t)) return;
  const fixture = await buildFixture(t);
  const { dir, store } = await copyStore(t, fixture);
  await fs.rm((await packOf(store, fixture.c, 'disk', 0)).path);
  const sdb6 = await packOf(store, fixture.a, 'sdb', 6);
  await fs.truncate(sdb6.path, sdb6.offset + RECORD_HEADER_BYTES + 100);
  await dropIndexEntries(store, fixture.a, 'sda', [8, 9]);
  await fs.rm(join(store, 'maps', fixture.b, 'sdb.map'));

  const mnt = join(dir, 'mnt');
  await fs.mkdir(mnt);
  const mount = await startMount(t, store, mnt);
  const [sda1, sda2, sdb, c] = await Promise.all([fixture.images.sda1, fixture.images.sda2, fixture.images.sdb, fixture.images.c].map((p) => fs.readFile(p)));

  const cFile = join(mnt, fixture.c, 'disk.img');
  await failsWithEio(t, cFile, 0, 4096, 'deleted pack');
  await failsWithEio(t, cFile, 5 * CS + 10, 100, 'deleted pack');
  await failsWithEio(t, cFile, 5 * CS, 2 * CS, 'deleted pack, across into the zero slots');
  await readsAs(t, cFile, c, 6 * CS, 2 * CS, 'deleted pack: the zero slots need no pack');

  const aSdb = join(mnt, fixture.a, 'sdb.img');
  await readsAs(t, aSdb, sdb, 0, 6 * CS, 'truncated pack');
  await failsWithEio(t, aSdb, 6 * CS + 1, 10, 'truncated pack, the record cut short');
  await failsWithEio(t, aSdb, 7 * CS, CS, 'truncated pack, the record cut off');
  await failsWithEio(t, aSdb, 6 * CS - 10, 20, 'truncated pack, a read across the cut');

  for (const [point, image] of [[fixture.a, sda1], [fixture.b, sda2]] as const) {
    const file = join(mnt, point, 'sda.img');
    await readsAs(t, file, image, 0, 8 * CS, 'lost index entries');
    await failsWithEio(t, file, 8 * CS, 2 * CS, 'lost index entries');
    await failsWithEio(t, file, 9 * CS + 5, 1, 'lost index entries');
    await readsAs(t, file, image, 10 * CS, image.byteLength - 10 * CS, 'lost index entries');
  }

  t.equal(await fs.open(join(mnt, fixture.b, 'sdb.img'), 'r').then(async (h) => (await h.close(), 'opened'), (err: NodeJS.ErrnoException) => err.code), 'EIO', 'deleted map: the image cannot be opened');
  t.equal((await fs.stat(join(mnt, fixture.b, 'sdb.img'))).size, fixture.sizes.sdb, 'but is listed with its size (the catalog has it)');
  await readsAs(t, aSdb, sdb, CS, 3 * CS, 'after all that, undamaged ranges still');

  const log = mount.stderr();
  for (const line of [
    `restore point ${fixture.c} disk disk at offset 0: pack missing`,
    `restore point ${fixture.a} disk sdb at offset ${6 * CS}: `,
    `restore point ${fixture.a} disk sdb at offset ${7 * CS}: `,
    `restore point ${fixture.a} disk sda at offset ${8 * CS}: chunk missing from the index`,
    `restore point ${fixture.b} disk sda at offset ${8 * CS}: chunk missing from the index`,
    `cannot open /${fixture.b}/sdb.img: restore point ${fixture.b} disk sdb: chunk map unreadable (ENOENT)`,
  ]) {
    t.equal(log.split('\n').filter((l) => l.includes(line)).length, 1, `logged once: ${line}`);
  }
  t.equal(mount.child.exitCode, null, 'the mount stays up');
  mount.child.kill('SIGTERM');
  t.equal(await mount.exited, 0);
});
