/**
 * Invariant 6 under real faults ("Trust first"): only ENOENT means absent. The store is served
 * through bench/faulty-fs, which fails chosen reads of chosen objects with EIO, EMFILE or
 * EACCES; every command that meets such a failure must stop with exit 2 and
 * `chunkvault: cannot read <object> (<ERRNO>); stopped, nothing was changed`, change nothing
 * in the store, and afterwards, faults off, every committed restore point must restore
 * byte-identical. The last test takes the fault from `ulimit -n 40` instead, on a plain store.
 */
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { canMount } from '../fuse/mounting.js';
import { CLI, cli, collect, restoresIdentically, tempDir, type CliResult } from '../helpers/index.js';
import { NAME, allRestoreIdentically, backups, exactly, faultyStore, storeState, type FaultyStore } from '../helpers/faulty.js';

const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The one line a refused command prints: the object by its path, and the errno. */
function cannotRead(path: string, errno: string): RegExp {
  return new RegExp(`^chunkvault: cannot read ${escape(path)} \\(${errno}\\); stopped, nothing was changed$`, 'm');
}

/**
 * Runs `args` against the faulty store: exit 2 and the cannot-read line, or with `strict` false
 * any non-zero exit and a message naming the errno; either way the store as it was.
 */
async function refused(t: Test, s: FaultyStore, args: string[], object: string, errno: string, strict = true): Promise<CliResult> {
  const before = await storeState(s.backing);
  s.fs.injected.length = 0;
  const result = await cli([...args, '--store', s.store]);
  const what = `${args.join(' ')} with ${errno} on ${object}`;
  if (strict) {
    t.equal(result.code, 2, `${what}: exit 2 (${result.stderr.trim()})`);
    t.match(result.stderr, cannotRead(join(s.store, object), errno), `${what}: names the object and the errno`);
  } else {
    t.not(result.code, 0, `${what}: exit non-zero (${result.code}: ${result.stderr.trim()})`);
    t.match(result.stderr, `(${errno})`, `${what}: names the errno`);
  }
  t.notMatch(result.stderr, /no restore point/, `${what}: never "no restore point"`);
  t.equal(await storeState(s.backing), before, `${what}: nothing in the store changed`);
  t.ok(s.fs.injected.length > 0, `${what}: the fault was met (${s.fs.injected.length} injections)`);
  return result;
}

/** Every command that lists restore points, or reads this one, or deletes on their strength. */
function commandsMeeting(s: FaultyStore): string[][] {
  return [['list', '--json'], ['verify'], ['restore', s.points[0].id, join(s.dir, 'out-0.img')], ['restore', s.points[1].id, join(s.dir, 'out-1.img')], ['prune', '--name', NAME, '--keep-last', '1'], ['gc']];
}

const catalogEntry = (s: FaultyStore): string => join('catalog', `${s.points[0].id}.json`);

t.test('EIO reading one catalog entry: list, verify, restore, prune and gc stop with exit 2 and change nothing', async (t) => {
  if (!canMount(t)) return;
  const s = await faultyStore(t);
  await s.setRules([{ path: exactly(`/${catalogEntry(s)}`), ops: ['read'], errno: 'EIO' }]);
  for (const args of commandsMeeting(s)) await refused(t, s, args, catalogEntry(s), 'EIO');
  await allRestoreIdentically(t, s);
});

t.test('EMFILE opening one catalog entry: the same commands stop the same way', async (t) => {
  if (!canMount(t)) return;
  const s = await faultyStore(t);
  await s.setRules([{ path: exactly(`/${catalogEntry(s)}`), ops: ['open'], errno: 'EMFILE' }]);
  for (const args of commandsMeeting(s)) await refused(t, s, args, catalogEntry(s), 'EMFILE');
  await allRestoreIdentically(t, s);
});

t.test('EMFILE listing catalog/: every command that lists restore points stops with exit 2', async (t) => {
  if (!canMount(t)) return;
  const s = await faultyStore(t);
  await s.setRules([{ path: '^/catalog$', ops: ['readdir'], errno: 'EMFILE' }]);
  const listing = [['list', '--json'], ['verify'], ['restore', `${NAME}@latest`, join(s.dir, 'out.img')], ['prune', '--name', NAME, '--keep-last', '1'], ['gc']];
  for (const args of listing) await refused(t, s, args, 'catalog', 'EMFILE');
  await allRestoreIdentically(t, s);
});

t.test('EMFILE listing index/: LevelDB takes its files for missing; commands stop with exit 2 naming the listing, not a damaged index', async (t) => {
  if (!canMount(t)) return;
  const s = await faultyStore(t);
  await s.setRules([{ path: '^/index$', ops: ['readdir'], errno: 'EMFILE' }]);
  for (const args of [['gc'], ['verify'], ['restore', `${NAME}@latest`, join(s.dir, 'out.img')]]) {
    const result = await refused(t, s, args, 'index', 'EMFILE', false);
    t.equal(result.code, 2, `${args[0]}: exit 2`);
    t.match(result.stderr, /^chunkvault: cannot read the chunk index .*\(EMFILE\); stopped, nothing was changed$/m, `${args[0]}: a read error of the index`);
    t.notMatch(result.stderr, /damaged/, `${args[0]}: never "damaged"`);
  }
  await allRestoreIdentically(t, s);
});

t.test('EMFILE listing maps/: gc stops before removing a single map directory', async (t) => {
  if (!canMount(t)) return;
  const s = await faultyStore(t, { backups: 4 });
  // Something for gc to do, so that stopping is visible: two pruned points leave dead chunks.
  const pruned = await cli(['prune', '--store', s.store, '--name', NAME, '--keep-last', '2']);
  t.equal(pruned.code, 0, `prune without faults exits 0 ${pruned.stderr}`);
  await s.setRules([{ path: '^/maps$', ops: ['readdir'], errno: 'EMFILE' }]);
  await refused(t, s, ['gc'], 'maps', 'EMFILE');
  await allRestoreIdentically(t, s, s.points.slice(2));
});

t.test('EIO reading one map: gc deletes nothing, verify reports that disk damaged, restore of it fails', async (t) => {
  if (!canMount(t)) return;
  const s = await faultyStore(t, { backups: 4 });
  const pruned = await cli(['prune', '--store', s.store, '--name', NAME, '--keep-last', '2']);
  t.equal(pruned.code, 0, `prune without faults exits 0 ${pruned.stderr}`);
  const [point] = s.points.slice(2);
  const map = join('maps', point.id, 'disk.map');
  await s.setRules([{ path: exactly(`/${map}`), ops: ['read'], errno: 'EIO' }]);
  await refused(t, s, ['gc'], map, 'EIO', false);

  const before = await storeState(s.backing);
  const verify = await cli(['verify', '--store', s.store, '--json']);
  t.equal(verify.code, 1, `verify exits 1 (damaged) ${verify.stderr.trim()}`);
  const report = JSON.parse(verify.stdout || '{}') as { clean?: boolean; restorePoints?: number; damaged?: { restorePoint: string; disk: string }[] };
  t.equal(report.clean, false, 'verify does not say clean');
  t.equal(report.restorePoints, 2, 'verify counts both restore points');
  t.same(
    report.damaged?.map((d) => [d.restorePoint, d.disk]),
    [[point.id, 'disk']],
    'verify names that restore point and disk, and no other',
  );
  const restore = await cli(['restore', '--store', s.store, point.id, join(s.dir, 'out.img')]);
  t.not(restore.code, 0, `restore of it exits non-zero (${restore.code}: ${restore.stderr.trim()})`);
  t.match(restore.stderr, new RegExp(`${escape(point.id)}|${escape(join(s.store, map))}`), 'restore names the restore point or the map');
  t.equal(await storeState(s.backing), before, 'verify and restore changed nothing in the store');
  await allRestoreIdentically(t, s, s.points.slice(2));
});

/** A live process (`sleep`) with a backup's lock in the store: gc must not run beside it. */
async function liveBackupLock(t: Test, s: FaultyStore): Promise<string> {
  const sleeper = spawn('sleep', ['600'], { stdio: 'ignore' });
  t.teardown(() => sleeper.kill());
  const name = `${sleeper.pid}-0a0b0c.json`;
  const now = new Date().toISOString();
  const info = { kind: 'shared', command: 'backup', pid: sleeper.pid, host: hostname(), started: now, refreshed: now, pins: [] };
  await fs.writeFile(join(s.backing, 'locks', name), JSON.stringify(info) + '\n', { mode: 0o600 });
  return join('locks', name);
}

for (const [errno, ops] of [
  ['EIO', ['read']],
  ['EACCES', ['open']],
] as const) {
  t.test(`${errno} reading a live backup's lock file: gc refuses and compacts nothing`, async (t) => {
    if (!canMount(t)) return;
    const s = await faultyStore(t, { backups: 4 });
    const pruned = await cli(['prune', '--store', s.store, '--name', NAME, '--keep-last', '2']);
    t.equal(pruned.code, 0, `prune without faults exits 0 ${pruned.stderr}`);
    const lock = await liveBackupLock(t, s);
    // The control: with the lock readable, gc sees the backup and says the store is busy.
    const before = await storeState(s.backing);
    const busy = await cli(['gc', '--store', s.store]);
    t.equal(busy.code, 3, `with the lock readable gc is refused as busy (${busy.stderr.trim()})`);
    t.equal(await storeState(s.backing), before, 'and changes nothing');
    await s.setRules([{ path: exactly(`/${lock}`), ops: [...ops], errno }]);
    await refused(t, s, ['gc'], lock, errno, false);
    await allRestoreIdentically(t, s, s.points.slice(2));
  });
}

/**
 * The CLI with at most 40 open files, as the independent fault test ran it; without the test
 * runner's NODE_OPTIONS hooks (it adds them to every child), which spend those files first.
 */
function cliWithFewFiles(args: string[]): Promise<CliResult> {
  const quoted = [CLI, ...args].map((a) => `'${a}'`).join(' ');
  return collect(spawn('bash', ['-c', `unset NODE_OPTIONS; ulimit -n 40; exec '${process.execPath}' ${quoted}`], { stdio: ['ignore', 'pipe', 'pipe'] }));
}

t.test('ulimit -n 40 with 80 restore points: list, verify and gc see all 80 or stop naming EMFILE', async (t) => {
  const dir = await tempDir(t, 'cv-emfile-');
  const store = join(dir, 'store');
  const emfile = /^chunkvault: cannot read .+ \(EMFILE\); stopped, nothing was changed$/m;

  const started = performance.now();
  const points = await backups(dir, store, 80);
  t.comment(`80 backups in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  const list = await cliWithFewFiles(['list', '--store', store, '--json']);
  if (list.code === 0) t.equal((JSON.parse(list.stdout) as unknown[]).length, 80, 'list lists all 80');
  else {
    t.equal(list.code, 2, 'list exits 2');
    t.match(list.stderr, emfile, 'list names EMFILE');
  }

  const verify = await cliWithFewFiles(['verify', '--store', store, '--json']);
  if (verify.code === 0) t.equal((JSON.parse(verify.stdout) as { restorePoints: number }).restorePoints, 80, 'a clean verify has checked all 80');
  else {
    t.equal(verify.code, 2, `verify exits 2 ${verify.stderr.trim()}`);
    t.match(verify.stderr, emfile, 'verify names EMFILE');
    t.notMatch(verify.stdout, /clean/, 'and never says clean');
  }

  const before = await storeState(store);
  const gc = await cliWithFewFiles(['gc', '--store', store, '--json']);
  if (gc.code === 0) t.equal((JSON.parse(gc.stdout) as { restorePoints: number }).restorePoints, 80, 'a gc that ran saw all 80');
  else {
    t.equal(gc.code, 2, `gc exits 2 ${gc.stderr.trim()}`);
    t.match(gc.stderr, emfile, 'gc names EMFILE');
    t.equal(await storeState(store), before, 'a gc that stopped changed nothing');
  }

  t.equal((await fs.readdir(join(store, 'maps'))).length, 80, 'the maps of all 80 restore points are still there');
  const full = await cli(['verify', '--store', store, '--read-data', '--json']);
  t.equal(full.code, 0, `verify --read-data without the limit exits 0 ${full.stderr.trim()}`);
  t.match(JSON.parse(full.stdout || '{}'), { clean: true, restorePoints: 80 }, 'and finds all 80 clean');
  for (const point of [0, 1, 39, 40, 78, 79].map((i) => points[i])) await restoresIdentically(t, store, point.id, point.image, join(dir, 'out.img'));
});
