/** gc --recompress on real temp stores: which records change, settled ones, ages, damage, and what a second gc finds. */
import t, { type Test } from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { initStore, openStore, runBackup, restore, verify, type Store } from '../../engine/index.js';
import { gc, MIN_GAIN } from '../../engine/gc.js';
import { executePrune, planPrune } from '../../engine/prune.js';
import { chunkId, loadHasher } from '../../store/chunk-id.js';
import { Codec, PACK_OVERHEAD_BYTES, type ChunkLocation } from '../../store/pack.js';
import type { RecompressPolicy } from '../../store/format.js';
import { corruptChunk, packFile } from '../helpers/corrupt.js';
import { MiB, compressibleText, seededBytes, sha256File, tempDir, treeDigest, writeImage } from '../helpers/index.js';

await loadHasher();

const CHUNK = 64 * 1024;
const ZSTD_3: RecompressPolicy = { compression: { codec: 'zstd', level: 3 }, olderThanSeconds: 0 };
const DAY_SECONDS = 86_400;

/** Version k: a random MiB of its own (16 chunks LZ4 cannot shrink: stored raw), then text of its own (16 LZ4 chunks). */
function versionParts(k: number): Parameters<typeof writeImage>[1] {
  return [
    { kind: 'random', bytes: MiB, seed: 10 + k },
    { kind: 'text', bytes: k * MiB },
  ];
}

/** The image's bytes as the store's chunks: random slots first, text slots after. */
function imageChunks(k: number): { random: Buffer[]; text: Buffer[] } {
  const text = compressibleText(k * MiB);
  const random = seededBytes(10 + k, MiB);
  const slices = (data: Buffer): Buffer[] => Array.from({ length: data.byteLength / CHUNK }, (_, i) => data.subarray(i * CHUNK, (i + 1) * CHUNK));
  return { random: slices(random), text: slices(text).slice((k - 1) * 16) };
}

/** Two LZ4 backups (one pack each), made once; each test works on its own copy. */
const base = await (async () => {
  const dir = await tempDir(t);
  const store = await initStore(join(dir, 'store'), '64K', 'lz4');
  const images: string[] = [];
  const ids: string[] = [];
  for (let k = 1; k <= 2; k++) {
    const image = join(dir, `v${k}.img`);
    await writeImage(image, versionParts(k));
    images.push(image);
    ids.push((await runBackup(store, { sources: [`disk=${image}`], name: 'vm', time: `2026-11-0${k}T12:00:00Z`, threads: 1 })).id);
  }
  return { dir: store.location, images, ids };
})();

async function copyOfBase(t: Test): Promise<{ dir: string; store: Store }> {
  const dir = await tempDir(t);
  await fs.cp(base.dir, join(dir, 'store'), { recursive: true, preserveTimestamps: true });
  return { dir, store: await openStore(join(dir, 'store')) };
}

async function locations(store: Store): Promise<Map<string, ChunkLocation>> {
  const index = await store.openIndex();
  try {
    const found = new Map<string, ChunkLocation>();
    for await (const [id, location] of index.entries()) found.set(id.toString('hex'), location);
    return found;
  } finally {
    await index.close();
  }
}

const kinds = (all: Map<string, ChunkLocation>, chunks: Buffer[]): [string, boolean][] =>
  chunks.map((c) => all.get(chunkId(c).toString('hex'))!).map((l) => [Codec[l.codec], l.settled]);

async function packBytes(store: Store): Promise<number> {
  return (await store.listPacks()).reduce((sum, p) => sum + p.size, 0);
}

async function restoresIdentically(t: Test, store: Store, dir: string): Promise<void> {
  for (const [i, id] of base.ids.entries()) {
    const out = join(dir, `restored-${id}.img`);
    await restore(store, id, out, { threads: 1 });
    t.equal(await sha256File(out), await sha256File(base.images[i]), `${id} restores byte-identical`);
  }
  t.ok((await verify(store, undefined, { readData: true, threads: 1 })).clean, 'verify --read-data is clean');
}

t.test('the LZ4 store as it starts: raw random chunks, LZ4 text chunks, none settled', async (t) => {
  const { store } = await copyOfBase(t);
  const all = await locations(store);
  t.equal(all.size, 16 + 16 + 16 + 16);
  for (let k = 1; k <= 2; k++) {
    const { random, text } = imageChunks(k);
    t.same(kinds(all, random), random.map(() => ['Raw', false]), `v${k}: random chunks raw`);
    t.same(kinds(all, text), text.map(() => ['Lz4', false]), `v${k}: text chunks LZ4`);
  }
});

t.test('gc --recompress zstd:3 --older-than 0: text chunks become zstd, random ones settle, and a second gc finds nothing', async (t) => {
  const { dir, store } = await copyOfBase(t);
  const before = await packBytes(store);
  const packsBefore = (await store.listPacks()).map((p) => p.name).sort();
  const oldText = [...(await locations(store)).values()].filter((l) => l.codec === Codec.Lz4);

  // Every record is live: all but the trailers of the two packs' tables.
  const liveBytes = before - 2 * PACK_OVERHEAD_BYTES;
  const dry = await gc(store, { recompress: ZSTD_3, dryRun: true });
  t.match(dry.recompression, { compression: 'zstd:3', olderThanSeconds: 0, packs: 2, liveBytes, recordsTried: 64, recordsRecompressed: 0 }, 'the dry run names both packs and their live bytes');
  t.equal(await packBytes(store), before, 'the dry run changed nothing');

  const report = await gc(store, { recompress: ZSTD_3 });
  t.match(report, { packsRewritten: 2, packsDeleted: 0, chunksFreed: 0, packsDamaged: [] });
  const r = report.recompression!;
  t.match(r, { compression: 'zstd:3', packs: 2, liveBytes, recordsTried: 64, recordsRecompressed: 32, recordsSettled: 32 });
  const after = await packBytes(store);
  t.ok(after < before, `pack bytes ${before} -> ${after}`);
  const trailersSaved = (packsBefore.length - (await store.listPacks()).length) * PACK_OVERHEAD_BYTES;
  t.equal(r.bytesBefore - r.bytesAfter + trailersSaved, before - after, 'every byte saved is a byte of the records recompressed, or a trailer of a pack no longer there');
  t.ok(r.seconds > 0 && r.mbPerSecond > 0, `${r.mbPerSecond.toFixed(1)} MB/s`);
  t.same((await store.listPacks()).map((p) => p.name).filter((p) => packsBefore.includes(p)), [], 'the old packs are gone');

  const all = await locations(store);
  for (let k = 1; k <= 2; k++) {
    const { random, text } = imageChunks(k);
    t.same(kinds(all, random), random.map(() => ['Raw', true]), `v${k}: random chunks kept raw, settled`);
    t.same(kinds(all, text), text.map(() => ['Zstd', false]), `v${k}: text chunks zstd`);
  }
  const newText = [...all.values()].filter((l) => l.codec === Codec.Zstd);
  const stored = (ls: ChunkLocation[]): number => ls.reduce((sum, l) => sum + l.storedLength, 0);
  t.ok(stored(newText) <= stored(oldText) * (1 - MIN_GAIN), 'each kept zstd payload saved at least MIN_GAIN');
  await restoresIdentically(t, store, dir);

  const digest = await treeDigest(join(store.backend.localDir!, 'packs'));
  const again = await gc(store, { recompress: ZSTD_3 });
  t.match(again, { packsRewritten: 0, recompression: { packs: 0, recordsTried: 0, recordsRecompressed: 0, recordsSettled: 0 } }, 'a second identical gc recompresses nothing');
  t.equal(await treeDigest(join(store.backend.localDir!, 'packs')), digest, 'and leaves the packs as they are');
});

t.test('packs last written less than --older-than ago are left as they are', async (t) => {
  const { store } = await copyOfBase(t);
  const packs = (await store.listPacks()).sort((a, b) => a.name.localeCompare(b.name));
  const old = new Date(Date.now() - 10 * DAY_SECONDS * 1000);
  await fs.utimes(packFile(store, packs[0].name), old, old);
  const young = await fs.readFile(packFile(store, packs[1].name));

  const weekOld: RecompressPolicy = { ...ZSTD_3, olderThanSeconds: 7 * DAY_SECONDS };
  t.match((await gc(store, { recompress: weekOld, dryRun: true })).recompression, { packs: 1, liveBytes: packs[0].size - PACK_OVERHEAD_BYTES });
  const report = await gc(store, { recompress: weekOld });
  t.match(report.recompression, { packs: 1, recordsTried: 32 });
  const names = (await store.listPacks()).map((p) => p.name);
  t.notOk(names.includes(packs[0].name), 'the 10-day-old pack was rewritten');
  t.same(await fs.readFile(packFile(store, packs[1].name)), young, 'the young pack is untouched');
  t.match((await gc(store, { recompress: { ...ZSTD_3, olderThanSeconds: 11 * DAY_SECONDS } })).recompression, { packs: 0 }, 'nothing is 11 days old');
});

t.test("without --recompress gc follows the store's standing order, and only then", async (t) => {
  const { store } = await copyOfBase(t);
  t.equal((await gc(store)).recompression, null, 'no order: no recompression');
  t.equal((await gc(store, { recompress: null })).recompression, null);
  await store.configure({ compression: store.compression, recompress: { compression: { codec: 'zstd', level: 5 }, olderThanSeconds: 0 } });
  t.match((await gc(store, { dryRun: true })).recompression, { compression: 'zstd:5', packs: 2 });
  t.equal((await gc(store, { recompress: null, dryRun: true })).recompression, null, 'null turns the order off for one gc');
  t.match((await gc(store)).recompression, { compression: 'zstd:5', packs: 2, recordsRecompressed: 32, recordsSettled: 32 });
});

t.test('a pack both to compact and to recompress is rewritten once, without its dead records', async (t) => {
  const { dir, store } = await copyOfBase(t);
  // Keeping v2 only: v1's random chunks die; its text chunks are v2's too.
  t.same(await executePrune(store, await planPrune(store, { last: 1 })), [base.ids[0]]);
  const packs = await store.listPacks();
  const report = await gc(store, { recompress: ZSTD_3, maxUnused: 0 });
  t.match(report, { chunksFreed: 16, packsDeleted: 0, packsRewritten: 2, packsDamaged: [] });
  t.match(report.recompression, { packs: 2, recordsTried: 48, recordsRecompressed: 32, recordsSettled: 16 }, "v1's text chunks are v2's too: recompressed once");
  t.equal((await store.listPacks()).filter((p) => packs.some((q) => q.name === p.name)).length, 0, 'both old packs are gone');
  const all = await locations(store);
  t.equal(all.size, 48);
  const out = join(dir, 'v2.img');
  await restore(store, base.ids[1], out, { threads: 1 });
  t.equal(await sha256File(out), await sha256File(base.images[1]), 'v2 restores byte-identical');
  t.match(await gc(store, { recompress: ZSTD_3, maxUnused: 0 }), { packsRewritten: 0, chunksFreed: 0, recompression: { packs: 0 } });
});

t.test('a pack with a damaged live record is left as it is and reported; the others are recompressed', async (t) => {
  const { store } = await copyOfBase(t);
  const damaged = await corruptChunk(store.location, base.ids[0], 'disk', 20);
  const bytes = await fs.readFile(packFile(store, damaged.pack));
  const before = await locations(store);
  const report = await gc(store, { recompress: ZSTD_3 });
  t.same(report.packsDamaged, [damaged.pack]);
  t.match(report.recompression, { packs: 1, recordsTried: 32 }, "v2's pack alone");
  t.same(await fs.readFile(packFile(store, damaged.pack)), bytes, 'the damaged pack is untouched');
  const after = await locations(store);
  const inDamaged = [...before].filter(([, l]) => l.pack === damaged.pack);
  t.same(inDamaged.map(([id]) => after.get(id)), inDamaged.map(([, l]) => l), 'its index entries are as they were');
});
