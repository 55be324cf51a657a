/**
 * A format version 1 store written by the previous release (test/fixtures/store-v1) is read by
 * today's code as it is; a backup, which writes a pack with a record table (version 3), upgrades it,
 * and everything still restores; its packs without tables are walked as they are.
 */
import t, { type Test } from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { StoreStats } from '../../engine/stats.js';
import { cliJson, compressibleText, seededBytes, sha256File, tempDir } from '../helpers/index.js';
import { V1_CHUNK, V1_FIXTURE, writeV1Images } from '../helpers/store-v1.js';

const FULL = '01a2340b96d4dc17';
const CBT = '01a2340ba3689495';
const V1_FORMAT = { format: 'chunkvault', version: 1, chunkSize: V1_CHUNK, created: '2026-12-01T23:58:24.247Z' };

/** A copy of the fixture to change, and the images its two backups were taken of. */
async function v1Store(t: Test): Promise<{ dir: string; store: string; images: Record<string, string> }> {
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  await fs.cp(join(V1_FIXTURE, 'store'), store, { recursive: true });
  // git keeps no empty directory: the store had an empty locks/.
  await fs.mkdir(join(store, 'locks'), { recursive: true });
  const { base, second } = await writeV1Images(dir);
  return { dir, store, images: { [FULL]: base, [CBT]: second } };
}

async function formatFile(store: string): Promise<Record<string, unknown>> {
  return JSON.parse(await fs.readFile(join(store, 'chunkvault.json'), 'utf8')) as Record<string, unknown>;
}

/** Text that compresses, then random bytes, none of it in the fixture. */
async function newImage(dir: string, seed: number): Promise<string> {
  const path = join(dir, `new-${seed}.img`);
  await fs.writeFile(path, Buffer.concat([compressibleText(3 * V1_CHUNK, seed), seededBytes(seed, V1_CHUNK)]));
  return path;
}

async function restoresAll(t: Test, dir: string, store: string, images: Record<string, string>): Promise<void> {
  for (const [id, image] of Object.entries(images)) {
    const target = join(dir, `restored-${id}.img`);
    await cliJson(['restore', '--store', store, id, target]);
    t.equal(await sha256File(target), await sha256File(image), `${id} restores sha256-identical`);
  }
}

t.test('the version 1 store is listed, verified and restored as it is', async (t) => {
  const { dir, store, images } = await v1Store(t);
  t.same(await formatFile(store), V1_FORMAT);
  // As the fixture's README records: the recipe still builds the images the old release backed up.
  t.equal(await sha256File(images[FULL]), 'b3320f1328af5560576a502832cbc18369b275b40b02b8abaa6f5d6575e0f410');
  t.equal(await sha256File(images[CBT]), '50f9065988d82f72249aae276f75ad1ed5cab05bb9724b5615ab7debe1a5297c');
  const list = await cliJson<{ id: string; name: string; kind: string; parent: string | null; disks: unknown }[]>(['list', '--store', store]);
  t.same(
    list.map(({ id, name, kind, parent, disks }) => ({ id, name, kind, parent, disks })),
    [
      { id: CBT, name: 'vm1', kind: 'cbt', parent: FULL, disks: [{ label: 'disk0', size: 443216 }] },
      { id: FULL, name: 'vm1', kind: 'full', parent: null, disks: [{ label: 'disk0', size: 443216 }] },
    ],
  );
  t.match(await cliJson(['verify', '--store', store, '--read-data']), { clean: true, restorePoints: 2, chunksChecked: 7, damaged: [] });
  await restoresAll(t, dir, store, images);
  const stats = await cliJson<StoreStats>(['stats', '--store', store]);
  t.match(stats, { restorePoints: 2, uniqueChunks: 7, codecs: { raw: { chunks: 4 }, lz4: { chunks: 3 }, zstd: { chunks: 0, storedBytes: 0 } } });
  t.same(await formatFile(store), V1_FORMAT, 'reading changes nothing in the format file');
});

t.test('an LZ4 backup upgrades the store to version 3: its new pack has a table, the old ones are read as they are', async (t) => {
  const { dir, store, images } = await v1Store(t);
  const image = await newImage(dir, 61);
  const { id } = await cliJson<{ id: string }>(['backup', '--store', store, '--name', 'vm2', '--compression', 'lz4', image]);
  t.same(await formatFile(store), { ...V1_FORMAT, version: 3 }, 'version 3, every other field kept: an older chunkvault refuses the store rather than take the table for damage');
  t.match(await cliJson<StoreStats>(['stats', '--store', store]), { codecs: { lz4: { chunks: 3 + 3 }, zstd: { chunks: 0 } } });
  t.match(await cliJson(['repair', '--store', store]), { packsScanned: 3, chunksFound: 7 + 4, damagedRanges: [] }, 'packs with and without a table: no damage');
  t.match(await cliJson(['verify', '--store', store, '--read-data']), { clean: true, restorePoints: 3, damaged: [] });
  await restoresAll(t, dir, store, { ...images, [id]: image });
});

t.test('a zstd backup upgrades the store to version 3 and everything still restores', async (t) => {
  const { dir, store, images } = await v1Store(t);
  const image = await newImage(dir, 62);
  const { id } = await cliJson<{ id: string }>(['backup', '--store', store, '--name', 'vm2', '--compression', 'zstd:3', image]);
  t.same(await formatFile(store), { ...V1_FORMAT, version: 3 }, 'version 3, every other field kept');
  t.match(await cliJson<StoreStats>(['stats', '--store', store]), { codecs: { raw: { chunks: 4 + 1 }, lz4: { chunks: 3 }, zstd: { chunks: 3 } } });
  // The second backup's image with text over its remaining hole (slot 2).
  const incremental = join(dir, 'incremental.img');
  await fs.copyFile(images[CBT], incremental);
  const handle = await fs.open(incremental, 'r+');
  await handle.write(compressibleText(V1_CHUNK, 63), 0, V1_CHUNK, 2 * V1_CHUNK);
  await handle.close();
  const next = await cliJson<{ id: string; chunksNew: number }>(['backup', '--store', store, '--name', 'vm1', '--parent', CBT, '--compression', 'zstd:19', `disk0=${incremental}`]);
  t.equal(next.chunksNew, 1, 'an incremental on a version 1 parent adds only the new chunk');
  t.match(await cliJson(['verify', '--store', store, '--read-data']), { clean: true, restorePoints: 4, damaged: [] });
  await restoresAll(t, dir, store, { ...images, [id]: image, [next.id]: incremental });
});
