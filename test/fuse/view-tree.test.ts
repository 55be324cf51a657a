/** The views in the mount's tree as plain objects: view files per disk, diff/ pairs, lookups that resolve or say why not. */
import t from 'tap';
import type { RestorePoint } from '../../store/catalog.js';
import { buildTree, isLiveDir, lookup, mayAppear } from '../../fuse/tree.js';
import { DIFF } from '../../fuse/view-tree.js';

function point(id: string, name: string, time: string, parent: string | null, size = 4096): RestorePoint {
  return {
    id,
    name,
    time,
    created: time,
    chunkSize: 1024 * 1024,
    kind: 'full',
    parent,
    disks: [{ label: 'disk', size }],
    hold: null,
    stats: { bytesRead: 0, bytesNew: 0, chunksTotal: 0, chunksNew: 0, chunksZero: 0, seconds: 0 },
  };
}

const id = (n: number): string => n.toString(16).padStart(16, '0');
// Newest first. vm: 1 -> 2 -> 4 (4's parent is 1), 5 has a bigger disk; web: 3 alone.
const POINTS = [
  point(id(5), 'vm', '2026-11-24T00:00:00.000Z', null, 8192),
  point(id(4), 'vm', '2026-11-23T00:00:00.000Z', id(1)),
  point(id(3), 'web', '2026-11-22T00:00:00.000Z', null),
  point(id(2), 'vm', '2026-11-21T00:00:00.000Z', id(1)),
  point(id(1), 'vm', '2026-11-20T00:00:00.000Z', null),
];

t.test('view files beside each image', async (t) => {
  const root = buildTree(POINTS);
  const node = lookup(root, `/${id(2)}/disk.vmdk`);
  t.match(node, { kind: 'view', path: `/${id(2)}/disk.vmdk`, spec: { format: 'vmdk', label: 'disk', extentFile: 'disk.img', point: { id: id(2) } } });
  t.match(lookup(root, `/${id(2)}/disk.vhd`), { kind: 'view', spec: { format: 'vhd' } });
  t.match(lookup(root, `/${id(2)}/disk.qcow2`), { kind: 'view', spec: { format: 'qcow2' } });
});

t.test('diff/ lists parent..child and consecutive pairs of one name, once each', async (t) => {
  const root = buildTree(POINTS);
  const diff = lookup(root, `/${DIFF}`);
  t.same(diff?.kind === 'dir' && [...diff.entries.keys()].sort(), [`${id(1)}..${id(2)}`, `${id(1)}..${id(4)}`, `${id(2)}..${id(4)}`, `${id(4)}..${id(5)}`].sort());
  const pair = lookup(root, `/${DIFF}/${id(1)}..${id(4)}/disk.qcow2`);
  t.match(pair, { kind: 'view', spec: { format: 'qcow2-diff', backingFile: `../../${id(1)}/disk.img`, point: { id: id(4) }, base: { id: id(1) } } });
  const resized = lookup(root, `/${DIFF}/${id(4)}..${id(5)}`);
  t.same(resized?.kind === 'dir' && [...resized.entries.keys()], [], 'no difference of disks of different sizes');
});

t.test('other pairs resolve on lookup; those that cannot be compared say why', async (t) => {
  const root = buildTree(POINTS);
  const reasons: string[] = [];
  const absent = (reason: string): number => reasons.push(reason);
  t.match(lookup(root, `/${DIFF}/${id(4)}..${id(2)}/disk.qcow2`, absent), { kind: 'view', spec: { point: { id: id(2) }, base: { id: id(4) } } }, 'any order');
  t.same(reasons, []);
  t.equal(lookup(root, `/${DIFF}/${id(1)}..${id(3)}`, absent), null);
  t.equal(lookup(root, `/${DIFF}/${id(2)}..${id(5)}/disk.qcow2`, absent), null);
  t.equal(lookup(root, `/${DIFF}/${id(2)}..${id(4)}/other.qcow2`, absent), null, 'a disk neither has: just absent');
  t.equal(lookup(root, `/${DIFF}/${id(2)}..${id(9)}`, absent), null, 'an unknown restore point: just absent');
  t.same(reasons, [
    `no /${DIFF}/${id(1)}..${id(3)}: restore points ${id(1)} (vm) and ${id(3)} (web) have different names`,
    `no disk.qcow2 in /${DIFF}/${id(2)}..${id(5)}: disk 'disk' is 4096 bytes in ${id(2)} and 8192 bytes in ${id(5)}`,
  ]);
});

t.test('diff/ follows the catalog', async (t) => {
  t.same([`/${DIFF}`, `/${DIFF}/${id(1)}..${id(2)}`].map(mayAppear), [true, true]);
  t.equal(isLiveDir(`/${DIFF}`), true);
  t.equal(isLiveDir(`/${DIFF}/${id(1)}..${id(2)}`), false, 'a pair never changes');
});
