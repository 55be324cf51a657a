/** Slot planning: what each chunk slot reads, which are zero, which reuse the parent's id. */
import t, { type Test } from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { backup } from '../../engine/backup.js';
import { WorkerPool } from '../../engine/pool.js';
import { gc, initStore, restore, runBackup } from '../../engine/index.js';
import { discardRanges, groupTasks, mergeRanges, planSlots, resizedRange, wholeDisk, type DiskLayout, type SlotAction } from '../../engine/plan.js';

import { seededBytes, sha256File, tempDir, treeDigest, writeImage } from '../helpers/index.js';
import { DEFAULT_COMPRESSION } from '../../store/compression.js';

const CS = 64 * 1024;
// End-to-end cases use one worker: under tap every pool thread loads tap's loaders (seconds).
const TiB = 1024 ** 4;

/** 'read 3/length: at+length<-from ... keep at+length ...', 'zero 4x2', 'parent 6x1': compact and exact. */
function show(actions: Iterable<SlotAction>): string[] {
  return Array.from(actions, (a) =>
    a.kind === 'read'
      ? `read ${a.plan.slot}/${a.plan.length}: ${a.plan.reads.map((r) => `${r.at}+${r.length}<-${r.from}`).join(' ')}${a.plan.keep ? ` keep ${a.plan.keep.map((k) => `${k.at}+${k.length}`).join(' ')}` : ''}`
      : `${a.kind} ${a.first}x${a.count}`,
  );
}

function layout(size: number, extents: [number, number, number?][], changed: [number, number][] | null = null): DiskLayout {
  return {
    size,
    chunkSize: CS,
    extents: extents.map(([offset, length, from]) => ({ offset, length, from: from ?? offset })),
    changed: changed && changed.map(([offset, length]) => ({ offset, length })),
  };
}

t.test('a whole disk reads every slot, the last one short', async (t) => {
  t.same(show(planSlots(wholeDisk(2 * CS + 100, CS))), [`read 0/${CS}: 0+${CS}<-0`, `read 1/${CS}: 0+${CS}<-${CS}`, `read 2/100: 0+100<-${2 * CS}`]);
  t.same(show(planSlots(wholeDisk(0, CS))), [], 'an empty disk has no slots');
});

t.test('extents: gaps are zero runs, data maps to its source offset, slot edges split reads', async (t) => {
  const plan = layout(10 * CS, [
    [100, 50, 7000],
    [CS - 10, 20, 1_000_000],
    [6 * CS, CS, 0],
  ]);
  t.same(show(planSlots(plan)), [
    `read 0/${CS}: 100+50<-7000 ${CS - 10}+10<-1000000`,
    `read 1/${CS}: 0+10<-1000010`,
    'zero 2x4',
    `read 6/${CS}: 0+${CS}<-0`,
    'zero 7x3',
  ]);
});

t.test('CBT: a slot a changed range touches reads its changed 4 KiB blocks and keeps the rest from the parent; untouched slots reuse the parent', async (t) => {
  const changed: [number, number][] = [
    [5 * CS + 4096, 4096], // one block inside slot 5
    [8 * CS - 512, 1024], // straddles slots 7 and 8: one block of each
    [12 * CS, CS], // exactly slot 12, read whole: it spares nothing
  ];
  t.same(show(planSlots(layout(16 * CS, [[0, 16 * CS]], changed))), [
    'parent 0x5',
    `read 5/${CS}: 4096+4096<-${5 * CS + 4096} keep 0+4096 8192+${CS - 8192}`,
    'parent 6x1',
    `read 7/${CS}: ${CS - 4096}+4096<-${8 * CS - 4096} keep 0+${CS - 4096}`,
    `read 8/${CS}: 0+4096<-${8 * CS} keep 4096+${CS - 4096}`,
    'parent 9x3',
    `read 12/${CS}: 0+${CS}<-${12 * CS}`,
    'parent 13x3',
  ]);
  t.same(show(planSlots(layout(4 * CS, [[0, 4 * CS]], []))), ['parent 0x4'], 'an empty CBT list reads nothing');
});

t.test('a source that holds only the changed blocks (a recovery session): a slot changed almost whole still keeps the rest from the parent', async (t) => {
  const M = 1024 * 1024;
  const disk = { ...layout(2 * M, [[0, 2 * M]], [[M, M - 4096]]), chunkSize: M };
  t.same(show(planSlots(disk)), ['parent 0x1', `read 1/${M}: 0+${M}<-${M}`], 'from a whole disk, read whole: it spares too little');
  t.same(show(planSlots({ ...disk, changedOnly: true })), ['parent 0x1', `read 1/${M}: 0+${M - 4096}<-${M} keep ${M - 4096}+4096`]);
});

t.test('CBT with holes: slots without data are zero, not the parent (the layout knows they are zero)', async (t) => {
  const plan = layout(8 * CS, [[CS, 2 * CS], [6 * CS, CS]], [[2 * CS, 10], [4 * CS, 10]]);
  t.same(show(planSlots(plan)), ['zero 0x1', 'parent 1x1', `read 2/${CS}: 0+4096<-${2 * CS} keep 4096+${CS - 4096}`, 'zero 3x3', 'parent 6x1', 'zero 7x1']);
});

t.test('a 1 TiB sparse disk plans in a handful of actions', async (t) => {
  const plan = layout(TiB, [[10 * 1024 ** 3, 3 * CS], [TiB - 100, 100]]);
  const actions = show(planSlots(plan));
  t.equal(actions.length, 6);
  t.equal(actions[0], `zero 0x${(10 * 1024 ** 3) / CS}`);
  t.equal(actions[5], `read ${TiB / CS - 1}/${CS}: ${CS - 100}+100<-${TiB - 100}`);
  const parents = show(planSlots({ ...wholeDisk(TiB, CS), changed: [{ offset: TiB / 2, length: 1 }] }));
  t.same(parents, [`parent 0x${TiB / 2 / CS}`, `read ${TiB / 2 / CS}/${CS}: 0+4096<-${TiB / 2} keep 4096+${CS - 4096}`, `parent ${TiB / 2 / CS + 1}x${TiB / 2 / CS - 1}`]);
});

t.test('groupTasks: read slots in tasks of N across unread runs, adjacent unread runs of one kind merged', async (t) => {
  const plan = layout(12 * CS, [[0, 5 * CS], [7 * CS, 5 * CS]], [[0, 3 * CS], [8 * CS, 2 * CS]]);
  const units = Array.from(groupTasks(planSlots(plan), 2), (u) => (Array.isArray(u) ? `task ${u.map((p) => p.slot).join(',')}` : `${u.kind} ${u.first}x${u.count}`));
  t.same(units, ['task 0,1', 'parent 3x2', 'zero 5x2', 'task 2,8', 'parent 7x1', 'task 9', 'parent 10x2'], 'slot 2 waits for slot 8 to fill its task');
  const zeros = Array.from(groupTasks([{ kind: 'zero', first: 0, count: 2 }, { kind: 'zero', first: 2, count: 3 }], 4));
  t.same(zeros, [{ kind: 'zero', first: 0, count: 5 }]);
});

t.test('mergeRanges: sorted, overlapping and touching ranges joined, input untouched', async (t) => {
  const input = [
    { offset: 100, length: 10 },
    { offset: 0, length: 50 },
    { offset: 40, length: 20 },
    { offset: 60, length: 5 },
  ];
  t.same(mergeRanges(input), [
    { offset: 0, length: 65 },
    { offset: 100, length: 10 },
  ]);
  t.same(input[0], { offset: 100, length: 10 });
});

t.test('discardRanges: discarded bytes leave the extents (keeping their source offsets) and join the changed ranges', async (t) => {
  const plan = layout(4 * CS, [[0, 2 * CS, 9000], [3 * CS, CS]], [[0, 10]]);
  const cut = discardRanges(plan, [{ offset: CS, length: 100 }, { offset: 3 * CS, length: CS }, { offset: CS + 50, length: 100 }]);
  t.same(cut.extents, [
    { offset: 0, length: CS, from: 9000 },
    { offset: CS + 150, length: CS - 150, from: 9000 + CS + 150 },
  ]);
  t.same(cut.changed, [{ offset: 0, length: 10 }, { offset: CS, length: 150 }, { offset: 3 * CS, length: CS }]);
  t.same(show(planSlots(cut)), [`read 0/${CS}: 0+4096<-9000 keep 4096+${CS - 4096}`, `read 1/${CS}: 150+3946<-${9000 + CS + 150} keep 4096+${CS - 4096}`, 'zero 2x2'], 'a wholly discarded slot is zero, unread; the block a discard touches is read but for the discarded bytes');
  t.equal(discardRanges(layout(CS, [[0, CS]]), [{ offset: 0, length: 10 }]).changed, null, 'no CBT list: every slot is read anyway');
  t.equal(discardRanges(plan, []), plan, 'nothing discarded: the same layout');
});

t.test('resizedRange: what a size change since the parent forces to be read', async (t) => {
  t.equal(resizedRange(4 * CS, 4 * CS, CS), null, 'same size');
  t.same(resizedRange(4 * CS, 6 * CS, CS), { offset: 4 * CS, length: 2 * CS }, 'grown: the new slots');
  t.same(resizedRange(4 * CS + 10, 6 * CS, CS), { offset: 4 * CS, length: 2 * CS }, "grown: the parent's short last slot is now full");
  t.equal(resizedRange(6 * CS, 4 * CS, CS), null, 'shrunk to a slot boundary: the remaining slots are the same');
  t.same(resizedRange(6 * CS, 4 * CS + 10, CS), { offset: 4 * CS, length: 10 }, 'shrunk mid-slot: the new short last slot');
});

t.test('disk size changes since the parent, end to end: grown and shrunk disks read what changed and restore exactly', async (t) => {
  const dir = await tempDir(t);
  const store = await initStore(join(dir, 'store'), '64K');
  const parentSize = 10 * CS + 100;
  const parent = join(dir, 'parent.img');
  await writeImage(parent, [{ kind: 'random', bytes: parentSize, seed: 1 }]);
  const base = await runBackup(store, { threads: 1, sources: [`sda=${parent}`], name: 'vm' });
  const nothing = join(dir, 'nothing.cbt.json');
  await fs.writeFile(nothing, JSON.stringify({ changed: [] }));
  const cases: [string, number, number][] = [
    // name, child size, bytes it must read with an empty CBT list
    ['grown', 14 * CS + 5, 4 * CS + 5],
    ['grown to a slot boundary', 12 * CS, 2 * CS],
    ['shrunk mid-slot', 6 * CS + 10, 10],
    ['shrunk to a slot boundary', 6 * CS, 0],
  ];
  for (const [what, size, reads] of cases) {
    const child = join(dir, `${what.replace(/ /g, '-')}.img`);
    await fs.copyFile(parent, child);
    if (size > parentSize) await fs.appendFile(child, seededBytes(2, size - parentSize));
    else await fs.truncate(child, size);
    const report = await runBackup(store, { threads: 1, sources: [`sda=${child}`], name: 'vm', parent: base.id, changed: [nothing] });
    t.equal(report.bytesRead, reads, `${what}: reads ${reads} bytes`);
    t.same(report.disks, [{ label: 'sda', size }]);
    const out = join(dir, `out-${report.id}.img`);
    await restore(store, report.id, out, { threads: 1 });
    t.equal(await sha256File(out), await sha256File(child), `${what}: restores byte-identical`);
  }
});

/** A store whose one restore point (of `chunks` random chunks) a next backup planned with, then was removed from the catalog. */
async function removedParent(t: Test, chunks: number, seed: number) {
  const dir = await tempDir(t);
  const store = await initStore(join(dir, 'store'), '64K');
  const image = join(dir, 'sda.img');
  await writeImage(image, [{ kind: 'random', bytes: chunks * CS, seed }]);
  await runBackup(store, { threads: 1, sources: [`sda=${image}`], name: 'vm' });
  const [parent] = (await store.catalog.list()).points;
  const parentMap = await store.readMap(parent.id, 'sda');
  await store.catalog.remove(parent.id);
  return { dir, store, image, parent, parentMap };
}

t.test('a parent removed between reading its map and opening the index is refused: its chunks may be gone', async (t) => {
  const { store, image, parent, parentMap } = await removedParent(t, 4, 5);
  const layout = { ...wholeDisk(4 * CS, CS), changed: [] };
  // Opening LevelDB rewrites its own log and manifest: compare what a backup would add.
  const written = (): Promise<string[]> => Promise.all(['catalog', 'maps', 'packs'].map((part) => treeDigest(join(store.location, part))));
  const before = await written();
  const pool = new WorkerPool(store.backend.spec, 1);
  t.teardown(() => pool.close());
  await t.rejects(backup(store, [{ label: 'sda', path: image, layout, parentMap }], { name: 'vm', time: parent.time, kind: 'cbt', parent, pool, compression: DEFAULT_COMPRESSION }), {
    code: 'CV_INVALID_INPUT',
    message: new RegExp(`parent ${parent.id} was removed while this backup started; nothing was written`),
  });
  t.same(await written(), before, 'no pack, map or catalog entry written');
});

t.test('a default parent removed and collected while the backup started is dropped: every chunk is stored again', async (t) => {
  const { dir, store, image, parent, parentMap } = await removedParent(t, 16, 9);
  // Collected too, before the backup opened the index: none of its ids may be reused.
  t.equal((await gc(store, { maxUnused: 0 })).chunksFreed, 16, "the parent's chunks are gone");
  const pool = new WorkerPool(store.backend.spec, 2);
  t.teardown(() => pool.close());
  const point = await backup(store, [{ label: 'sda', path: image, layout: wholeDisk(16 * CS, CS), parentMap }], { name: 'vm', time: parent.time, kind: 'full', parent, implicitParent: true, pool, compression: DEFAULT_COMPRESSION });
  t.equal(point.parent, null, 'recorded without a parent');
  t.equal(point.stats.chunksNew, 16, 'every chunk stored again');
  const out = join(dir, 'out.img');
  await restore(store, point.id, out, { threads: 1 });
  t.equal(await sha256File(out), await sha256File(image), 'restores byte-identical');
});

t.test('two disks: LABEL= forms pick the disk a CBT list belongs to; a disk without one is read whole', async (t) => {
  const dir = await tempDir(t);
  const store = await initStore(join(dir, 'store'), '64K');
  const [sda, sdb] = [join(dir, 'sda.img'), join(dir, 'sdb.img')];
  await writeImage(sda, [{ kind: 'random', bytes: 8 * CS, seed: 6 }]);
  await writeImage(sdb, [{ kind: 'random', bytes: 3 * CS, seed: 7 }]);
  const full = await runBackup(store, { threads: 1, sources: [`sda=${sda}`, `sdb=${sdb}`], name: 'vm' });
  const handle = await fs.open(sda, 'r+');
  await handle.write(seededBytes(8, 100), 0, 100, 5 * CS + 7);
  await handle.close();
  const cbt = join(dir, 'sda.cbt.json');
  await fs.writeFile(cbt, JSON.stringify({ changed: [{ offset: 5 * CS + 7, length: 100 }] }));
  const next = await runBackup(store, { threads: 1, sources: [`sda=${sda}`, `sdb=${sdb}`], name: 'vm', parent: full.id, changed: [`sda=${cbt}`] });
  t.equal(next.bytesRead, 4096 + 3 * CS, "sda: the one touched 4 KiB block; sdb: all of it, compared with the parent's ids");
  t.equal(next.chunksNew, 1);
  for (const [label, image] of [
    ['sda', sda],
    ['sdb', sdb],
  ]) {
    const out = join(dir, `out-${label}.img`);
    await restore(store, next.id, out, { disk: label, threads: 1 });
    t.equal(await sha256File(out), await sha256File(image), `${label} restores byte-identical`);
  }
});
