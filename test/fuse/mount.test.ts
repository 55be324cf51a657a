/** Issue 3 end to end: `chunkvault mount` in a child process, read by real clients. */
import t from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { Store } from '../../engine/index.js';
import { MiB, cli, cliJson, mixedImage, sha256File, tempDir } from '../helpers/index.js';
import { canMount, errorCode, eventually, isMountpoint, mountLocks, startMount } from './mounting.js';

interface Point {
  id: string;
}

const T1 = '2026-11-19T23:00:00.000Z';
const T2 = '2026-11-20T23:00:00.000Z';

async function readAt(path: string, offset: number, length: number): Promise<Buffer> {
  const handle = await fs.open(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buf, 0, length, offset);
    return buf.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

t.test('restore points as image files: layout, bytes, read-only, live catalog, SIGTERM', async (t) => {
  if (!canMount(t)) return;
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  const mnt = join(dir, 'mnt');
  await fs.mkdir(mnt);
  const [imageA, imageB, imageC] = ['a.img', 'b.img', 'c.img'].map((n) => join(dir, n));
  const size = await mixedImage(imageA, 1);
  await mixedImage(imageB, 2);
  await mixedImage(imageC, 3);
  await cliJson(['init', '--store', store]);
  const a = await cliJson<Point>(['backup', '--store', store, `disk=${imageA}`, '--name', 'vm', '--time', T1]);
  const b = await cliJson<Point>(['backup', '--store', store, `disk=${imageB}`, '--name', 'vm', '--time', T2]);

  const mount = await startMount(t, store, mnt);
  t.equal(await mountLocks(store), 1, 'the mount is registered in the store locks');
  t.same((await fs.readdir(mnt)).sort(), [a.id, b.id, 'by-name', 'diff'].sort());
  const fileA = join(mnt, a.id, 'disk.img');
  const stat = await fs.stat(fileA);
  t.equal(stat.size, size);
  t.equal(stat.mode, 0o100444);
  t.equal(stat.mtime.toISOString(), T1, 'mtime is the snapshot time');

  const [hashA, hashB] = await Promise.all([sha256File(imageA), sha256File(imageB)]);
  const fileB = join(mnt, b.id, 'disk.img');
  t.same(await Promise.all([sha256File(fileA), sha256File(fileB), sha256File(fileA), sha256File(fileB)]), [hashA, hashB, hashA, hashB], 'two restore points read side by side, by concurrent readers');

  t.same((await fs.readdir(join(mnt, 'by-name', 'vm'))).sort(), [T1, T2, 'latest']);
  t.equal(await fs.readlink(join(mnt, 'by-name', 'vm', 'latest')), T2);
  t.equal(await sha256File(join(mnt, 'by-name', 'vm', 'latest', 'disk.img')), hashB);
  t.equal(await sha256File(join(mnt, 'by-name', 'vm', T1, 'disk.img')), hashA);

  const source = await fs.readFile(imageA);
  const ranges: [number, number][] = [
    [0, 1],
    [MiB - 7, 20],
    [3 * MiB + 5, 2 * MiB + 3],
    [2 * MiB + 4097, 5 * MiB],
    [size - 100, 1000],
  ];
  for (const [offset, length] of ranges) {
    t.same(await readAt(fileA, offset, length), source.subarray(offset, offset + length), `read of ${length} bytes at ${offset}`);
  }
  t.equal((await readAt(fileA, size + 10, 100)).byteLength, 0, 'nothing past the end');

  t.equal(await errorCode(fs.writeFile(join(mnt, 'new.img'), 'x')), 'EROFS');
  t.equal(await errorCode(fs.open(fileA, 'r+')), 'EROFS');
  t.equal(await errorCode(fs.mkdir(join(mnt, 'dir'))), 'EROFS');
  t.equal(await errorCode(fs.unlink(fileA)), 'EROFS');
  t.equal(await errorCode(fs.truncate(fileA, 0)), 'EROFS');

  const c = await cliJson<Point>(['backup', '--store', store, `disk=${imageC}`, '--name', 'web']);
  t.equal(await sha256File(join(mnt, c.id, 'disk.img')), await sha256File(imageC), 'a backup made while mounted appears in the mount');
  t.equal(await sha256File(join(mnt, 'by-name', 'web', 'latest', 'disk.img')), await sha256File(imageC));

  await (await Store.open(store)).catalog.remove(a.id);
  await eventually(async () => !(await fs.readdir(mnt)).includes(a.id), 10_000, 'the removed restore point to disappear');
  t.same((await fs.readdir(join(mnt, 'by-name', 'vm'))).sort(), [T2, 'latest']);

  mount.child.kill('SIGTERM');
  t.equal(await mount.exited, 0, 'SIGTERM: exit 0');
  t.notOk(isMountpoint(mnt), 'and unmounted');
  t.equal(await mountLocks(store), 0, 'and its lock released');
  t.equal(mount.stderr(), '');
});

t.test('umount from another process; busy, stale and invalid mountpoints', async (t) => {
  if (!canMount(t)) return;
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  const mnt = join(dir, 'mnt');
  await fs.mkdir(mnt);
  const image = join(dir, 'disk.img');
  await mixedImage(image);
  await cliJson(['init', '--store', store]);
  const point = await cliJson<Point>(['backup', '--store', store, image]);
  const file = join(mnt, point.id, 'disk.img');

  const first = await startMount(t, store, mnt);
  const busy = await cli(['mount', '--store', store, mnt]);
  t.equal(busy.code, 2);
  t.match(busy.stderr, `chunkvault: ${mnt} is busy`);
  const umount = await cli(['umount', mnt]);
  t.equal(umount.code, 0, umount.stderr);
  t.equal(await first.exited, 0, 'the mount exits 0 when unmounted from another shell');
  t.notOk(isMountpoint(mnt));
  const again = await cli(['umount', mnt]);
  t.equal(again.code, 2);
  t.match(again.stderr, `chunkvault: ${mnt} is not a chunkvault mount`);

  const killed = await startMount(t, store, mnt);
  killed.child.kill('SIGKILL');
  await killed.exited;
  t.equal(await errorCode(fs.stat(mnt)), 'ENOTCONN', 'a killed mount leaves a stale mountpoint');
  const recovered = await startMount(t, store, mnt, ['--cache', '8M']);
  t.equal(await sha256File(file), await sha256File(image), 'the next mount recovers it');
  recovered.child.kill('SIGINT');
  t.equal(await recovered.exited, 0, 'SIGINT: exit 0');

  const notEmpty = join(dir, 'not-empty');
  await fs.mkdir(notEmpty);
  await fs.writeFile(join(notEmpty, 'x'), '');
  const cases: [string[], RegExp][] = [
    [[join(dir, 'missing')], /mountpoint .*missing: does not exist/],
    [[image], /mountpoint .*disk\.img is not a directory/],
    [[notEmpty], /mountpoint .*not-empty is not empty/],
    [[mnt, '--cache', 'lots'], /--cache: 'lots' is not a size/],
    [[mnt, '--cache', '4K'], /--cache: 4096 bytes cannot hold one 1048576-byte chunk/],
  ];
  for (const [args, message] of cases) {
    const result = await cli(['mount', '--store', store, ...args]);
    t.equal(result.code, 2, args.join(' '));
    t.match(result.stderr, message);
  }
  t.notOk(isMountpoint(mnt));
});
