/**
 * Concurrency and load (issue 6): two backups into one store at once, a backup while 8
 * readers read a mount, prune and gc while a restore runs, locks of dead processes. Each
 * ends with correct results, or with a clear busy message naming the holder.
 */
import t from 'tap';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CLI, MiB, cli, cliJson, mixedImage, sha256File, tempDir, treeDigest, writeImage, restoresIdentically } from '../helpers/index.js';
import { canMount, startMount } from '../fuse/mounting.js';

const run = promisify(execFile);

interface Started {
  child: ChildProcess;
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

function start(args: string[]): Started {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  return { child, done: new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr }))) };
}

/** The process's lock once taken: it is written under a .tmp name, then renamed to its .json name whole. */
async function lockOf(store: string, pid: number): Promise<{ command: string } | null> {
  for (const name of await fs.readdir(join(store, 'locks'))) {
    if (!name.startsWith(`${pid}-`) || !name.endsWith('.json')) continue;
    return JSON.parse(await fs.readFile(join(store, 'locks', name), 'utf8')) as { command: string };
  }
  return null;
}

t.test('two backups into one store at once: each waits for the other or is told who holds the store; both results correct', async (t) => {
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  await cliJson(['init', '--store', store, '--chunk-size', '64K']);
  const images = [join(dir, 'a.img'), join(dir, 'b.img')];
  await writeImage(images[0], [{ kind: 'random', bytes: 24 * MiB, seed: 1 }, { kind: 'text', bytes: 8 * MiB }]);
  await writeImage(images[1], [{ kind: 'random', bytes: 24 * MiB, seed: 2 }, { kind: 'text', bytes: 8 * MiB }]);
  const runs = images.map((image, i) => start(['backup', '--store', store, image, '--name', `vm${i}`, '--threads', '1', '--json']));
  const results = await Promise.all(runs.map((r) => r.done));
  const ids: string[] = [];
  for (const [i, result] of results.entries()) {
    t.ok(result.code === 0 || result.code === 3, `backup ${i}: done or busy (exit ${result.code}): ${result.stderr}`);
    if (result.code === 3) t.match(result.stderr, /^chunkvault: store is busy: 'backup' \(pid \d+ on .*, since .*\)\n$/, 'busy names the holder');
    ids.push(result.code === 0 ? (JSON.parse(result.stdout) as { id: string }).id : (await cliJson<{ id: string }>(['backup', '--store', store, images[i], '--name', `vm${i}`])).id);
  }
  t.ok(results.some((r) => r.code === 0), 'at least one of them ran');
  t.equal((await cli(['verify', '--store', store, '--read-data'])).code, 0, 'verify --read-data is clean');
  for (const [i, id] of ids.entries()) await restoresIdentically(t, store, id, images[i], join(dir, `out-${i}.img`));
  t.same(await fs.readdir(join(store, 'locks')), [], 'no lock left behind');
});

t.test('a backup while 8 readers read the mount: every reader gets the right bytes, the new point appears', async (t) => {
  if (!canMount(t)) return;
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  await cliJson(['init', '--store', store]);
  const images = [1, 2, 3].map((k) => join(dir, `v${k}.img`));
  for (const [k, image] of images.entries()) await mixedImage(image, k + 1);
  const ids: string[] = [];
  for (const image of images.slice(0, 2)) ids.push((await cliJson<{ id: string }>(['backup', '--store', store, `disk=${image}`, '--name', 'vm'])).id);
  const mnt = join(dir, 'mnt');
  await fs.mkdir(mnt);
  const mount = await startMount(t, store, mnt, ['--cache', '8M']);
  const expected = await Promise.all(images.map((image) => sha256File(image)));

  const backup = start(['backup', '--store', store, `disk=${images[2]}`, '--name', 'vm', '--json']);
  // Separate processes, so the eight reads really overlap (and with the backup).
  const readers = Array.from({ length: 8 }, (_, i) => run('sha256sum', [join(mnt, ids[i % 2], 'disk.img')]).then(({ stdout }) => stdout.split(' ')[0]));
  const sums = await Promise.all(readers);
  const backedUp = await backup.done;
  t.equal(backedUp.code, 0, `the backup ran during the reads: ${backedUp.stderr}`);
  t.same(sums, Array.from({ length: 8 }, (_, i) => expected[i % 2]), 'all 8 readers read byte-identical images');
  const third = (JSON.parse(backedUp.stdout) as { id: string }).id;
  t.equal((await run('sha256sum', [join(mnt, third, 'disk.img')])).stdout.split(' ')[0], expected[2], 'the new restore point reads through the mount');
  t.equal(mount.stderr(), '', 'the mount reported no problem');
  mount.child.kill('SIGTERM');
  t.equal(await mount.exited, 0);
});

t.test('prune and gc while a restore runs keep the point it pins; the restore completes byte-identical; then they free it', async (t) => {
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  await cliJson(['init', '--store', store, '--chunk-size', '64K']);
  const old = join(dir, 'old.img');
  const recent = join(dir, 'new.img');
  await writeImage(old, [{ kind: 'random', bytes: 8 * MiB, seed: 11 }]);
  await writeImage(recent, [{ kind: 'random', bytes: 8 * MiB, seed: 12 }]);
  const oldId = (await cliJson<{ id: string }>(['backup', '--store', store, `disk=${old}`, '--name', 'vm', '--time', '2026-11-01T00:00:00Z'])).id;
  await cliJson(['backup', '--store', store, `disk=${recent}`, '--name', 'vm', '--time', '2026-11-02T00:00:00Z']);

  // The restore is held still (SIGSTOP) once it has registered, so prune and gc meet it for sure.
  const out = join(dir, 'restored.img');
  const restore = start(['restore', '--store', store, oldId, out, '--threads', '1']);
  let lock: { command: string } | null = null;
  while (!(lock = await lockOf(store, restore.child.pid!)) && restore.child.exitCode === null) await new Promise((r) => setTimeout(r, 5));
  restore.child.kill('SIGSTOP');
  t.teardown(() => restore.child.kill('SIGKILL'));
  t.equal(lock?.command, `restore ${oldId}`, 'the restore registered which restore point it reads');

  const prune = await cliJson<{ removed: number; points: { id: string; action: string; reasons: string[] }[] }>(['prune', '--store', store, '--keep-last', '1', '--json']);
  t.equal(prune.removed, 0, 'prune removes nothing');
  const kept = prune.points.find((p) => p.id === oldId);
  t.same({ action: kept?.action, reasons: kept?.reasons }, { action: 'keep', reasons: [`pinned by 'restore' (pid ${restore.child.pid} on ${hostname()})`] }, 'the point the restore reads is kept, saying why');
  t.match(await cliJson(['gc', '--store', store]), { chunksFreed: 0, packsDeleted: 0 }, 'gc runs beside the restore, and frees nothing it needs');
  t.equal((await cliJson<unknown[]>(['list', '--store', store])).length, 2, 'nothing was removed');

  restore.child.kill('SIGCONT');
  const restored = await restore.done;
  t.equal(restored.code, 0, `the restore completes: ${restored.stderr}`);
  t.equal(await sha256File(out), await sha256File(old), 'byte-identical');
  t.match(await cliJson(['prune', '--store', store, '--keep-last', '1']), { removed: 1 }, 'afterwards prune runs');
  t.match(await cliJson(['gc', '--store', store]), { packsDeleted: 1 }, 'and gc frees the pruned point');
});

t.test('locks of dead processes are cleared by whoever looks; a live lock of another host is respected', async (t) => {
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  const image = join(dir, 'disk.img');
  await mixedImage(image);
  await cliJson(['init', '--store', store]);
  await cliJson(['backup', '--store', store, image]);
  const dead = spawn(process.execPath, ['-e', '0']);
  await new Promise((resolve) => dead.on('exit', resolve));
  const stale = join(store, 'locks', `${dead.pid}-dead01.json`);
  await fs.writeFile(stale, JSON.stringify({ pid: dead.pid, host: hostname(), command: 'restore 0123456789abcdef', started: '2026-01-01T00:00:00.000Z' }));
  t.match(await cliJson(['gc', '--store', store]), { packsDeleted: 0 }, 'gc runs: the restore that would stop it is dead');
  await t.rejects(fs.access(stale), 'and its lock is gone');

  const foreign = join(store, 'locks', '4242-other1.json');
  const started = '2026-01-01T00:00:00.000Z';
  const backupElsewhere = (refreshed: string): string => JSON.stringify({ kind: 'shared', command: 'backup', pid: 4242, host: 'elsewhere', started, refreshed, pins: [] });
  await fs.writeFile(foreign, backupElsewhere(new Date().toISOString()));
  const before = await treeDigest(store);
  const refused = await cli(['gc', '--store', store]);
  t.equal(refused.code, 3, 'a renewed lock of another host cannot be checked, so it counts');
  t.equal(refused.stderr, `chunkvault: gc cannot run while 'backup' (pid 4242 on elsewhere, since ${started}) may use chunks it would delete; run gc when that has finished\n`);
  t.equal(await treeDigest(store), before, 'gc changed nothing, its own lock gone');

  await fs.writeFile(foreign, backupElsewhere(new Date(Date.now() - 601_000).toISOString()));
  t.match(await cliJson(['gc', '--store', store]), { packsDeleted: 0 }, 'a lock not renewed for the lease (10 min) is stale: gc runs');
  await t.rejects(fs.access(foreign), 'and removes it');
});
