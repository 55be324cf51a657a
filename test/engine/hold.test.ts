/** hold and release: state in the catalog, idempotence, reasons, refs, and prune's respect. */
import t from 'tap';
import { join } from 'node:path';
import { initStore, listRestorePoints, runBackup } from '../../engine/index.js';
import { hold, release } from '../../engine/hold.js';
import { executePrune, planPrune } from '../../engine/prune.js';
import { tempDir, treeDigest, writeImage } from '../helpers/index.js';

t.test('hold, hold again, release, release again', async (t) => {
  const dir = await tempDir(t);
  const store = await initStore(join(dir, 'store'), '64K');
  const image = join(dir, 'disk.img');
  await writeImage(image, [{ kind: 'text', bytes: 200_000 }]);
  const old = await runBackup(store, { sources: [image], name: 'vm', time: '2026-11-01T00:00:00Z', threads: 1 });
  const recent = await runBackup(store, { sources: [image], name: 'vm', time: '2026-11-02T00:00:00Z', threads: 1 });

  const held = await hold(store, old.id.slice(0, 12), 'case 4711');
  t.match(held, { id: old.id, name: 'vm', changed: true, hold: { reason: 'case 4711' } });
  t.ok(Date.parse(held.hold!.since) > 0);
  const listed = (await listRestorePoints(store)).points;
  t.same(listed.map((e) => [e.id, e.held]), [[recent.id, false], [old.id, true]], 'list shows the hold');

  const again = await hold(store, old.id, 'case 4712');
  t.match(again, { changed: true, hold: { reason: 'case 4712', since: held.hold!.since } }, 'holding again replaces the reason, keeps since');
  t.match(await hold(store, old.id, 'case 4712'), { changed: false });

  const plan = await planPrune(store, { last: 1 });
  t.same(plan.points.map((p) => [p.id, p.action, p.reasons]), [[recent.id, 'keep', ['last']], [old.id, 'keep', ['held']]]);
  t.same(await executePrune(store, plan), []);

  t.match(await release(store, 'vm@latest'), { id: recent.id, changed: false, hold: null }, 'releasing an unheld point changes nothing');
  t.match(await release(store, old.id), { id: old.id, changed: true, hold: null });
  t.same(await executePrune(store, await planPrune(store, { last: 1 })), [old.id], 'released, it is pruned like any other');
});

t.test('bad refs and reasons are refused and change nothing', async (t) => {
  const dir = await tempDir(t);
  const store = await initStore(join(dir, 'store'), '64K');
  const image = join(dir, 'disk.img');
  await writeImage(image, [{ kind: 'text', bytes: 100_000 }]);
  const point = await runBackup(store, { sources: [image], threads: 1 });
  const digest = await treeDigest(store.location);
  await t.rejects(hold(store, 'ffffffffffffffff'), { code: 'CV_UNKNOWN_REF' });
  await t.rejects(hold(store, 'nonsense!'), { code: 'CV_UNKNOWN_REF' });
  await t.rejects(hold(store, point.id, 'two\nlines'), { code: 'CV_INVALID_INPUT', message: /--reason/ });
  await t.rejects(hold(store, point.id, 'x'.repeat(501)), { code: 'CV_INVALID_INPUT' });
  await t.rejects(release(store, 'nope@latest'), { code: 'CV_UNKNOWN_REF' });
  t.equal(await treeDigest(store.location), digest);
});

t.test('a hold pins its point while it rewrites the entry, so a prune keeps it whole; gc running makes it wait', async (t) => {
  const dir = await tempDir(t);
  const store = await initStore(join(dir, 'store'), '64K');
  const image = join(dir, 'disk.img');
  await writeImage(image, [{ kind: 'text', bytes: 100_000 }]);
  const point = await runBackup(store, { sources: [image], name: 'vm', time: '2026-11-01T00:00:00Z', threads: 1 });
  await runBackup(store, { sources: [image], name: 'vm', time: '2026-11-02T00:00:00Z', threads: 1 });
  const gcLock = await store.lock('gc', { kind: 'exclusive' });
  const before = await treeDigest(join(dir, 'store', 'catalog'));
  await t.rejects(hold(store, point.id, 'case 1'), { code: 'CV_STORE_BUSY' }, 'no entry is rewritten while gc runs');
  t.equal(await treeDigest(join(dir, 'store', 'catalog')), before, 'the catalog is unchanged');
  await gcLock.release();
  // What executePrune sees when a hold is between its pin and its write: the point stays whole.
  const holding = await store.lock(`hold ${point.id}`, { pins: [point.id] });
  t.same(await executePrune(store, await planPrune(store, { last: 1 })), [], 'a point a hold has pinned is not pruned');
  await holding.release();
  t.same(await executePrune(store, await planPrune(store, { last: 1 })), [point.id]);
  await t.rejects(hold(store, point.id), { code: 'CV_UNKNOWN_REF' }, 'a hold after the prune finds the entry gone');
  await hold(store, 'vm@latest');
  t.same(await store.backend.list('locks/'), [], 'the hold left no lock behind');
});
