/**
 * Sub-chunk reads: a CBT incremental reads only the changed 4 KiB blocks of a partly changed
 * slot and takes the rest from the parent's chunk. Planning exactly, then end to end: bytes
 * read from the source and from the store, restores byte-identical, a damaged parent chunk.
 */
import t, { type Test } from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { backup } from '../../engine/backup.js';
import { WorkerPool } from '../../engine/pool.js';
import { initStore, restore, runBackup, type Store } from '../../engine/index.js';
import { discardRanges, planSlots, wholeDisk, MIN_SPARED_SHARE, READ_ALIGN, type DiskLayout, type Range } from '../../engine/plan.js';
import type { SlotPlan } from '../../engine/tasks.js';
import { RECORD_HEADER_BYTES } from '../../store/pack.js';
import { ID_BYTES } from '../../store/chunk-id.js';
import { DEFAULT_COMPRESSION } from '../../store/compression.js';
import { chunkLocation, corruptChunk } from '../helpers/corrupt.js';
import { seededBytes, sha256File, tempDir, treeDigest, writeImage } from '../helpers/index.js';

const CS = 64 * 1024;
const B = READ_ALIGN;

function readPlans(layout: DiskLayout): SlotPlan[] {
  return Array.from(planSlots(layout)).flatMap((a) => (a.kind === 'read' ? [a.plan] : []));
}

function cbtLayout(size: number, changed: Range[], extents = wholeDisk(size, CS).extents): DiskLayout {
  return { size, chunkSize: CS, extents, changed };
}

t.test('planning: changed bytes rounded out to 4 KiB, clamped to the slot, the disk end and the extents', async (t) => {
  t.same(readPlans(cbtLayout(4 * CS, [{ offset: CS + 5000, length: 10 }])), [{ slot: 1, length: CS, reads: [{ at: B, from: CS + B, length: B }], keep: [{ at: 0, length: B }, { at: 2 * B, length: CS - 2 * B }] }], 'one byte range: its one block');
  t.same(readPlans(cbtLayout(4 * CS, [{ offset: 2 * CS - 10, length: 20 }])).map((p) => [p.slot, p.reads]), [
    [1, [{ at: CS - B, from: 2 * CS - B, length: B }]],
    [2, [{ at: 0, from: 2 * CS, length: B }]],
  ], 'a range across a slot edge: a block on each side');
  const size = 3 * CS + 6000; // the last slot ends 1904 bytes into its second block
  t.same(readPlans(cbtLayout(size, [{ offset: size - 100, length: 100 }])), [{ slot: 3, length: 6000, reads: [{ at: B, from: 3 * CS + B, length: 6000 - B }], keep: [{ at: 0, length: B }] }], 'clamped to the disk end');
  const extents = [
    { offset: 0, length: CS + 1000, from: 7 * CS },
    { offset: CS + 3000, length: CS - 3000, from: 100 },
  ];
  t.same(readPlans(cbtLayout(2 * CS, [{ offset: CS + 500, length: 3000 }], extents)), [
    {
      slot: 1,
      length: CS,
      reads: [
        { at: 0, from: 8 * CS, length: 1000 },
        { at: 3000, from: 100, length: B - 3000 },
      ],
      keep: [{ at: B, length: CS - B }],
    },
  ], "clamped to the extents (the gap stays zero), each part read from its extent's source offset");
});

t.test('planning: a slot changed almost whole is read whole (MIN_SPARED_SHARE), and a slot wholly changed always', async (t) => {
  const MiB = 1024 * 1024;
  const slot = (changed: Range[]): DiskLayout => ({ size: MiB, chunkSize: MiB, extents: [{ offset: 0, length: MiB, from: 0 }], changed });
  const spared = MiB * MIN_SPARED_SHARE;
  t.same(readPlans(slot([{ offset: 0, length: MiB - spared }])), [{ slot: 0, length: MiB, reads: [{ at: 0, from: 0, length: MiB - spared }], keep: [{ at: MiB - spared, length: spared }] }], 'sparing exactly the share: only the changed part');
  t.same(readPlans(slot([{ offset: 0, length: MiB - spared + 1 }])), [{ slot: 0, length: MiB, reads: [{ at: 0, from: 0, length: MiB }] }], 'sparing a block less: read whole, nothing kept');
  t.same(readPlans(slot([{ offset: 0, length: 1 }, { offset: 8 * B, length: MiB - 16 * B }, { offset: MiB - 1, length: 1 }])), [{ slot: 0, length: MiB, reads: [{ at: 0, from: 0, length: MiB }] }], 'gaps adding up to less than the share: read whole');
  t.same(readPlans(cbtLayout(CS, [{ offset: 0, length: CS }])), [{ slot: 0, length: CS, reads: [{ at: 0, from: 0, length: CS }] }], 'changed whole: read whole');
});

t.test('planning: discarded bytes are neither read nor kept; a slot discarded in part reads nothing else unchanged', async (t) => {
  const layout = discardRanges(cbtLayout(2 * CS, []), [{ offset: 2 * B, length: 3 * B }]);
  t.same(readPlans(layout), [{ slot: 0, length: CS, reads: [], keep: [{ at: 0, length: 2 * B }, { at: 5 * B, length: CS - 5 * B }] }], 'the parent outside the discard, zeros in it, no source read');
});

/** A disk of `slots` random slots backed up as the parent of what follows; one worker (see plan.test.ts). */
async function parentStore(t: Test, slots: number, size = slots * CS) {
  const dir = await tempDir(t);
  const store = await initStore(join(dir, 'store'), '64K');
  const image = join(dir, 'parent.img');
  await writeImage(image, [{ kind: 'random', bytes: size, seed: 31 }]);
  const parent = await runBackup(store, { threads: 1, sources: [`sda=${image}`], name: 'vm' });
  return { dir, store, image, parent };
}

/** A copy of `image` with `writes` applied (offset, seed, length), and its CBT list; `grow` bytes appended. */
async function changedCopy(dir: string, image: string, writes: [number, number, number][], grow = 0): Promise<{ child: string; cbt: string }> {
  const child = join(dir, `child-${writes.length}-${grow}.img`);
  await fs.copyFile(image, child);
  const handle = await fs.open(child, 'r+');
  for (const [offset, seed, length] of writes) await handle.write(seededBytes(seed, length), 0, length, offset);
  await handle.close();
  if (grow > 0) await fs.appendFile(child, seededBytes(77, grow));
  const cbt = join(dir, `child-${writes.length}-${grow}.cbt.json`);
  await fs.writeFile(cbt, JSON.stringify({ changed: writes.map(([offset, , length]) => ({ offset, length })) }));
  return { child, cbt };
}

/** The 4 KiB blocks the writes touch, in bytes. */
function blockBytes(writes: [number, number, number][]): number {
  const blocks = new Set<number>();
  for (const [offset, , length] of writes) for (let b = Math.floor(offset / B); b * B < offset + length; b++) blocks.add(b);
  return blocks.size * B;
}

/** Pack bytes (header and payload) of the parent's chunks at these slots. */
async function recordBytes(store: Store, pointId: string, slots: number[]): Promise<number> {
  let sum = 0;
  for (const slot of slots) sum += RECORD_HEADER_BYTES + (await chunkLocation(store.location, pointId, 'sda', slot)).storedLength;
  return sum;
}

// A few KiB in 24 of 32 slots, some across a 4 KiB boundary, one across a slot edge.
const SCATTERED: [number, number, number][] = Array.from({ length: 24 }, (_, i) => [i * CS + 1000 + i * 2311, 100 + i, 1500 + i * 97]);

t.test('scattered changes of a few KiB: exactly their blocks read from the source, the parent chunks from the store, restored byte-identical', async (t) => {
  const { dir, store, image, parent } = await parentStore(t, 32);
  const writes: [number, number, number][] = [...SCATTERED, [26 * CS - 700, 999, 1400]];
  const { child, cbt } = await changedCopy(dir, image, writes);
  const next = await runBackup(store, { threads: 1, sources: [`sda=${child}`], name: 'vm', parent: parent.id, changed: [cbt] });
  t.equal(next.bytesRead, blockBytes(writes), `${blockBytes(writes) / B} blocks of 4 KiB read for ${writes.reduce((s, w) => s + w[2], 0)} changed bytes`);
  t.equal(next.bytesReadFromStore, await recordBytes(store, parent.id, [...Array.from({ length: 24 }, (_, i) => i), 25, 26]), "each partly changed slot's parent record read once");
  t.equal(next.chunksNew, 26);
  const out = join(dir, 'out.img');
  await restore(store, next.id, out, { threads: 1 });
  t.equal(await sha256File(out), await sha256File(child), 'restores byte-identical to the changed disk');
});

t.test('a zero slot of the parent needs no store read: the change alone is read', async (t) => {
  const dir = await tempDir(t);
  const store = await initStore(join(dir, 'store'), '64K');
  const image = join(dir, 'parent.img');
  await writeImage(image, [{ kind: 'random', bytes: CS, seed: 3 }, { kind: 'zerofill', bytes: CS }]);
  const parent = await runBackup(store, { threads: 1, sources: [`sda=${image}`], name: 'vm' });
  const { child, cbt } = await changedCopy(dir, image, [[CS + 3 * B, 5, 10]]);
  const next = await runBackup(store, { threads: 1, sources: [`sda=${child}`], name: 'vm', parent: parent.id, changed: [cbt] });
  t.match(next, { bytesRead: B, bytesReadFromStore: 0, chunksNew: 1 });
  const out = join(dir, 'out.img');
  await restore(store, next.id, out, { threads: 1 });
  t.equal(await sha256File(out), await sha256File(child), 'restores byte-identical');
});

t.test('a grown disk: changed blocks in the common part, the new slots and the parent\'s short last slot read whole', async (t) => {
  const parentSize = 10 * CS + 100;
  const { dir, store, image, parent } = await parentStore(t, 11, parentSize);
  const writes = SCATTERED.slice(0, 8);
  const grow = 4 * CS - 95;
  const { child, cbt } = await changedCopy(dir, image, writes, grow);
  const next = await runBackup(store, { threads: 1, sources: [`sda=${child}`], name: 'vm', parent: parent.id, changed: [cbt] });
  t.equal(next.bytesRead, blockBytes(writes) + (parentSize + grow - 10 * CS), 'the changed blocks, then slot 10 on whole');
  const out = join(dir, 'out.img');
  await restore(store, next.id, out, { threads: 1 });
  t.equal(await sha256File(out), await sha256File(child), 'restores byte-identical');
});

t.test('a disk with extents: changed blocks read from their source offsets, the gaps stay zero, restored exactly', async (t) => {
  const dir = await tempDir(t);
  const store = await initStore(join(dir, 'store'), '64K');
  // The disk's bytes [0, 3 CS) and [4 CS + 1000, 8 CS) lie on the "LUN" at 5 CS and at 0; the rest is zero.
  const lun = join(dir, 'lun.img');
  await writeImage(lun, [{ kind: 'random', bytes: 9 * CS, seed: 12 }]);
  const map = (): string => JSON.stringify({ size: 8 * CS, extents: [{ offset: 0, length: 3 * CS, sourceOffset: 5 * CS }, { offset: 4 * CS + 1000, length: 4 * CS - 1000, sourceOffset: 0 }] });
  const extents = join(dir, 'extents.json');
  await fs.writeFile(extents, map());
  const parent = await runBackup(store, { threads: 1, sources: [`sda=${lun}`], name: 'vm', extents: [extents] });
  // Disk offsets changed: in the first extent (slot 1), and across the gap into the second (slot 4).
  const handle = await fs.open(lun, 'r+');
  await handle.write(seededBytes(13, 2000), 0, 2000, 5 * CS + CS + 100);
  await handle.write(seededBytes(14, 2000), 0, 2000, 0);
  await handle.close();
  const cbt = join(dir, 'cbt.json');
  await fs.writeFile(cbt, JSON.stringify({ changed: [{ offset: CS + 100, length: 2000 }, { offset: 4 * CS, length: 3000 }] }));
  const next = await runBackup(store, { threads: 1, sources: [`sda=${lun}`], name: 'vm', parent: parent.id, changed: [cbt], extents: [extents] });
  t.equal(next.bytesRead, B + (B - 1000), "slot 1's block; slot 4's first block less the gap's 1000 bytes");
  const expected = Buffer.alloc(8 * CS);
  const bytes = await fs.readFile(lun);
  bytes.copy(expected, 0, 5 * CS, 8 * CS);
  bytes.copy(expected, 4 * CS + 1000, 0, 4 * CS - 1000);
  const out = join(dir, 'out.img');
  await restore(store, next.id, out, { threads: 1 });
  t.ok((await fs.readFile(out)).equals(expected), 'restores the disk the extents describe, byte for byte');
});

t.test('discarded ranges in partly changed slots: zeros there, the parent around them, no source read for them', async (t) => {
  const { dir, store, image } = await parentStore(t, 4);
  const [parent] = (await store.catalog.list()).points;
  const { child } = await changedCopy(dir, image, [[CS + 100, 9, 500]]);
  const parentMap = await store.readMap(parent.id, 'sda');
  const discarded = [{ offset: 2 * CS + 3 * B, length: 2 * B }];
  const layout = discardRanges({ ...wholeDisk(4 * CS, CS), changed: [{ offset: CS + 100, length: 500 }] }, discarded);
  const pool = new WorkerPool(store.backend.spec, 1);
  t.teardown(() => pool.close());
  const point = await backup(store, [{ label: 'sda', path: child, layout, parentMap }], { name: 'vm', time: new Date().toISOString(), kind: 'cbt', parent, pool, compression: DEFAULT_COMPRESSION });
  t.equal(point.stats.bytesRead, B, 'only the changed block; the discarded slot reads nothing');
  const expected = await fs.readFile(child);
  expected.fill(0, 2 * CS + 3 * B, 2 * CS + 5 * B);
  const out = join(dir, 'out.img');
  await restore(store, point.id, out, { threads: 1 });
  t.ok((await fs.readFile(out)).equals(expected), 'the changed disk with zeros where discarded');
});

t.test("a damaged parent chunk fails the backup naming the parent, disk and offset; the catalog is unchanged", async (t) => {
  const { dir, store, image, parent } = await parentStore(t, 8);
  await corruptChunk(store.location, parent.id, 'sda', 5);
  const { child, cbt } = await changedCopy(dir, image, [[5 * CS + 9000, 4, 100], [2 * CS, 5, 100]]);
  const catalog = await treeDigest(join(store.location, 'catalog'));
  await t.rejects(runBackup(store, { threads: 1, sources: [`sda=${child}`], name: 'vm', parent: parent.id, changed: [cbt] }), {
    code: 'CV_DAMAGED',
    exitCode: 1,
    data: { restorePoint: parent.id, disk: 'sda', offset: 5 * CS, problem: 'hash' },
    message: `restore point ${parent.id} disk sda at offset ${5 * CS}: hash; this incremental backup takes that slot's unchanged bytes from it and was not committed; run 'chunkvault verify' to see the damage`,
  });
  t.equal(await treeDigest(join(store.location, 'catalog')), catalog, 'no restore point committed');
  t.equal((await store.catalog.list()).points.length, 1);
});

t.test('a parent chunk missing from the index fails the backup the same way, before any worker reads it', async (t) => {
  const { dir, store, image, parent } = await parentStore(t, 4);
  const map = await store.readMap(parent.id, 'sda');
  const index = await store.openIndex();
  await index.deleteMany([Buffer.from(map.subarray(2 * ID_BYTES, 3 * ID_BYTES))]);
  await index.close();
  const { child, cbt } = await changedCopy(dir, image, [[2 * CS + 100, 6, 100]]);
  await t.rejects(runBackup(store, { threads: 1, sources: [`sda=${child}`], name: 'vm', parent: parent.id, changed: [cbt] }), {
    code: 'CV_DAMAGED',
    data: { restorePoint: parent.id, disk: 'sda', offset: 2 * CS, problem: 'chunk missing from the index' },
    message: `restore point ${parent.id} disk sda at offset ${2 * CS}: chunk missing from the index; this incremental backup takes that slot's unchanged bytes from it and was not committed; run 'chunkvault verify' to see the damage`,
  });
  t.equal((await store.catalog.list()).points.length, 1, 'no restore point committed');
});
