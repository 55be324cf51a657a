/**
 * gc and backups side by side: racing a backup gc loses nothing; a backup that fills the
 * disk leaves a consistent store whose partial data gc reclaims.
 */
import t from 'tap';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { CLI, MiB, cli, cliJson, hasCommand, isRoot, requireCapability, tempDir, treeDigest, writeImage, restoresIdentically } from '../helpers/index.js';

interface StatsJson {
  packBytes: number;
  reclaimableBytes: number;
}

/** Packs, catalog and maps: LevelDB rewrites its own files whenever it is opened. */
async function contentDigest(store: string): Promise<string> {
  return (await Promise.all(['packs', 'catalog', 'maps'].map((part) => treeDigest(join(store, part))))).join();
}

t.test('gc racing a backup loses nothing: one of them waits or is told the store is busy', async (t) => {
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  await cliJson(['init', '--store', store, '--chunk-size', '64K']);
  const small = join(dir, 'small.img');
  const big = join(dir, 'big.img');
  await writeImage(small, [{ kind: 'random', bytes: 2 * MiB, seed: 1 }]);
  await writeImage(big, [{ kind: 'random', bytes: 32 * MiB, seed: 2 }, { kind: 'text', bytes: 8 * MiB }]);
  await cliJson(['backup', '--store', store, small, '--time', '2026-11-01T00:00:00Z']);
  await cliJson(['backup', '--store', store, small, '--time', '2026-11-02T00:00:00Z']);
  await cliJson(['prune', '--store', store, '--keep-last', '1']); // something for gc to do

  const child = spawn(process.execPath, [CLI, 'backup', '--store', store, big, '--threads', '1', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<number>((resolve) => child.once('exit', (code) => resolve(code ?? -1)));
  const lockFile = async (): Promise<boolean> => (await fs.readdir(join(store, 'locks'))).length > 0;
  while (!(await lockFile())) await new Promise((r) => setTimeout(r, 10));
  const raced = await cli(['gc', '--store', store, '--json']);
  const backupCode = await exited;
  t.comment(`gc exit ${raced.code}, backup exit ${backupCode}`);
  t.ok([0, 3].includes(raced.code), `gc either waited for the index or was told the store is busy: ${raced.stderr}`);
  // The backup's lock is there before gc starts: gc sees it, unless the backup finished first.
  if (raced.code === 3) t.match(raced.stderr, new RegExp(`^chunkvault: gc cannot run while 'backup' \\(pid ${child.pid} on [^)]+\\) may use chunks it would delete; run gc when that has finished\n$`));
  t.ok([0, 3].includes(backupCode), `the backup either ran or was told the store is busy: ${err}`);
  t.ok(raced.code === 0 || backupCode === 0, 'they cannot both have been refused');
  const id = backupCode === 0 ? (JSON.parse(out) as { id: string }).id : (await cliJson<{ id: string }>(['backup', '--store', store, big])).id;

  await cliJson(['gc', '--store', store]);
  t.equal((await cli(['verify', '--store', store, '--read-data'])).code, 0, 'verify --read-data is clean');
  await restoresIdentically(t, store, id, big, join(dir, 'big-restored.img'));
});

t.test('a backup that fills the disk fails with ENOSPC explained; the store stays consistent and gc reclaims its data', async (t) => {
  if (!requireCapability(t, isRoot() && existsSync('/dev/loop-control') && hasCommand('mkfs.ext4') && hasCommand('mount'), 'needs root, loop devices and mkfs.ext4')) return;
  const dir = await tempDir(t);
  const fsImage = join(dir, 'fs.img');
  const mnt = join(dir, 'mnt');
  await fs.mkdir(mnt);
  await fs.writeFile(fsImage, '');
  await fs.truncate(fsImage, 64 * MiB);
  execFileSync('mkfs.ext4', ['-q', '-F', fsImage], { stdio: 'pipe' });
  execFileSync('mount', ['-o', 'loop', fsImage, mnt], { stdio: 'pipe' });
  t.teardown(() => execFileSync('umount', ['-l', mnt], { stdio: 'pipe' }));

  const store = join(mnt, 'store');
  await cliJson(['init', '--store', store, '--chunk-size', '64K']);
  const small = join(dir, 'small.img');
  const big = join(dir, 'big.img');
  await writeImage(small, [{ kind: 'random', bytes: 4 * MiB, seed: 1 }]);
  await writeImage(big, [{ kind: 'random', bytes: 96 * MiB, seed: 2 }]);
  const committed = await cliJson<{ id: string }>(['backup', '--store', store, small]);
  const before = await cliJson<StatsJson>(['stats', '--store', store]);
  const digest = await contentDigest(store);

  const args = ['backup', '--store', store, big];
  const refused = await cli(args);
  t.equal(refused.code, 2);
  t.match(refused.stderr, /^chunkvault: not enough free space for this backup: it may need up to .*, the store's filesystem \(.*\) has .* free/, 'the pre-flight refuses with the numbers');
  t.equal(await contentDigest(store), digest, 'and writes nothing');
  args.push('--force');
  const failed = await cli(args);
  t.equal(failed.code, 2);
  t.match(failed.stderr, /^chunkvault: no space left on the store's filesystem \(.*\); the backup was not committed and gc reclaims its partial data\n$/);

  t.same((await cliJson<{ id: string }[]>(['list', '--store', store])).map((e) => e.id), [committed.id], 'the failed backup is not listed');
  t.equal((await cli(['verify', '--store', store, '--read-data'])).code, 0, 'verify --read-data is clean');
  await restoresIdentically(t, store, committed.id, small, join(dir, 'small-restored.img'));
  // The pack being written is given up as the backup fails: its space is free at once (packs it
  // had finished before, in a backup larger than a pack, are left for gc).
  const full = await cliJson<StatsJson>(['stats', '--store', store]);
  t.equal(full.packBytes, before.packBytes, 'the partial pack is gone');
  t.equal(full.reclaimableBytes, 0, 'stats sees nothing left to reclaim');
  const reclaimed = await cliJson<{ bytesFreed: number }>(['gc', '--store', store]);
  t.equal(reclaimed.bytesFreed, 0, 'gc has nothing to reclaim');
  await cliJson(['backup', '--store', store, small]);
  t.equal((await cli(['verify', '--store', store, '--read-data'])).code, 0, 'and the store takes the next backup');
});
