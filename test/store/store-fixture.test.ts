/**
 * A store written by the directory-only code (test/fixtures/store-v2, before the storage seam) is
 * listed, verified and restored through the backend as it is, and reading it changes nothing.
 */
import t from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { cliJson, ROOT, sha256File, tempDir, treeDigest } from '../helpers/index.js';
import { writeV1Images } from '../helpers/store-v1.js';

const FIXTURE = join(ROOT, 'test', 'fixtures', 'store-v2');
const FULL = '01a2351e5c4c386f';
const CBT = '01a2351e5e949ead';
const DISKS = [{ label: 'disk0', size: 443216 }];

t.test('the version 2 store of the directory-only code is listed, verified and restored as it is', async (t) => {
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  await fs.cp(join(FIXTURE, 'store'), store, { recursive: true });
  // git keeps no empty directory: the store had an empty locks/.
  await fs.mkdir(join(store, 'locks'));
  const { base, second } = await writeV1Images(dir);
  // As the fixture's README records: the recipe still builds the images that were backed up.
  t.equal(await sha256File(base), 'b3320f1328af5560576a502832cbc18369b275b40b02b8abaa6f5d6575e0f410');
  t.equal(await sha256File(second), '50f9065988d82f72249aae276f75ad1ed5cab05bb9724b5615ab7debe1a5297c');
  const catalogBefore = await treeDigest(join(store, 'catalog'));
  const mapsBefore = await treeDigest(join(store, 'maps'));

  const list = await cliJson<{ id: string; name: string; kind: string; parent: string | null; disks: unknown; hold: unknown }[]>(['list', '--store', store]);
  t.same(
    list.map(({ id, name, kind, parent, disks, hold }) => ({ id, name, kind, parent, disks, hold })),
    [
      { id: CBT, name: 'vm1', kind: 'cbt', parent: FULL, disks: DISKS, hold: null },
      { id: FULL, name: 'vm1', kind: 'full', parent: null, disks: DISKS, hold: { reason: 'fixture: a held point', since: '2026-12-02T04:58:32.786Z' } },
    ],
  );
  t.same(await cliJson(['verify', '--store', store, '--read-data']), {
    clean: true,
    restorePoints: 2,
    chunksChecked: 7,
    bytesChecked: 443216,
    readData: true,
    damaged: [],
    damagedCatalog: [],
    catalogProblems: [],
  });
  for (const [id, image] of [[FULL, base], [CBT, second]]) {
    const target = join(dir, `restored-${id}.img`);
    await cliJson(['restore', '--store', store, id, target]);
    t.equal(await sha256File(target), await sha256File(image), `${id} restores sha256-identical`);
  }
  t.equal(await treeDigest(join(store, 'catalog')), catalogBefore, 'the catalog is unchanged');
  t.equal(await treeDigest(join(store, 'maps')), mapsBefore, 'the maps are unchanged');
  t.same(await fs.readdir(join(store, 'locks')), [], 'every lock was released');
});
