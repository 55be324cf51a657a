/** Issue 5 end to end through the real CLI: hold, prune (dry run and real), stats' prediction, gc, restores. */
import t from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { Store } from '../../engine/index.js';
import { MiB, cli, cliJson, sha256File, tempDir, treeDigest, writeImage } from '../helpers/index.js';

/** Retention buckets are local time: pin it. */
const ENV = { TZ: 'UTC' };
const TIMES = ['2026-10-01T08:00:00Z', '2026-10-08T08:00:00Z', '2026-10-15T08:00:00Z', '2026-11-01T08:00:00Z', '2026-11-19T08:00:00Z', '2026-11-20T08:00:00Z'];

interface Decision {
  id: string;
  name: string;
  time: string;
  action: 'keep' | 'remove';
  reasons: string[];
}
interface StatsJson {
  restorePoints: number;
  packBytes: number;
  reclaimableBytes: number;
}
interface GcJson {
  chunksFreed: number;
  bytesFreed: number;
  packsDeleted: number;
  packsRewritten: number;
  bytesRewritten: number;
  restorePoints: number;
  storeBytesBefore: number;
  storeBytesAfter: number;
}

/** Version k: a shared random MiB, its own 512 KiB, a shared MiB of text. */
function version(path: string, k: number): Promise<number> {
  return writeImage(path, [
    { kind: 'random', bytes: MiB, seed: 7 },
    { kind: 'random', bytes: MiB / 2, seed: 100 + k },
    { kind: 'text', bytes: MiB },
  ]);
}

/** Packs, catalog and maps: LevelDB rewrites its own files whenever it is opened. */
async function contentDigest(store: string): Promise<string> {
  return (await Promise.all(['packs', 'catalog', 'maps'].map((part) => treeDigest(join(store, part))))).join();
}

const base = await (async () => {
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  await cliJson(['init', '--store', store, '--chunk-size', '64K']);
  const images: string[] = [];
  const ids: string[] = [];
  for (const [k, time] of TIMES.entries()) {
    const image = join(dir, `v${k + 1}.img`);
    await version(image, k + 1);
    images.push(image);
    ids.push((await cliJson<{ id: string }>(['backup', '--store', store, `disk=${image}`, '--name', 'vm', '--time', time, '--threads', '1'])).id);
  }
  return { store, images, ids };
})();

async function copyOfBase(t: { teardown(fn: () => unknown): void }): Promise<{ dir: string; store: string }> {
  const dir = await tempDir(t);
  await fs.cp(base.store, join(dir, 'store'), { recursive: true });
  return { dir, store: join(dir, 'store') };
}

t.test('hold, prune --dry-run, prune, then gc frees exactly what stats predicted; every remaining point restores', async (t) => {
  const { dir, store } = await copyOfBase(t);
  const ids = base.ids;
  t.match(await cliJson(['hold', '--store', store, ids[1], '--reason', 'audit 2026']), { id: ids[1], changed: true, hold: { reason: 'audit 2026' } });
  const held = await cli(['hold', '--store', store, ids[1]]);
  t.match(held.stdout, new RegExp(`^held restore point ${ids[1]} \\(vm, 2026-10-08T08:00:00.000Z\\) since .*: audit 2026`), 'holding again keeps the reason');
  const listed = await cliJson<{ id: string; held: boolean; hold: { reason: string } | null }[]>(['list', '--store', store]);
  t.same(listed.filter((e) => e.held).map((e) => [e.id, e.hold?.reason]), [[ids[1], 'audit 2026']]);
  t.match((await cli(['list', '--store', store])).stdout, new RegExp(`${ids[1]} .*held`));

  const before = await contentDigest(store);
  const policy = ['--keep-last', '2', '--keep-monthly', '2'];
  const dry = await cliJson<{ dryRun: boolean; points: Decision[]; kept: number; removed: number }>(['prune', '--store', store, ...policy, '--dry-run'], ENV);
  const expected: [number, Decision['action'], string[]][] = [
    [5, 'keep', ['last', 'monthly 2026-11']],
    [4, 'keep', ['last']],
    [3, 'remove', []],
    [2, 'keep', ['monthly 2026-10']],
    [1, 'keep', ['held']],
    [0, 'remove', []],
  ];
  t.same(
    dry.points.map((p) => [p.id, p.name, p.time, p.action, p.reasons]),
    expected.map(([k, action, reasons]) => [ids[k], 'vm', new Date(TIMES[k]).toISOString(), action, reasons]),
  );
  t.match(dry, { dryRun: true, kept: 4, removed: 2 });
  const human = await cli(['prune', '--store', store, ...policy, '--dry-run'], ENV);
  t.match(human.stdout, new RegExp(`keep +${ids[5]} +vm +2026-11-20T08:00:00.000Z +last, monthly 2026-11`));
  t.match(human.stdout, new RegExp(`remove +${ids[0]} `));
  t.match(human.stdout, /4 kept, 2 would be removed \(dry run: nothing changed\)/);
  t.equal(await contentDigest(store), before, 'a dry run changes nothing');
  t.equal((await cliJson<StatsJson>(['stats', '--store', store])).reclaimableBytes, 0, 'nothing to reclaim before prune');

  t.match(await cliJson(['prune', '--store', store, ...policy], ENV), { dryRun: false, kept: 4, removed: 2 });
  t.same((await cliJson<{ id: string }[]>(['list', '--store', store])).map((e) => e.id), [ids[5], ids[4], ids[2], ids[1]]);
  const predicted = await cliJson<StatsJson>(['stats', '--store', store]);
  t.ok(predicted.reclaimableBytes > MiB / 2, `stats predicts ${predicted.reclaimableBytes} reclaimable bytes`);

  const report = await cliJson<GcJson>(['gc', '--store', store]);
  t.match(report, { chunksFreed: 16, packsDeleted: 1, packsRewritten: 1, restorePoints: 4 }, "v4's pack goes whole, v1's pack is compacted");
  t.equal(report.bytesFreed, predicted.reclaimableBytes, 'gc frees exactly what stats predicted');
  const after = await cliJson<StatsJson>(['stats', '--store', store]);
  t.equal(predicted.packBytes - after.packBytes, predicted.reclaimableBytes, 'and the packs shrank by exactly that');
  t.equal(after.reclaimableBytes, 0);
  t.ok(report.storeBytesAfter < report.storeBytesBefore);

  const verified = await cli(['verify', '--store', store, '--read-data']);
  t.equal(verified.code, 0, 'verify --read-data is clean after compaction');
  for (const k of [5, 4, 2, 1]) {
    const out = join(dir, `restored-${k}.img`);
    await cliJson(['restore', '--store', store, ids[k], out]);
    t.equal(await sha256File(out), await sha256File(base.images[k]), `v${k + 1} restores byte-identical`);
  }
  t.match((await cli(['gc', '--store', store])).stdout, /dead chunks +0 dropped from the index\n.*0 deleted, 0 rewritten/, 'a second gc has nothing to do');

  t.match((await cli(['release', '--store', store, ids[1]])).stdout, `released restore point ${ids[1]}`);
  t.match(await cliJson(['prune', '--store', store, ...policy], ENV), { removed: 1 }, 'released, v2 goes at the next prune');
});

t.test('gc --dry-run reports what gc would do and changes nothing', async (t) => {
  const { store } = await copyOfBase(t);
  await cliJson(['prune', '--store', store, '--keep-last', '1'], ENV);
  const before = await contentDigest(store);
  const dry = await cliJson<GcJson & { dryRun: boolean }>(['gc', '--store', store, '--dry-run', '--max-unused', '0']);
  t.match(dry, { dryRun: true, chunksFreed: 40, packsDeleted: 4, packsRewritten: 1 }, 'five own halves are dead: four packs whole, the first in part');
  t.equal(await contentDigest(store), before);
  const human = await cli(['gc', '--store', store, '--dry-run']);
  t.match(human.stdout, /dead chunks +40 would be dropped from the index/);
  t.match(human.stdout, /dry run: nothing changed/);
});

t.test('gc refuses with a clear message while a backup runs', async (t) => {
  const { store } = await copyOfBase(t);
  await cliJson(['prune', '--store', store, '--keep-last', '1'], ENV);
  const reader = await (await Store.open(store)).lock('backup');
  const before = await contentDigest(store);
  const refused = await cli(['gc', '--store', store]);
  await reader.release();
  t.equal(refused.code, 3);
  t.match(refused.stderr, new RegExp(`^chunkvault: gc cannot run while 'backup' \\(pid ${process.pid} on .*\\) may use chunks it would delete; run gc when that has finished\\n$`));
  t.equal(await contentDigest(store), before);
  t.equal((await cli(['gc', '--store', store])).code, 0, 'once the backup is gone gc runs');
});

t.test('bad input is refused with a message and exit 2, the store untouched', async (t) => {
  const { store } = await copyOfBase(t);
  const before = await treeDigest(store);
  const cases: [string[], RegExp][] = [
    [['prune', '--store', store], /prune needs a policy/],
    [['prune', '--store', store, '--keep-daily', '0'], /--keep-daily: '0' is not a positive whole number/],
    [['prune', '--store', store, '--keep-within', '6x'], /--keep-within: '6x' is not a duration/],
    [['prune', '--store', store, '--keep-last', '1', '--name', 'mail'], /no restore points named 'mail'/],
    [['gc', '--store', store, '--max-unused', '150'], /--max-unused: '150' is not a percentage from 0 to 100/],
    [['gc', '--store', store, '--max-unused', 'lots'], /--max-unused: 'lots' is not a percentage/],
    [['hold', '--store', store, 'ffff0000ffff0000'], /no restore point 'ffff0000ffff0000'/],
    [['hold', '--store', store, 'latest', '--reason', 'a\nb'], /--reason: at most 500 characters on one line/],
    [['release', '--store', store, 'nosuch@latest'], /no restore point 'nosuch@latest'/],
  ];
  for (const [args, message] of cases) {
    const result = await cli(args, ENV);
    t.equal(result.code, 2, args.slice(2).join(' '));
    t.match(result.stderr, message);
    t.match(result.stderr, /^chunkvault: /);
  }
  t.equal(await treeDigest(store), before);
});
