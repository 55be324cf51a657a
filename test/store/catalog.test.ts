import t from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { Catalog, newRestorePointId, type RestorePoint } from '../../store/catalog.js';
import { FsBackend } from '../../store/backend/fs.js';
import { Store } from '../../store/store.js';
import { tempDir } from '../helpers/index.js';

function point(id: string, time: string, name = 'vm'): RestorePoint {
  return {
    id,
    name,
    time,
    created: time,
    chunkSize: 65536,
    kind: 'full',
    parent: null,
    disks: [{ label: 'd', size: 1 }],
    hold: null,
    stats: { bytesRead: 0, bytesNew: 0, chunksTotal: 0, chunksNew: 0, chunksZero: 0, seconds: 0 },
  };
}

t.test('catalog lists newest first by snapshot time, reports damaged entries', async (t) => {
  const dir = await tempDir(t);
  const catalog = new Catalog(new FsBackend(dir));
  await catalog.put(point('0000000000010000', '2026-01-02T00:00:00.000Z'));
  await catalog.put(point('0000000000020000', '2026-01-01T00:00:00.000Z'));
  await catalog.put(point('0000000000030000', '2026-01-03T00:00:00.000Z'));
  await fs.writeFile(join(dir, 'catalog', '00000000000400ff.json'), '{"torn');
  const { points, damaged } = await catalog.list();
  t.same(points.map((p) => p.id), ['0000000000030000', '0000000000010000', '0000000000020000']);
  t.same(damaged, ['00000000000400ff']);
  await catalog.remove('0000000000010000');
  t.equal((await catalog.list()).points.length, 2);
});

t.test('restore point ids sort by creation time', async (t) => {
  t.ok(newRestorePointId(1000) < newRestorePointId(2000));
  t.match(newRestorePointId(), /^[0-9a-f]{16}$/);
});

t.test('a claimed restore point id is never drawn twice, even within one millisecond', async (t) => {
  const store = await Store.init(join(await tempDir(t), 's'), 65536);
  // 1000 draws from 65536 random suffixes collide about 7 times: each collision must draw again.
  const ids = [];
  for (let i = 0; i < 1000; i++) ids.push(await store.claimRestorePointId(1_000_000));
  t.equal(new Set(ids).size, 1000, '1000 distinct ids');
  t.ok(ids.every((id) => id.startsWith(newRestorePointId(1_000_000).slice(0, 12))), 'all of that millisecond');
  t.same(await store.listMapLabels(ids[0]), [], 'the claim is no disk label');
  t.equal((await store.listMapDirs()).length, 1000, 'each claim is in its maps prefix, where gc finds a backup that never committed');
});

t.test('a new restore point is a conditional create: a second commit of its id fails and changes nothing', async (t) => {
  const dir = await tempDir(t);
  const catalog = new Catalog(new FsBackend(dir));
  const first = point('0000000000050000', '2026-01-05T00:00:00.000Z');
  await catalog.commit(first);
  const file = join(dir, 'catalog', `${first.id}.json`);
  const committed = await fs.readFile(file);
  await t.rejects(catalog.commit({ ...first, name: 'other-vm' }), {
    code: 'CV_RESTORE_POINT_EXISTS',
    exitCode: 2,
    message: `restore point ${first.id} already exists in ${join(dir, 'catalog')}; nothing was overwritten: run the backup again`,
    data: { restorePoint: first.id },
  });
  t.same(await fs.readFile(file), committed, 'the first entry is byte-identical');
  t.same(await fs.readdir(join(dir, 'catalog')), [`${first.id}.json`], 'no temp file is left beside it');
  t.same((await catalog.list()).points, [first]);
  await catalog.put({ ...first, hold: { reason: 'audit', since: first.time } });
  t.same((await catalog.list()).points[0].hold, { reason: 'audit', since: first.time }, 'changing an existing entry is a put');
});
