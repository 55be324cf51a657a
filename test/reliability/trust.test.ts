/**
 * Trust first: what an incomplete index, a damaged chunk map, hostile catalog content, a
 * stray catalog file and a full filesystem must never do — make gc delete live data, or make
 * restore, verify or the mount serve damage as data. Everything through the CLI.
 */
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { cli, cliJson, isRoot, requireCapability, sha256File, tempDir, treeDigest, writeImage, MiB } from '../helpers/index.js';
import { buildFixture, copyStore } from './fixture.js';
import type { GcReport } from '../../engine/gc.js';

const fixture = await buildFixture(t);

/** What gc could lose: packs, maps and the catalog (the index is a cache of the packs). */
async function dataDigest(store: string): Promise<string> {
  return [await treeDigest(join(store, 'packs')), await treeDigest(join(store, 'maps')), await treeDigest(join(store, 'catalog'))].join();
}

async function restoresAll(t: Test, store: string, dir: string): Promise<void> {
  const cases: [string, string, string][] = [
    [fixture.a, 'sda', fixture.sha.sda1],
    [fixture.a, 'sdb', fixture.sha.sdb],
    [fixture.b, 'sda', fixture.sha.sda2],
    [fixture.c, 'disk', fixture.sha.c],
  ];
  for (const [id, disk, sha] of cases) {
    const out = join(dir, `${id}-${disk}.img`);
    const result = await cli(['restore', '--store', store, id, out, '--disk', disk]);
    t.equal(result.code, 0, `${id} ${disk} restores: ${result.stderr}`);
    t.equal(await sha256File(out), sha, `${id} ${disk} is byte-identical`);
  }
}

/** gc stops naming the incomplete index; repair rebuilds it; then gc runs and every point restores. */
async function gcRefusesThenRepairs(t: Test, store: string, dir: string): Promise<void> {
  const before = await dataDigest(store);
  for (const args of [['gc'], ['gc', '--max-unused', '0'], ['gc', '--dry-run']]) {
    const result = await cli([...args, '--store', store]);
    t.equal(result.code, 1, `${args.join(' ')} exits 1`);
    t.match(result.stderr, /chunk index is incomplete: pack [0-9a-f]{16} holds chunk [0-9a-f]{64}.*gc deleted nothing; run 'chunkvault repair'/);
    t.equal(await dataDigest(store), before, `${args.join(' ')} changed no pack, map or catalog entry`);
  }
  t.equal((await cli(['repair', '--store', store])).code, 0, 'repair rebuilds the index');
  t.equal((await cli(['gc', '--store', store, '--max-unused', '0'])).code, 0, 'gc runs after repair');
  await restoresAll(t, store, dir);
}

t.test('an index that was lost is rebuilt from the index segments: gc decides as before, every point restores, no repair', async (t) => {
  const { dir, store } = await copyStore(t, fixture);
  const decision = (r: GcReport): number[] => [r.liveChunks, r.chunksFreed, r.packsDeleted, r.packsRewritten];
  const before = await cliJson<GcReport>(['gc', '--store', store, '--dry-run', '--json']);
  await fs.rm(join(store, 'index'), { recursive: true });
  t.same(decision(await cliJson<GcReport>(['gc', '--store', store, '--dry-run', '--json'])), decision(before), 'the rebuilt index knows every chunk');
  t.equal((await cli(['gc', '--store', store])).code, 0);
  await restoresAll(t, store, dir);
});

t.test('an index and its segments that were lost make gc stop, not delete every pack', async (t) => {
  const { dir, store } = await copyStore(t, fixture);
  await fs.rm(join(store, 'index'), { recursive: true });
  await fs.rm(join(store, 'segments'), { recursive: true, force: true });
  await gcRefusesThenRepairs(t, store, dir);
});

t.test('an index rolled back to an older copy makes gc stop, not delete the packs it does not know', async (t) => {
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  const [first, second] = [join(dir, 'first.img'), join(dir, 'second.img')];
  await writeImage(first, [{ kind: 'random', bytes: MiB, seed: 7 }]);
  await writeImage(second, [{ kind: 'random', bytes: MiB, seed: 8 }]);
  await cliJson(['init', '--store', store, '--chunk-size', '64K']);
  await cliJson(['backup', '--store', store, first, '--name', 'vm']);
  await fs.cp(join(store, 'index'), join(dir, 'old-index'), { recursive: true });
  await fs.cp(join(store, 'segments'), join(dir, 'old-segments'), { recursive: true });
  const { id } = await cliJson<{ id: string }>(['backup', '--store', store, second, '--name', 'vm', '--no-parent']);
  // The index and its segments both rolled back: nothing says where the second backup's chunks are.
  for (const part of ['index', 'segments']) {
    await fs.rm(join(store, part), { recursive: true });
    await fs.cp(join(dir, `old-${part}`), join(store, part), { recursive: true });
  }
  const before = await dataDigest(store);
  const result = await cli(['gc', '--store', store]);
  t.equal(result.code, 1, 'gc exits 1');
  t.match(result.stderr, /the index does not know it; gc deleted nothing/);
  t.equal(await dataDigest(store), before, 'nothing deleted');
  t.equal((await cli(['repair', '--store', store])).code, 0);
  t.equal((await cli(['gc', '--store', store])).code, 0);
  const out = join(dir, 'out.img');
  await cliJson(['restore', '--store', store, id, out]);
  t.equal(await sha256File(out), await sha256File(second), 'the point the old index did not know restores');
});

t.test('a repair that cannot read a pack stops before it changes the index; gc still refuses', async (t) => {
  const { dir, store } = await copyStore(t, fixture);
  await fs.rm(join(store, 'index'), { recursive: true });
  await fs.rm(join(store, 'segments'), { recursive: true, force: true });
  // A pack that cannot be read (here a directory in its place): the scan fails part-way.
  const unreadable = join(store, 'packs', 'ffffffffffffffff.pack');
  await fs.mkdir(unreadable);
  const repair = await cli(['repair', '--store', store]);
  t.not(repair.code, 0, 'repair fails');
  t.match(repair.stderr, /ffffffffffffffff\.pack/, 'naming the pack');
  await fs.rmdir(unreadable);
  await gcRefusesThenRepairs(t, store, dir);
});

/** The first map file of a restore point's disk. */
function mapPath(store: string, id: string, disk: string): string {
  return join(store, 'maps', id, `${disk}.map`);
}

for (const [what, change, problem] of [
  ['cut to half its length', (map: Buffer) => map.subarray(0, map.byteLength / 2), /chunk map truncated/],
  ['with trailing bytes', (map: Buffer) => Buffer.concat([map, Buffer.alloc(7)]), /chunk map too long/],
] as const) {
  t.test(`a chunk map ${what} is damage to verify and restore, never zeros`, async (t) => {
    const { dir, store } = await copyStore(t, fixture);
    const path = mapPath(store, fixture.c, 'disk');
    await fs.writeFile(path, change(await fs.readFile(path)));
    for (const args of [['verify'], ['verify', '--read-data']]) {
      const result = await cli([...args, '--store', store, '--json']);
      t.equal(result.code, 1, `${args.join(' ')} exits 1`);
      const report = JSON.parse(result.stdout) as { damaged: { restorePoint: string; disk: string; ranges: { offset: number; length: number; problem: string }[] }[] };
      t.same(
        report.damaged.map((d) => [d.restorePoint, d.disk, d.ranges.length, d.ranges[0].offset, d.ranges[0].length]),
        [[fixture.c, 'disk', 1, 0, fixture.sizes.c]],
        'exactly that disk, whole',
      );
      t.match(report.damaged[0].ranges[0].problem, problem);
    }
    const out = join(dir, 'out.img');
    const restore = await cli(['restore', '--store', store, fixture.c, out]);
    t.equal(restore.code, 1, 'restore exits 1');
    t.match(restore.stderr, problem);
    await t.rejects(fs.stat(out), { code: 'ENOENT' }, 'no target written');
    t.equal((await cli(['gc', '--store', store])).code, 1, 'gc stops on the damaged map');
  });
}

/** Rewrites one field of a catalog entry as a hostile or damaged copy would have it. */
async function editEntry(store: string, id: string, edit: (entry: Record<string, unknown>) => void): Promise<void> {
  const path = join(store, 'catalog', `${id}.json`);
  const entry = JSON.parse(await fs.readFile(path, 'utf8')) as Record<string, unknown>;
  edit(entry);
  await fs.writeFile(path, JSON.stringify(entry));
}

const disk = (size: unknown) => (entry: Record<string, unknown>) => (entry.disks = [{ label: 'disk', size }]);
for (const [what, edit, problem] of [
  ['a disk size of 2^60', disk(2 ** 60), 'invalid disk disk size'],
  ['a negative disk size', disk(-5), 'invalid disk disk size'],
  ['a chunk size of 0', (e: Record<string, unknown>) => (e.chunkSize = 0), 'invalid chunkSize'],
  ['a time that is a path', (e: Record<string, unknown>) => (e.time = '../../../../etc'), 'invalid time'],
  ['a label that is a path', (e: Record<string, unknown>) => (e.disks = [{ label: '../x', size: 65536 }]), 'invalid disk label'],
  ['a name with a slash', (e: Record<string, unknown>) => (e.name = 'a/b'), 'invalid name'],
] as const) {
  t.test(`a catalog entry with ${what} is damage: reported, never trusted, never a hang`, async (t) => {
    const { dir, store } = await copyStore(t, fixture);
    await editEntry(store, fixture.c, edit);
    const list = await cli(['list', '--store', store, '--json']);
    t.equal(list.code, 1, 'list exits 1');
    t.equal(list.stderr, `chunkvault: DAMAGED catalog entry ${fixture.c}: ${problem} (its maps and chunks are kept; run verify)\n`);
    t.same((JSON.parse(list.stdout) as { id: string }[]).map((p) => p.id).sort(), [fixture.a, fixture.b].sort(), 'the other points are listed');
    const verify = await cli(['verify', '--store', store]);
    t.equal(verify.code, 1, 'verify exits 1');
    t.match(verify.stdout, `DAMAGED catalog entry ${fixture.c}: ${problem}`);
    const restore = await cli(['restore', '--store', store, fixture.c, join(dir, 'out.img')]);
    t.equal(restore.code, 1, 'restore refuses');
    t.match(restore.stderr, /catalog entry is damaged/);
    const before = await dataDigest(store);
    t.equal((await cli(['gc', '--store', store, '--max-unused', '0'])).code, 0, 'gc runs');
    t.equal(await dataDigest(store), before, "gc keeps the damaged entry's maps and chunks");
  });
}

t.test('a stray copy of a catalog entry is damage, not a second restore point, and prune cannot delete the real one through it', async (t) => {
  const { dir, store } = await copyStore(t, fixture);
  await fs.copyFile(join(store, 'catalog', `${fixture.b}.json`), join(store, 'catalog', 'copy.json'));
  await fs.copyFile(join(store, 'catalog', `${fixture.b}.json`), join(store, 'catalog', '0000000000000001.json'));
  const list = await cli(['list', '--store', store, '--json']);
  t.equal(list.code, 1);
  t.same((JSON.parse(list.stdout) as { id: string }[]).map((p) => p.id), [fixture.c, fixture.b, fixture.a], 'each point once');
  t.match(list.stderr, `DAMAGED catalog entry copy: invalid id ${fixture.b} is not the file's name`);
  t.match(list.stderr, `DAMAGED catalog entry 0000000000000001: invalid id ${fixture.b} is not the file's name`);
  const prune = await cliJson<{ points: { id: string; action: string }[] }>(['prune', '--store', store, '--name', 'vm', '--keep-last', '1']);
  t.same(prune.points.map((p) => [p.id, p.action]), [[fixture.b, 'keep'], [fixture.a, 'remove']], 'one decision per point');
  await t.resolves(fs.stat(mapPath(store, fixture.b, 'sda')), 'the kept point keeps its maps');
  const out = join(dir, 'b.img');
  await cliJson(['restore', '--store', store, fixture.b, out, '--disk', 'sda']);
  t.equal(await sha256File(out), fixture.sha.sda2);
});

t.test('gc frees a store whose filesystem is 100% full', async (t) => {
  if (!requireCapability(t, isRoot(), 'needs root for a loop-mounted filesystem')) return;
  const dir = await tempDir(t);
  const fsImage = join(dir, 'fs.img');
  execFileSync('truncate', ['-s', '96M', fsImage]);
  execFileSync('mkfs.ext4', ['-q', '-m', '0', '-F', fsImage]);
  const point = join(dir, 'mnt');
  await fs.mkdir(point);
  execFileSync('mount', ['-o', 'loop', fsImage, point]);
  t.teardown(() => execFileSync('umount', ['-l', point]));
  const store = join(point, 'store');
  await cliJson(['init', '--store', store, '--chunk-size', '64K']);
  const images: string[] = [];
  for (let i = 0; i < 4; i++) {
    images.push(join(dir, `${i}.img`));
    await writeImage(images[i], [{ kind: 'random', bytes: 12 * MiB, seed: 40 + i }]);
    await cliJson(['backup', '--store', store, images[i], '--name', 'vm', '--time', `2026-11-0${i + 1}T00:00:00Z`]);
  }
  // Whatever is left, filled: not one block free.
  await fs.writeFile(join(point, 'filler'), Buffer.alloc(0));
  // Writeback frees what delayed allocation had set aside: fill again until nothing is left.
  for (const bs of ['1M', '4K', '1K', '1K']) {
    t.throws(() => execFileSync('dd', ['if=/dev/zero', `of=${join(point, 'filler')}`, `bs=${bs}`, 'oflag=append', 'conv=notrunc,fsync'], { stdio: 'pipe' }), `the filesystem fills up (${bs} blocks)`);
    execFileSync('sync');
  }
  t.equal((await fs.statfs(point)).bavail, 0, 'not one block free');
  const prune = await cli(['prune', '--store', store, '--keep-last', '1']);
  t.equal(prune.code, 0, `prune runs on a full store: ${prune.stderr}`);
  const gc = await cli(['gc', '--store', store, '--json']);
  t.equal(gc.code, 0, `gc runs on a full store: ${gc.stderr}`);
  t.equal((JSON.parse(gc.stdout) as { packsDeleted: number }).packsDeleted >= 3, true, 'the dead packs are deleted');
  const freed = await fs.statfs(point);
  t.ok(freed.bavail * freed.bsize > 30 * MiB, 'their space is free');
  const out = join(dir, 'out.img');
  await cliJson(['restore', '--store', store, 'latest', out]);
  t.equal(await sha256File(out), await sha256File(images[3]), 'the kept point restores');
});

t.test('a store and everything in it is private to its owner', async (t) => {
  if (!requireCapability(t, isRoot(), 'needs root to read as nobody')) return;
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  await cliJson(['init', '--store', store]);
  await cliJson(['backup', '--store', store, fixture.images.c]);
  const open: string[] = [];
  for (const entry of await fs.readdir(store, { recursive: true, withFileTypes: true })) {
    const path = join(entry.parentPath, entry.name);
    if (((await fs.stat(path)).mode & 0o077) !== 0) open.push(path);
  }
  t.same(open, [], 'no file or directory below the store is open to group or others');
  t.equal((await fs.stat(store)).mode & 0o777, 0o700, 'the store directory is 0700');
  const asNobody = (path: string): string => {
    try {
      return execFileSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'cat', path], { stdio: 'pipe' }).toString('latin1');
    } catch {
      return 'refused';
    }
  };
  // Directories opened up by hand: the files themselves must still refuse.
  for (const sub of ['', 'store', 'store/packs', 'store/catalog']) await fs.chmod(join(dir, sub), 0o755);
  const [pack] = await fs.readdir(join(store, 'packs'));
  const [entry] = await fs.readdir(join(store, 'catalog'));
  t.equal(asNobody(join(store, 'packs', pack)), 'refused', 'nobody cannot read a pack');
  t.equal(asNobody(join(store, 'catalog', entry)), 'refused', 'nor a catalog entry');
  await fs.chmod(join(store, 'catalog', entry), 0o644);
  t.not(asNobody(join(store, 'catalog', entry)), 'refused', 'the check itself can read what is open to others');
});
