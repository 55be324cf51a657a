/** The mount's tree as plain objects: layout, by-name views, latest, live refresh. */
import t from 'tap';
import type { RestorePoint } from '../../store/catalog.js';
import { BY_NAME, LATEST, LiveTree, addPartitionFiles, buildTree, isLiveDir, lookup, mayAppear, partitionFileName, timeEntryName, type DirNode } from '../../fuse/tree.js';
import { DIFF } from '../../fuse/view-tree.js';

function point(id: string, name: string, time: string, disks: [string, number][] = [['disk', 4096]]): RestorePoint {
  return {
    id,
    name,
    time,
    created: time,
    chunkSize: 1024 * 1024,
    kind: 'full',
    parent: null,
    disks: disks.map(([label, size]) => ({ label, size })),
    hold: null,
    stats: { bytesRead: 0, bytesNew: 0, chunksTotal: 0, chunksNew: 0, chunksZero: 0, seconds: 0 },
  };
}

const names = (root: DirNode, path: string): string[] => {
  const node = lookup(root, path);
  return node?.kind === 'dir' ? [...node.entries.keys()].sort() : [];
};

// Newest first, as Catalog.list returns them; the last two share a name and a time.
const POINTS = [
  point('0000000000000004', 'web', '2026-11-21T00:00:00.000Z', [['root', 8192], ['data', 1 << 30]]),
  point('0000000000000003', 'vm', '2026-11-20T00:00:00.000Z'),
  point('0000000000000002', 'vm', '2026-11-19T00:00:00.000Z'),
  point('0000000000000001', 'vm', '2026-11-19T00:00:00.000Z'),
];

t.test('every restore point and disk, and the by-name views', async (t) => {
  const root = buildTree(POINTS);
  t.same(names(root, '/'), ['0000000000000001', '0000000000000002', '0000000000000003', '0000000000000004', BY_NAME, DIFF]);
  t.same(names(root, '/0000000000000004'), ['data.img', 'data.qcow2', 'data.vhd', 'data.vmdk', 'root.img', 'root.qcow2', 'root.vhd', 'root.vmdk']);
  const image = lookup(root, '/0000000000000004/data.img');
  t.match(image, { kind: 'image', label: 'data', size: 1 << 30, point: { id: '0000000000000004' } });
  t.equal(image?.mtime.toISOString(), '2026-11-21T00:00:00.000Z', 'mtime is the snapshot time');

  t.same(names(root, `/${BY_NAME}`), ['vm', 'web']);
  t.same(names(root, `/${BY_NAME}/vm`), ['2026-11-19T00:00:00.000Z', '2026-11-19T00:00:00.000Z_0000000000000001', '2026-11-20T00:00:00.000Z', LATEST], 'a tie in time is told apart by id');
  t.same(lookup(root, `/${BY_NAME}/vm/${LATEST}`), { kind: 'link', mtime: new Date('2026-11-20T00:00:00.000Z'), target: '2026-11-20T00:00:00.000Z' });
  t.equal(lookup(root, `/${BY_NAME}/vm/2026-11-19T00:00:00.000Z/disk.img`), lookup(root, '/0000000000000002/disk.img'), 'the same node under both paths');
  t.equal(lookup(root, `/${BY_NAME}/vm/2026-11-19T00:00:00.000Z_0000000000000001/disk.img`), lookup(root, '/0000000000000001/disk.img'));
});

t.test('colon-free times: ISO 8601 basic format under by-name, ties still told apart', async (t) => {
  const root = buildTree(POINTS, 'colon-free');
  t.same(names(root, `/${BY_NAME}/vm`), ['20261119T000000.000Z', '20261119T000000.000Z_0000000000000001', '20261120T000000.000Z', LATEST]);
  t.same(lookup(root, `/${BY_NAME}/vm/${LATEST}`), { kind: 'link', mtime: new Date('2026-11-20T00:00:00.000Z'), target: '20261120T000000.000Z' });
  t.equal(lookup(root, `/${BY_NAME}/vm/20261119T000000.000Z/disk.img`), lookup(root, '/0000000000000002/disk.img'));
  t.equal(timeEntryName('2026-12-01T21:00:00.000Z', 'iso'), '2026-12-01T21:00:00.000Z');
});

t.test('lookups that miss', async (t) => {
  const root = buildTree(POINTS);
  t.equal(lookup(root, '/nope'), null);
  t.equal(lookup(root, '/0000000000000003/other.img'), null);
  t.equal(lookup(root, '/0000000000000003/disk.img/below'), null, 'a file has no children');
  t.equal(lookup(root, '/'), root);
  t.same(names(buildTree([]), '/'), [BY_NAME, DIFF], 'an empty store has an empty by-name and diff');
});

t.test('LiveTree rebuilds when restore points come and go', async (t) => {
  let points = POINTS.slice(1);
  let listings = 0;
  const changes: string[][] = [];
  const tree = new LiveTree(
    async () => (listings++, points),
    (now) => changes.push(now.map((p) => p.id)),
  );
  t.same(names(tree.current, '/'), [BY_NAME, DIFF], 'empty until the first refresh');
  await tree.refresh();
  t.ok(lookup(tree.current, '/0000000000000003/disk.img'));
  await tree.refresh();
  t.equal(changes.length, 1, 'an unchanged catalog does not rebuild');

  points = [POINTS[0], POINTS[1]];
  await tree.fresh();
  t.ok(lookup(tree.current, '/0000000000000004/root.img'), 'a new restore point appears');
  t.equal(lookup(tree.current, '/0000000000000001'), null, 'a pruned one disappears');
  t.same(changes[1], ['0000000000000004', '0000000000000003']);

  const before = listings;
  await Promise.all([tree.refresh(), tree.refresh(), tree.refresh()]);
  t.equal(listings, before + 1, 'concurrent refreshes share one listing');
});

t.test('a fresh listing starts after it was asked for', async (t) => {
  let points: RestorePoint[] = [];
  let release: () => void = () => undefined;
  const tree = new LiveTree(async () => {
    const now = points;
    await new Promise<void>((r) => (release = r));
    return now;
  });
  const stale = tree.refresh();
  points = [POINTS[0]];
  const fresh = Promise.all([tree.fresh(), tree.fresh()]);
  release();
  await stale;
  t.equal(lookup(tree.current, '/0000000000000004'), null, 'the listing under way began before the commit');
  await new Promise((r) => setImmediate(r));
  release();
  await fresh;
  t.ok(lookup(tree.current, '/0000000000000004'), 'the fresh one, shared by both callers, sees it');
});

t.test('which paths can change with the catalog', async (t) => {
  t.same(['/', '/0123456789abcdef', '/0123456789abcdef/disk.img', `/${BY_NAME}/vm/latest`].map(mayAppear), [true, true, true, true]);
  t.same(['/.Trash', '/autorun.inf', '/0123'].map(mayAppear), [false, false, false], 'names that cannot be a restore point never cost a listing');
  t.same(['/', `/${BY_NAME}`, `/${BY_NAME}/vm`].map(isLiveDir), [true, true, true]);
  t.same(['/0123456789abcdef', `/${BY_NAME}/vm/2026-11-19T00:00:00.000Z`].map(isLiveDir), [false, false], 'a restore point never changes');
});

t.test('partition files join a restore point directory, and so every path to it', async (t) => {
  const root = buildTree(POINTS);
  const dir = lookup(root, '/0000000000000002') as DirNode;
  t.equal(dir.point, POINTS[2], 'a restore point directory knows its point');
  addPartitionFiles(dir, POINTS[2], 'disk', [
    { number: 1, start: 1 << 20, size: 2048 },
    { number: 5, start: 3 << 20, size: 1024 },
  ]);
  t.equal(partitionFileName('disk', 5), 'disk.p5.img');
  t.same(names(root, '/0000000000000002'), ['disk.img', 'disk.p1.img', 'disk.p5.img', 'disk.qcow2', 'disk.vhd', 'disk.vmdk']);
  t.match(lookup(root, `/${BY_NAME}/vm/2026-11-19T00:00:00.000Z/disk.p5.img`), { kind: 'image', label: 'disk', size: 1024, partition: { number: 5, start: 3 << 20 }, point: { id: '0000000000000002' } });
  t.same(names(root, '/0000000000000001'), ['disk.img', 'disk.qcow2', 'disk.vhd', 'disk.vmdk'], 'other points are left alone');
});
