/**
 * Typed locks with pins and leases, through the CLI and real processes: gc runs beside a mount
 * and frees exactly what no catalog entry and no pin needs; prune keeps a pinned point; gc and
 * a backup exclude each other; a lease that cannot be renewed stops its command.
 * Ordering comes from the lock files and from open file descriptors, never from sleeps.
 */
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { CLI, MiB, cli, cliJson, sha256File, tempDir, writeImage } from '../helpers/index.js';
import { canMount, eventually, isMountpoint, startMount } from '../fuse/mounting.js';

interface Lock {
  kind: string;
  command: string;
  pins: string[];
}

/** The lock objects of one process, whole (they are created under a temp name). */
async function locksOf(store: string, pid: number): Promise<{ name: string; lock: Lock }[]> {
  const names = (await fs.readdir(join(store, 'locks'))).filter((n) => n.startsWith(`${pid}-`) && n.endsWith('.json'));
  return Promise.all(names.map(async (name) => ({ name, lock: JSON.parse(await fs.readFile(join(store, 'locks', name), 'utf8')) as Lock })));
}

/** sha256 of everything read through an open descriptor, from offset 0. */
async function sha256Of(file: fs.FileHandle): Promise<string> {
  const hash = createHash('sha256');
  const buffer = Buffer.alloc(MiB);
  for (let pos = 0; ; ) {
    const { bytesRead } = await file.read(buffer, 0, buffer.length, pos);
    if (bytesRead === 0) return hash.digest('hex');
    hash.update(buffer.subarray(0, bytesRead));
    pos += bytesRead;
  }
}

async function packNames(store: string): Promise<string[]> {
  return (await fs.readdir(join(store, 'packs'))).sort();
}

async function threeBackups(dir: string): Promise<{ store: string; images: string[]; ids: string[] }> {
  const store = join(dir, 'store');
  await cliJson(['init', '--store', store, '--chunk-size', '64K']);
  const images = [1, 2, 3].map((k) => join(dir, `v${k}.img`));
  const ids: string[] = [];
  for (const [i, image] of images.entries()) {
    await writeImage(image, [{ kind: 'random', bytes: 4 * MiB, seed: 40 + i }]);
    ids.push((await cliJson<{ id: string }>(['backup', '--store', store, `disk=${image}`, '--name', 'vm', '--time', `2026-11-0${i + 1}T00:00:00Z`])).id);
  }
  return { store, images, ids };
}

t.test('a mount with one image open: prune keeps its point, gc frees exactly the rest, the open image still reads byte-identical', async (t) => {
  if (!canMount(t)) return;
  const dir = await tempDir(t);
  const { store, images, ids } = await threeBackups(dir);
  const [open, other, newest] = ids;
  const mnt = join(dir, 'mnt');
  await fs.mkdir(mnt);
  const mount = await startMount(t, store, mnt);
  const mountPid = mount.child.pid!;
  t.same((await locksOf(store, mountPid)).map((l) => [l.lock.kind, l.lock.pins]), [['shared', []]], 'a mount with nothing open pins nothing');

  const file = await fs.open(join(mnt, open, 'disk.img'), 'r');
  t.teardown(() => file.close().catch(() => undefined));
  t.same((await locksOf(store, mountPid)).map((l) => l.lock.pins), [[open]], 'the open pinned its point before it returned');
  const expected = await sha256File(images[0]);
  t.equal(await sha256Of(file), expected, 'the open image reads byte-identical');

  const prune = await cliJson<{ removed: number; points: { id: string; action: string; reasons: string[] }[] }>(['prune', '--store', store, '--keep-last', '1']);
  t.same(
    prune.points.map((p) => [p.id, p.action, p.reasons]),
    [
      [newest, 'keep', ['last']],
      [other, 'remove', []],
      [open, 'keep', [`pinned by 'mount' (pid ${mountPid} on ${hostname()})`]],
    ],
    'prune keeps the pinned point, saying who pins it',
  );
  // A prune that raced the open (it read the pins before the open wrote them) removes the entry
  // the open then finds still there: the point is pinned without a catalog entry.
  const entry = join('catalog', `${open}.json`);
  const listed = await fs.readFile(join(store, entry));
  await fs.rm(join(store, entry));

  // What gc should free: an offline gc of a copy where nothing is open and the pinned point is listed.
  const copy = join(dir, 'copy');
  await fs.cp(store, copy, { recursive: true, filter: (src) => !src.startsWith(join(store, 'locks') + '/') });
  await fs.writeFile(join(copy, entry), listed);
  const offline = await cliJson<{ chunksFreed: number; packsDeleted: number; bytesFreed: number }>(['gc', '--store', copy]);

  const live = await cliJson<{ chunksFreed: number; packsDeleted: number; bytesFreed: number; orphanMapsRemoved: number }>(['gc', '--store', store]);
  t.ok(offline.chunksFreed > 0, `the other point's chunks are freed (${offline.chunksFreed})`);
  t.match(live, { chunksFreed: offline.chunksFreed, packsDeleted: offline.packsDeleted, bytesFreed: offline.bytesFreed, orphanMapsRemoved: 0 }, 'gc beside the mount frees what the offline gc frees, no more');
  t.same(await packNames(store), await packNames(copy), 'the same packs are left');
  t.equal(await sha256Of(file), expected, 'the open image still reads byte-identical after gc');
  t.equal(mount.stderr(), '', 'the mount reported no problem');

  await file.close();
  // FUSE's release reaches the mount after close returns: the lock file says when it did.
  await eventually(async () => (await locksOf(store, mountPid)).every((l) => l.lock.pins.length === 0), 10_000, 'the pin to go');
  const after = await cliJson<{ chunksFreed: number; orphanMapsRemoved: number }>(['gc', '--store', store]);
  t.ok(after.chunksFreed > 0, 'once closed, the point without a catalog entry is freed');
  t.equal(after.orphanMapsRemoved, 1, 'with its maps');
  t.same((await cliJson<{ id: string }[]>(['list', '--store', store])).map((p) => p.id), [newest]);
  mount.child.kill('SIGTERM');
  t.equal(await mount.exited, 0);
});

function start(args: string[], env: Record<string, string> = {}): { child: ChildProcess; done: Promise<{ code: number | null; stderr: string }> } {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  return { child, done: new Promise((resolve) => child.on('close', (code) => resolve({ code, stderr }))) };
}

t.test('a running backup makes gc exit 3 naming it; the backup completes', async (t) => {
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  await cliJson(['init', '--store', store, '--chunk-size', '64K']);
  const image = join(dir, 'big.img');
  await writeImage(image, [{ kind: 'random', bytes: 32 * MiB, seed: 7 }]);
  const backup = start(['backup', '--store', store, `disk=${image}`, '--threads', '1']);
  t.teardown(() => backup.child.kill('SIGKILL'));
  // Held still once its lock is there, so gc meets it for sure.
  while ((await locksOf(store, backup.child.pid!)).length === 0 && backup.child.exitCode === null) await new Promise((r) => setTimeout(r, 5));
  backup.child.kill('SIGSTOP');
  const [held] = await locksOf(store, backup.child.pid!);
  t.match(held?.lock, { kind: 'shared', command: 'backup', pins: [] });
  const refused = await cli(['gc', '--store', store]);
  t.equal(refused.code, 3);
  t.match(refused.stderr, new RegExp(`^chunkvault: gc cannot run while 'backup' \\(pid ${backup.child.pid} on ${hostname()}, since [^)]+\\) may use chunks it would delete; run gc when that has finished\\n$`));
  // The backup may be stopped before it removed the temp file its lock was created from.
  t.same((await fs.readdir(join(store, 'locks'))).filter((n) => !n.replace(/^\./, '').startsWith(`${backup.child.pid}-`)), [], 'gc removed its own lock');
  backup.child.kill('SIGCONT');
  t.equal((await backup.done).code, 0, 'the backup completes');
  t.equal((await cli(['gc', '--store', store])).code, 0, 'then gc runs');
});

t.test('an unreadable lock stops gc, which changes nothing', async (t) => {
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  await cliJson(['init', '--store', store]);
  await fs.writeFile(join(store, 'locks', '4242-0a0b0c.json'), '{"kind": "shared", "pid": 42');
  const refused = await cli(['gc', '--store', store]);
  t.equal(refused.code, 2);
  t.match(refused.stderr, /^chunkvault: cannot read .*locks\/4242-0a0b0c\.json .*not a lock file: remove it if no chunkvault command is running/);
  t.same(await fs.readdir(join(store, 'locks')), ['4242-0a0b0c.json'], 'gc removed its own lock and left the unreadable one');
});

t.test('a mount whose lease cannot be renewed stops, unmounted, rather than run unprotected', async (t) => {
  if (!canMount(t)) return;
  const dir = await tempDir(t);
  const { store } = await threeBackups(dir);
  const mnt = join(dir, 'mnt');
  await fs.mkdir(mnt);
  process.env.CHUNKVAULT_LEASE_SECONDS = '2';
  const mount = await startMount(t, store, mnt).finally(() => delete process.env.CHUNKVAULT_LEASE_SECONDS);
  const [{ name }] = await locksOf(store, mount.child.pid!);
  // A directory where the lock object was: every renewal fails from now on.
  await fs.rm(join(store, 'locks', name));
  await fs.mkdir(join(store, 'locks', name));
  const code = await mount.exited;
  t.equal(code, 2, `the mount exits 2: ${mount.stderr()}`);
  t.match(mount.stderr(), /could not renew lock .*; retrying\n/, 'a failed renewal is logged and retried');
  t.match(mount.stderr(), new RegExp(`'mount' stopped: its lock .*${name} could not be renewed for 2 s \\(.*\\), and gc may no longer keep what it uses\\n`));
  t.notOk(isMountpoint(mnt), 'and unmounted itself');
});
