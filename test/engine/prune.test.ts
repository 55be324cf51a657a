/** prune against a real catalog: plan, dry run, groups, holds placed after planning, input checks. */
process.env.TZ = 'UTC';

import t from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { initStore, type Store } from '../../engine/index.js';
import { executePrune, planPrune } from '../../engine/prune.js';
import { hold } from '../../engine/hold.js';
import type { RestorePoint } from '../../store/catalog.js';
import { tempDir, treeDigest } from '../helpers/index.js';

/** A restore point with an empty one-slot map: retention needs names and times, not data. */
async function addPoint(store: Store, name: string, time: string, id: string): Promise<RestorePoint> {
  const point: RestorePoint = {
    id,
    name,
    time,
    created: time,
    chunkSize: store.chunkSize,
    kind: 'full',
    parent: null,
    disks: [{ label: 'disk', size: store.chunkSize }],
    hold: null,
    stats: { bytesRead: 0, bytesNew: 0, chunksTotal: 1, chunksNew: 0, chunksZero: 1, seconds: 0 },
  };
  const map = await store.createMapWriter(id, 'disk', 1);
  await map.commit();
  await store.catalog.put(point);
  return point;
}

/** web: daily for 10 days; db: weekly for 5 weeks. Ids sort with time, as real ones do. */
async function calendar(t: { teardown(fn: () => unknown): void }): Promise<{ store: Store; web: RestorePoint[]; db: RestorePoint[] }> {
  const store = await initStore(join(await tempDir(t), 'store'), '64K');
  const web: RestorePoint[] = [];
  const db: RestorePoint[] = [];
  for (let d = 1; d <= 10; d++) web.push(await addPoint(store, 'web', `2026-11-${String(d).padStart(2, '0')}T03:00:00.000Z`, `0000000000${String(d).padStart(2, '0')}0001`));
  for (let w = 0; w < 5; w++) db.push(await addPoint(store, 'db', new Date(Date.UTC(2026, 9, 5 + 7 * w, 4)).toISOString(), `0000000000${String(w).padStart(2, '0')}0002`));
  return { store, web: web.reverse(), db: db.reverse() };
}

async function ids(store: Store): Promise<string[]> {
  return (await store.catalog.list()).points.map((p) => p.id).sort();
}

t.test('a plan is printed, not acted on; executing it removes catalog entries and maps of removed points only', async (t) => {
  const { store, web, db } = await calendar(t);
  const digest = await treeDigest(store.location);
  const plan = await planPrune(store, { last: 2, weekly: 2 });
  t.equal(await treeDigest(store.location), digest, 'planning changed nothing');
  t.same(
    plan.points.map((p) => [p.name, p.time.slice(0, 10), p.action, p.reasons]),
    [
      ['db', '2026-11-02', 'keep', ['last', 'weekly 2026-W45']],
      ['db', '2026-10-26', 'keep', ['last', 'weekly 2026-W44']],
      ['db', '2026-10-19', 'remove', []],
      ['db', '2026-10-12', 'remove', []],
      ['db', '2026-10-05', 'remove', []],
      ['web', '2026-11-10', 'keep', ['last', 'weekly 2026-W46']],
      ['web', '2026-11-09', 'keep', ['last']],
      ['web', '2026-11-08', 'keep', ['weekly 2026-W45']],
      ...web.slice(3).map((p) => ['web', p.time.slice(0, 10), 'remove', []]),
    ],
  );
  t.match(plan, { kept: 5, removed: 10 });
  const removed = await executePrune(store, plan);
  t.equal(removed.length, 10);
  t.same(await ids(store), [db[0].id, db[1].id, web[0].id, web[1].id, web[2].id].sort());
  t.same((await fs.readdir(join(store.location, 'maps'))).sort(), await ids(store), 'maps of removed points are gone, the others stay');
});

t.test('--name prunes one group only', async (t) => {
  const { store, web, db } = await calendar(t);
  const plan = await planPrune(store, { last: 1 }, { name: 'db' });
  t.same(plan.points.map((p) => p.name), ['db', 'db', 'db', 'db', 'db']);
  await executePrune(store, plan);
  t.same(await ids(store), [db[0].id, ...web.map((p) => p.id)].sort());
});

t.test('a point held after planning is not removed', async (t) => {
  const { store, web } = await calendar(t);
  const plan = await planPrune(store, { last: 1 }, { name: 'web' });
  await hold(store, web[5].id, 'legal');
  const removed = await executePrune(store, plan);
  t.equal(removed.length, 8);
  t.notOk(removed.includes(web[5].id));
  t.ok((await ids(store)).includes(web[5].id));
  const again = await planPrune(store, { last: 1 }, { name: 'web' });
  t.same(
    again.points.map((p) => [p.id, p.reasons]),
    [
      [web[0].id, ['last']],
      [web[5].id, ['held']],
    ],
  );
});

t.test('bad input is refused before anything is read or written', async (t) => {
  const { store } = await calendar(t);
  const digest = await treeDigest(store.location);
  await t.rejects(planPrune(store, {}), { code: 'CV_INVALID_INPUT', message: /needs a policy/ });
  await t.rejects(planPrune(store, { within: '6 years' }), { code: 'CV_INVALID_INPUT', message: /--keep-within/ });
  await t.rejects(planPrune(store, { last: 1 }, { name: 'no such/name' }), { code: 'CV_INVALID_INPUT' });
  await t.rejects(planPrune(store, { last: 1 }, { name: 'mail' }), { code: 'CV_UNKNOWN_REF', message: "no restore points named 'mail'" });
  t.equal(await treeDigest(store.location), digest);
});
