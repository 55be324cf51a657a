/** gc on real temp stores: exact sweep, compaction threshold, leftovers, refusals. */
import t, { type Test } from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { initStore, openStore, runBackup, restore, verify, type Store } from '../../engine/index.js';
import { gc, previewGc } from '../../engine/gc.js';
import { executePrune, planPrune } from '../../engine/prune.js';
import { LiveSet } from '../../engine/live-set.js';
import { ID_BYTES } from '../../store/chunk-id.js';
import { PACK_OVERHEAD_BYTES, RECORD_HEADER_BYTES, encodeRecordHeader, encodePayload, recordFootprint } from '../../store/pack.js';
import { chunkId, loadHasher } from '../../store/chunk-id.js';
import { MiB, seededBytes, sha256File, tempDir, treeDigest, writeImage } from '../helpers/index.js';

await loadHasher();

const CHUNK = 64 * 1024;

/** Version k: a shared random MiB, k's own random MiB, shared text, a hole, a shared odd tail. */
async function version(path: string, k: number): Promise<void> {
  await writeImage(path, [
    { kind: 'random', bytes: MiB, seed: 7 },
    { kind: 'random', bytes: MiB, seed: 100 + k },
    { kind: 'text', bytes: MiB },
    { kind: 'zero', bytes: MiB / 2 },
    { kind: 'random', bytes: 100_000, seed: 50 },
  ]);
}

/** Four backups of successive versions, made once; each test works on its own copy. */
const base = await (async () => {
  const dir = await tempDir(t);
  const store = await initStore(join(dir, 'store'), '64K');
  const images: string[] = [];
  const ids: string[] = [];
  for (let k = 1; k <= 4; k++) {
    const image = join(dir, `v${k}.img`);
    await version(image, k);
    images.push(image);
    ids.push((await runBackup(store, { sources: [`disk=${image}`], name: 'vm', time: `2026-11-0${k}T12:00:00Z`, threads: 1 })).id);
  }
  return { dir: store.location, images, ids };
})();

/** A copy of the base store for one test. */
async function copyOfBase(t: { teardown(fn: () => unknown): void }): Promise<{ dir: string; store: Store; images: string[]; ids: string[] }> {
  const dir = await tempDir(t);
  await fs.cp(base.dir, join(dir, 'store'), { recursive: true });
  return { dir, store: await openStore(join(dir, 'store')), images: base.images, ids: base.ids };
}

/** Packs, catalog and maps: what gc may change (LevelDB rewrites its own files on every open). */
async function contentDigest(store: Store): Promise<string> {
  return (await Promise.all(['packs', 'catalog', 'maps'].map((part) => treeDigest(join(store.location, part))))).join();
}

async function packBytes(store: Store): Promise<number> {
  return (await store.listPacks()).reduce((sum, p) => sum + p.size, 0);
}

async function restoresIdentically(t: Test, store: Store, dir: string, id: string, image: string): Promise<void> {
  const out = join(dir, `restored-${id}.img`);
  await restore(store, id, out, { threads: 1 });
  t.equal(await sha256File(out), await sha256File(image), `${id} restores byte-identical`);
}

t.test('after pruning the oldest versions gc frees exactly their own chunks and keeps the rest restorable', async (t) => {
  const { dir, store, images, ids } = await copyOfBase(t);
  const before = await packBytes(store);
  const packsBefore = (await store.listPacks()).length;
  t.equal(packsBefore, 4, 'one pack per backup');
  const nothing = await gc(store);
  t.match(nothing, { chunksFreed: 0, bytesFreed: 0, packsDeleted: 0, packsRewritten: 0 }, 'nothing is dead yet');

  const plan = await planPrune(store, { last: 2 });
  t.same(await executePrune(store, plan), [ids[1], ids[0]]);
  const preview = await previewGc(store);
  const perVersion = 16 * recordFootprint(CHUNK); // 1 MiB of random data, stored raw, and its table entries
  t.equal(preview.deadChunks.length, 32, "versions 1 and 2 each had 16 chunks of their own");
  t.equal(preview.bytesFreed, 2 * perVersion + PACK_OVERHEAD_BYTES, "v2's pack whole (with its table's trailer), and v1's own MiB out of the first pack");
  t.same(
    preview.packs.map((p) => p.action).sort(),
    ['compact', 'delete', 'keep', 'keep'],
    'the first pack (45% dead: v1 own MiB of 2.3 MB) is compacted, the second deleted, the newest two kept',
  );

  const report = await gc(store);
  t.match(report, { dryRun: false, chunksFreed: 32, bytesFreed: 2 * perVersion + PACK_OVERHEAD_BYTES, packsDeleted: 1, packsRewritten: 1, restorePoints: 2, packsDamaged: [] });
  t.equal(report.bytesRewritten, preview.bytesToRewrite);
  t.equal(before - (await packBytes(store)), report.bytesFreed, 'pack bytes on disk fell by exactly bytesFreed');
  t.ok(report.storeBytesAfter < report.storeBytesBefore);
  t.equal(report.refsMarked, 2 * Math.ceil((3.5 * MiB + 100_000) / CHUNK), 'every slot of both maps was read');

  const checked = await verify(store, undefined, { readData: true, threads: 1 });
  t.ok(checked.clean, 'verify --read-data is clean after compaction');
  for (const k of [2, 3]) await restoresIdentically(t, store, dir, ids[k], images[k]);
  t.match(await gc(store), { chunksFreed: 0, bytesFreed: 0, packsDeleted: 0, packsRewritten: 0 }, 'a second gc has nothing left to do');
});

t.test('--max-unused decides which packs are rewritten; a dry run changes nothing', async (t) => {
  const { store } = await copyOfBase(t);
  await executePrune(store, await planPrune(store, { last: 1 }));
  const digest = await contentDigest(store);
  const dry = await gc(store, { dryRun: true, maxUnused: 50 });
  t.match(dry, { dryRun: true, packsRewritten: 0, packsDeleted: 2, chunksFreed: 48 }, "v1's pack is 45% dead: not over 50%");
  t.equal(await contentDigest(store), digest, 'the dry run changed nothing');
  t.match(await gc(store, { dryRun: true, maxUnused: 30 }), { packsRewritten: 1 }, 'but over 30% dead');
  t.match(await gc(store, { maxUnused: 100 }), { packsRewritten: 0, packsDeleted: 2, chunksFreed: 48 });
  t.match(await gc(store, { maxUnused: 0 }), { packsRewritten: 1, chunksFreed: 0 }, 'the swept first pack is rewritten at 0%');
  t.ok((await verify(store, undefined, { readData: true, threads: 1 })).clean);
  t.rejects(gc(store, { maxUnused: 101 }), { code: 'CV_INVALID_INPUT' });
  t.rejects(gc(store, { maxUnused: -1 }), { code: 'CV_INVALID_INPUT' });
});

t.test('leftovers of killed backups are reclaimed: unindexed packs, orphan maps, stale temp files', async (t) => {
  const { dir, store, images, ids } = await copyOfBase(t);
  const before = await packBytes(store);
  // An unindexed pack, as a backup killed before its index batch leaves it.
  const writer = store.newPackWriter();
  const data = seededBytes(99, CHUNK);
  const { codec, payload } = encodePayload(data);
  const header = Buffer.alloc(RECORD_HEADER_BYTES);
  encodeRecordHeader({ codec, level: 0, settled: false, rawLength: CHUNK, storedLength: payload.byteLength, id: chunkId(data) }, header);
  await writer.append([header, payload]);
  await writer.sync();
  await writer.close();
  // A committed map without a catalog entry, and a half-written one.
  await fs.cp(join(store.location, 'maps', ids[0]), join(store.location, 'maps', '00000000000000aa'), { recursive: true });
  await fs.mkdir(join(store.location, 'maps', '00000000000000bb'));
  await fs.writeFile(join(store.location, 'maps', '00000000000000bb', '.disk.map.tmp'), Buffer.alloc(ID_BYTES));
  // Temp files of interrupted catalog writes: an old one, and one a writer may still own.
  const stale = join(store.location, 'catalog', '.0000000000000001.json.abcd.tmp');
  const fresh = join(store.location, 'catalog', '.0000000000000002.json.abcd.tmp');
  await fs.writeFile(stale, '{');
  await fs.writeFile(fresh, '{');
  const hourAgo = new Date(Date.now() - 3600_000);
  await fs.utimes(stale, hourAgo, hourAgo);

  const report = await gc(store);
  t.match(report, { packsDeleted: 1, orphanMapsRemoved: 2, tmpFilesRemoved: 1, chunksFreed: 0 });
  t.equal(await packBytes(store), before, 'only the unindexed pack went');
  t.same((await fs.readdir(join(store.location, 'maps'))).sort(), ids);
  t.same((await fs.readdir(join(store.location, 'catalog'))).sort(), ['.0000000000000002.json.abcd.tmp', ...ids.map((id) => `${id}.json`)], 'the fresh temp file is left to its writer');
  await restoresIdentically(t, store, dir, ids[0], images[0]);
});

t.test('gc refuses while a backup runs, and a backup while gc does; a dry run may go ahead; readers do not stop gc', async (t) => {
  const { store } = await copyOfBase(t);
  await executePrune(store, await planPrune(store, { last: 3 }));
  const backup = await store.lock('backup');
  const digest = await contentDigest(store);
  await t.rejects(gc(store), { code: 'CV_STORE_BUSY', message: new RegExp(`^gc cannot run while 'backup' \\(pid ${process.pid} on [^)]*\\) may use chunks it would delete; run gc when that has finished$`) });
  t.equal(await contentDigest(store), digest, 'nothing deleted while a backup runs');
  t.match(await gc(store, { dryRun: true }), { chunksFreed: 16 });
  t.same((await store.locks()).map((l) => l.command), ['backup'], 'gc removed its own lock as it stopped');
  await backup.release();

  const exclusive = await store.lock('gc', { kind: 'exclusive' });
  await t.rejects(store.lock('backup'), { code: 'CV_STORE_BUSY', message: new RegExp(`^'backup' cannot run while 'gc' \\(pid ${process.pid} on [^)]*\\) holds the store exclusively; run 'backup' when that has finished$`) });
  await exclusive.release();

  const readers = await Promise.all(['restore', 'mount', 'verify --read-data'].map((command) => store.lock(command)));
  t.match(await gc(store), { chunksFreed: 16 }, 'readers that pin nothing keep nothing');
  await Promise.all(readers.map((r) => r.release()));
});

t.test('gc keeps what a live lock pins where it is: no pack of a pinned point is rewritten', async (t) => {
  const { dir, store, images, ids } = await copyOfBase(t);
  await executePrune(store, await planPrune(store, { last: 3 }));
  const rewritable = (await gc(store, { maxUnused: 0, dryRun: true })).packsRewritten;
  t.ok(rewritable > 0, `without pins, ${rewritable} packs would be compacted`);
  const listed = (await store.catalog.list()).points.map((p) => p.id);
  const reader = await store.lock('mount', { pins: listed });
  t.match(await gc(store, { maxUnused: 0 }), { chunksFreed: 16, packsRewritten: 0 }, 'dead chunks go; the records a reader located stay put');
  await reader.release();
  t.match(await gc(store, { maxUnused: 0 }), { chunksFreed: 0, packsRewritten: rewritable }, 'unpinned, the packs are compacted');
  await restoresIdentically(t, store, dir, ids[ids.length - 1], images[images.length - 1]);
});

t.test('gc stops, deleting nothing, when a listed restore point has no readable map', async (t) => {
  const { store, ids } = await copyOfBase(t);
  await executePrune(store, await planPrune(store, { last: 3 }));
  await fs.rm(join(store.location, 'maps', ids[1], 'disk.map'));
  const digest = await contentDigest(store);
  await t.rejects(gc(store), { code: 'CV_DAMAGED', message: new RegExp(`restore point ${ids[1]} disk disk: chunk map unreadable.*deleted nothing`) });
  t.equal(await contentDigest(store), digest);
});

t.test("a catalog entry too damaged to parse still protects its maps' chunks", async (t) => {
  const { dir, store, images, ids } = await copyOfBase(t);
  const entry = join(store.location, 'catalog', `${ids[0]}.json`);
  const intact = await fs.readFile(entry);
  await fs.writeFile(entry, '{ torn');
  const report = await gc(store, { maxUnused: 0 });
  t.match(report, { chunksFreed: 0, bytesFreed: 0, orphanMapsRemoved: 0, restorePoints: 3 });
  await fs.writeFile(entry, intact);
  await restoresIdentically(t, store, dir, ids[0], images[0]);
});

t.test('the live set: 8-byte keys, zero ids never live, neighbours skip unchanged slots', async (t) => {
  const ids = Array.from({ length: 5000 }, (_, i) => chunkId(Buffer.from(`chunk ${i}`)));
  const map = Buffer.concat([...ids.slice(0, 4000), Buffer.alloc(ID_BYTES)]);
  const next = Buffer.concat([...ids.slice(0, 3000), ...ids.slice(4000, 5000), Buffer.alloc(ID_BYTES)]);
  const zeroPrefixed = Buffer.from(ids[0]);
  zeroPrefixed.fill(0, 0, 8);
  const alone = new LiveSet();
  alone.addMap(map);
  const chained = new LiveSet();
  chained.addMap(map);
  chained.addMap(Buffer.concat([next, zeroPrefixed]), map);
  t.equal(alone.size, 4000);
  t.equal(chained.size, 5001, 'the second map added 1000 ids and one with a zero prefix');
  t.equal(chained.refs, 4001 + 4002);
  t.ok(ids.every((id) => chained.has(id)));
  t.notOk(ids.slice(4000).some((id) => alone.has(id)));
  t.notOk(chained.has(Buffer.alloc(ID_BYTES)), 'the zero id is never live');
  t.ok(chained.has(zeroPrefixed));
  t.notOk(alone.has(zeroPrefixed));
});
