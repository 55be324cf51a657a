/** The mount while the store changes under it: prune, a backup holding the index, an unmount from outside. */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { hostname } from 'node:os';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { Store } from '../../engine/index.js';
import { describeLocks, type LockInfo } from '../../store/lock.js';
import { cli, cliJson, mixedImage, sha256File, tempDir, treeDigest } from '../helpers/index.js';
import { canMount, errorCode, eventually, isMountpoint, mountLocks, startMount, type RunningMount } from './mounting.js';

interface Point {
  id: string;
}

const day = (n: number): string => `2026-11-${String(n).padStart(2, '0')}T23:00:00.000Z`;

/** A store with 1 MiB chunks and an image per name, each name backed up at the given days. */
async function storeWith(t: Parameters<typeof tempDir>[0], names: Record<string, number[]>) {
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  const mnt = join(dir, 'mnt');
  await fs.mkdir(mnt);
  await cliJson(['init', '--store', store]);
  const images: Record<string, string> = {};
  const points: Record<string, string[]> = {};
  for (const [seed, [name, days]] of Object.entries(names).entries()) {
    images[name] = join(dir, `${name}.img`);
    await mixedImage(images[name], seed + 1);
    points[name] = [];
    for (const n of days) points[name].push((await cliJson<Point>(['backup', '--store', store, `disk=${images[name]}`, '--name', name, '--time', day(n)])).id);
  }
  return { dir, store, mnt, images, points };
}

/** The mount's exit code, or a failure once it is still running after ms. */
function exitWithin(mount: RunningMount, ms: number): Promise<number | null> {
  return Promise.race([mount.exited, new Promise<never>((_, fail) => setTimeout(() => fail(new Error(`the mount still runs after ${ms} ms`)), ms))]);
}

t.test('prune of other points while images are opened and read; pruned images are ENOENT; real damage stays EIO', async (t) => {
  if (!canMount(t)) return;
  const { store, mnt, images, points } = await storeWith(t, { a: [1, 2, 3, 4], b: [5, 6, 7], c: [8] });
  const mount = await startMount(t, store, mnt);
  const [hashA, hashB] = await Promise.all([sha256File(images.a), sha256File(images.b)]);
  // The kernel and the tree know every image of a, as a reader that listed them would.
  for (const id of points.a) await fs.stat(join(mnt, id, 'disk.img'));

  // Every point of b is opened for the first time while prune runs, by id and by name.
  const paths = points.b.flatMap((id, i) => [join(mnt, id, 'disk.img'), join(mnt, 'by-name', 'b', day(5 + i), 'disk.img')]);
  let pruned = false;
  const reads: string[] = [];
  const reader = (async () => {
    for (let i = 0; !pruned || i % paths.length !== 0; i++) reads.push(await sha256File(paths[i % paths.length]));
  })();
  const prune = await cliJson<{ removed: number }>(['prune', '--store', store, '--name', 'a', '--keep-last', '1']);
  pruned = true;
  await reader;
  t.equal(prune.removed, 3);
  t.ok(reads.length >= paths.length, `${reads.length} whole reads of b during the prune`);
  t.same(new Set(reads), new Set([hashB]), 'every read of b byte-identical to its source');

  const removed = points.a.slice(0, 3);
  for (const id of removed) t.equal(await errorCode(fs.open(join(mnt, id, 'disk.img'), 'r')), 'ENOENT', `open of pruned ${id}: ENOENT`);
  for (const id of removed) await eventually(async () => (await errorCode(fs.stat(join(mnt, id, 'disk.img')))) === 'ENOENT', 5000, `stat of pruned ${id} to be ENOENT`);
  t.equal(await sha256File(join(mnt, 'by-name', 'a', 'latest', 'disk.img')), hashA, 'the kept point of a reads');
  t.equal(mount.stderr(), '', 'nothing logged: a pruned point is not damage');

  // A listed point whose map is gone is damage: EIO by either path, logged once.
  const [damaged] = points.c;
  await fs.rm(join(store, 'maps', damaged), { recursive: true });
  const digest = await treeDigest(store);
  for (const path of [join(mnt, damaged, 'disk.img'), join(mnt, 'by-name', 'c', 'latest', 'disk.img'), join(mnt, damaged, 'disk.img')]) {
    t.equal(await errorCode(fs.open(path, 'r')), 'EIO', `open of ${path}: EIO`);
  }
  t.same(mount.stderr().split('\n').filter(Boolean), [`chunkvault: cannot open /${damaged}/disk.img: restore point ${damaged} disk disk: chunk map unreadable (ENOENT)`]);
  t.equal(await treeDigest(store), digest, 'the mount changed nothing in the store');
  mount.child.kill('SIGTERM');
  t.equal(await mount.exited, 0);
});

t.test('an open while a backup holds the index fails with EBUSY after a brief wait, naming the backup', async (t) => {
  if (!canMount(t)) return;
  const { store, mnt, images, points } = await storeWith(t, { vm: [1] });
  const mount = await startMount(t, store, mnt);
  const file = join(mnt, points.vm[0], 'disk.img');
  // This process plays the backup: registered as one, holding the index as one does.
  const held = await Store.open(store);
  const backup = await held.lock('backup');
  const index = await held.openIndex();
  t.teardown(async () => {
    await index.close().catch(() => undefined);
    await backup.release();
  });

  const started = Date.now();
  t.equal(await errorCode(fs.open(file, 'r')), 'EBUSY');
  const waited = Date.now() - started;
  t.ok(waited >= 2500 && waited < 10_000, `waited ${waited} ms: a few seconds, not 30`);
  const { pid, host, started: since } = backup.info;
  t.same(mount.stderr().split('\n').filter(Boolean), [`chunkvault: cannot open /${points.vm[0]}/disk.img: store is busy: 'backup' (pid ${pid} on ${host}, since ${since})`]);
  t.notMatch(mount.stderr(), /'mount'/, 'the mount does not name itself');

  await index.close();
  t.equal(await sha256File(file), await sha256File(images.vm), 'once the backup let go, the image opens and reads');
  mount.child.kill('SIGTERM');
  t.equal(await mount.exited, 0);
});

t.test("busy messages leave out the caller's own locks beside others'", async (t) => {
  const since = '2026-11-20T23:00:00.000Z';
  const lock = (pid: number, command: string, host = hostname()): LockInfo => ({ kind: 'shared', pid, host, command, started: since, refreshed: since, pins: [] });
  const own = lock(process.pid, 'mount');
  t.equal(describeLocks([own, lock(1, 'backup')]), `'backup' (pid 1 on ${hostname()}, since ${since})`);
  t.equal(describeLocks([own, lock(process.pid, 'backup', 'other.example')]), `'backup' (pid ${process.pid} on other.example, since ${since})`, 'the same pid on another host is another process');
  t.equal(describeLocks([own]), `'mount' (pid ${process.pid} on ${hostname()}, since ${since})`, 'alone, its own lock is the holder');
  t.equal(describeLocks([]), 'another process has the index open');
});

t.test('unmounted from outside: the mount exits 0 and releases its lock', async (t) => {
  if (!canMount(t)) return;
  const { store, mnt, points } = await storeWith(t, { vm: [1] });
  const file = join(mnt, points.vm[0], 'disk.img');
  const unmounts: [string, () => Promise<unknown> | void][] = [
    ['fusermount -u', () => void execFileSync('fusermount', ['-u', mnt])],
    ['umount -l with an image open', async () => {
      const handle = await fs.open(file, 'r');
      t.teardown(() => handle.close());
      execFileSync('umount', ['-l', mnt]);
    }],
    ['chunkvault umount', async () => t.equal((await cli(['umount', mnt])).code, 0)],
  ];
  for (const [how, unmount] of unmounts) {
    const mount = await startMount(t, store, mnt);
    t.equal(await mountLocks(store), 1);
    await unmount();
    t.equal(await exitWithin(mount, 5000), 0, `${how}: exit 0 within 5 s`);
    t.equal(await mountLocks(store), 0, `${how}: its lock is gone`);
    t.notOk(isMountpoint(mnt));
  }

  // Mounted over at once: the path looks mounted, and the new filesystem may even get the freed device number.
  const mount = await startMount(t, store, mnt);
  execFileSync('fusermount', ['-u', mnt]);
  execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', mnt]);
  t.teardown(() => void (isMountpoint(mnt) && execFileSync('umount', ['-l', mnt])));
  await fs.writeFile(join(mnt, 'kept'), 'x');
  t.equal(await exitWithin(mount, 5000), 0, 'a filesystem mounted on the path since: exit 0 within 5 s');
  t.equal(await mountLocks(store), 0);
  t.equal(await fs.readFile(join(mnt, 'kept'), 'utf8'), 'x', 'and that filesystem is left mounted');
  execFileSync('umount', [mnt]);
});
