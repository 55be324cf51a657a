/** DiskReader: random access to a restore point's disk, decoded and checked on the pool. */
import t, { type Test } from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { Store } from '../../store/store.js';
import { DamagedDataError, StoreBusyError } from '../../engine/errors.js';
import { WorkerPool } from '../../engine/pool.js';
import { ChunkFetcher, DiskReader, type ChunkCache } from '../../engine/reader.js';
import { LruChunkCache } from '../../fuse/chunk-cache.js';
import { MiB, cliJson, seededBytes, tempDir, writeImage } from '../helpers/index.js';
import { corruptChunk } from '../helpers/corrupt.js';

const CHUNK = 64 * 1024;

function mapCache(): ChunkCache & { map: Map<string, Buffer> } {
  const map = new Map<string, Buffer>();
  return { map, get: (k) => map.get(k), has: (k) => map.has(k), set: (k, v) => (map.set(k, v), []) };
}

/** A store holding one restore point of a 64K-chunk image: random, zeros, text, random tail. */
async function fixture(t: Test) {
  const dir = await tempDir(t);
  const image = join(dir, 'disk.img');
  const size = await writeImage(image, [
    { kind: 'random', bytes: 10 * CHUNK, seed: 5 },
    { kind: 'zero', bytes: 6 * CHUNK },
    { kind: 'text', bytes: 8 * CHUNK },
    { kind: 'random', bytes: 3 * CHUNK + 777, seed: 6 },
  ]);
  const storeDir = join(dir, 'store');
  await cliJson(['init', '--store', storeDir, '--chunk-size', '64K']);
  const { id } = await cliJson<{ id: string }>(['backup', '--store', storeDir, image]);
  const store = await Store.open(storeDir);
  const point = (await store.catalog.list()).points[0];
  const pool = new WorkerPool(store.backend.spec, 2);
  t.teardown(() => pool.close());
  let decodes = 0;
  const decode = pool.decode.bind(pool);
  pool.decode = (task) => (decodes++, decode(task));
  const cache = mapCache();
  const fetcher = new ChunkFetcher(pool, cache);
  return { dir, image, size, storeDir, store, point, id, pool, cache, fetcher, source: await fs.readFile(image), decodes: () => decodes };
}

async function readRange(reader: DiskReader, offset: number, length: number): Promise<Buffer> {
  const into = Buffer.alloc(length, 0xaa);
  const n = await reader.read(into, length, offset);
  return into.subarray(0, n);
}

t.test('any offset and length reads the source bytes, zeros included, clipped at the end', async (t) => {
  const f = await fixture(t);
  const reader = await DiskReader.open(f.store, f.point, 'disk', f.fetcher);
  t.equal(reader.size, f.size);
  const ranges: [number, number][] = [
    [0, 1],
    [CHUNK - 3, 7],
    [5 * CHUNK + 11, 9 * CHUNK],
    [11 * CHUNK, 128 * 1024],
    [f.size - 5, 4096],
    [0, f.size],
  ];
  for (const [offset, length] of ranges) {
    t.same(await readRange(reader, offset, length), f.source.subarray(offset, offset + length), `${length} bytes at ${offset}`);
  }
  t.equal((await readRange(reader, f.size, 10)).byteLength, 0, 'at the end: nothing');
  t.equal((await readRange(reader, f.size + 99, 10)).byteLength, 0, 'past the end: nothing');

  const random = seededBytes(9, 200 * 4);
  const reads = Array.from({ length: 200 }, (_, i) => {
    const offset = random.readUInt32LE(i * 4) % f.size;
    return readRange(reader, offset, 4096).then((got) => got.equals(f.source.subarray(offset, offset + 4096)));
  });
  t.notOk((await Promise.all(reads)).includes(false), '200 concurrent 4 KiB reads at random offsets');
});

t.test('zero chunks cost no decode; a chunk is decoded once however many want it', async (t) => {
  const f = await fixture(t);
  const reader = await DiskReader.open(f.store, f.point, 'disk', f.fetcher);
  t.same(await readRange(reader, 10 * CHUNK, 6 * CHUNK), Buffer.alloc(6 * CHUNK));
  t.equal(f.decodes(), 0, 'zero slots are never read');

  await Promise.all([readRange(reader, 0, 100), readRange(reader, 200, 100), readRange(reader, CHUNK - 10, 10)]);
  t.equal(f.decodes(), 1, 'three concurrent reads of one chunk: one decode');
  t.equal(f.cache.map.size, 1);

  reader.prefetch(16, 8);
  const before = f.decodes();
  t.equal(before, 2, 'read-ahead of 8 chunks (512 KiB) is one pool task');
  t.same(await readRange(reader, 16 * CHUNK, 8 * CHUNK), f.source.subarray(16 * CHUNK, 24 * CHUNK));
  t.equal(f.decodes(), before, 'what was read ahead is not decoded again');
});

t.test('read-ahead of scattered slots is one pool task, and what it read ahead is not decoded again', async (t) => {
  const f = await fixture(t);
  const reader = await DiskReader.open(f.store, f.point, 'disk', f.fetcher);
  // As a qcow2 view of a sparse disk asks: one range per chunk, zero slots between them.
  const ranges = [0, 2, 4, 9, 16, 19, 26].map((first) => ({ first, count: 1 }));
  reader.prefetchRanges([...ranges, { first: 10, count: 6 }]);
  t.equal(f.decodes(), 1, 'seven chunks in seven ranges, and six zero slots: one task');
  for (const { first } of ranges) t.same(await readRange(reader, first * CHUNK, CHUNK), f.source.subarray(first * CHUNK, (first + 1) * CHUNK), `slot ${first}`);
  t.equal(f.decodes(), 1, 'every read was served from the read-ahead');
});

t.test('buffers the cache lets go of are decoded into again, and what readers got stays intact', async (t) => {
  const f = await fixture(t);
  const pool = new WorkerPool(f.store.backend.spec, 2);
  t.teardown(() => pool.close());
  let recycled = 0;
  const decode = pool.decode.bind(pool);
  pool.decode = (task) => ((recycled += task.outs.filter((out) => out !== null).length), decode(task));
  const reader = await DiskReader.open(f.store, f.point, 'disk', new ChunkFetcher(pool, new LruChunkCache(2 * CHUNK), CHUNK));
  for (let pass = 0; pass < 2; pass++) {
    const reads = [];
    for (let offset = 0; offset < f.size; offset += 20_000) reads.push(readRange(reader, offset, 20_000));
    for (let at = 0; at < f.size; at += 7 * CHUNK) reader.prefetch(at / CHUNK, 3);
    t.same(Buffer.concat(await Promise.all(reads)), f.source, `pass ${pass}: concurrent reads and read-ahead through a two-chunk cache`);
  }
  t.ok(recycled > 10, `decodes wrote into ${recycled} recycled buffers`);
});

t.test('a damaged chunk fails only the reads that touch it, every time', async (t) => {
  const f = await fixture(t);
  await corruptChunk(f.storeDir, f.id, 'disk', 3);
  const reader = await DiskReader.open(f.store, f.point, 'disk', f.fetcher);
  for (let attempt = 0; attempt < 2; attempt++) {
    await t.rejects(readRange(reader, 2 * CHUNK, 2 * CHUNK), DamagedDataError);
    try {
      await readRange(reader, 3 * CHUNK + 100, 10);
      t.fail('a read inside the damaged chunk must fail');
    } catch (err) {
      t.ok(err instanceof DamagedDataError);
      t.match((err as DamagedDataError).data, { restorePoint: f.id, disk: 'disk', offset: 3 * CHUNK, problem: 'hash' });
      t.match((err as Error).message, `restore point ${f.id} disk disk at offset ${3 * CHUNK}: hash`);
    }
  }
  t.same(await readRange(reader, 0, 3 * CHUNK), f.source.subarray(0, 3 * CHUNK), 'the chunk before it reads');
  t.same(await readRange(reader, 4 * CHUNK, CHUNK), f.source.subarray(4 * CHUNK, 5 * CHUNK), 'the chunk after it reads');
});

t.test('the index is held only while opening, and a busy index is waited for, then named', async (t) => {
  const f = await fixture(t);
  const held = await f.store.openIndex();
  await t.rejects(DiskReader.open(f.store, f.point, 'disk', f.fetcher, 200), StoreBusyError);
  const opening = DiskReader.open(f.store, f.point, 'disk', f.fetcher, 10_000);
  await new Promise((r) => setTimeout(r, 300));
  await held.close();
  const reader = await opening;
  const again = await f.store.openIndex();
  t.pass('the index is free again once the reader is open');
  await again.close();
  t.same(await readRange(reader, 0, MiB), f.source.subarray(0, MiB));

  const missing = await f.store.openIndex();
  const map = await f.store.readMap(f.id, 'disk');
  await missing.deleteMany([Buffer.from(map.subarray(0, 32))]);
  await missing.close();
  const partial = await DiskReader.open(f.store, f.point, 'disk', f.fetcher);
  const missed = await readRange(partial, 0, 10).catch((err: unknown) => err);
  t.ok(missed instanceof DamagedDataError);
  t.match(missed, { data: { restorePoint: f.id, disk: 'disk', offset: 0, problem: 'chunk missing from the index' } });
  t.same(await readRange(partial, CHUNK, 10), f.source.subarray(CHUNK, CHUNK + 10), 'other chunks still read');
});

t.test('a chunk map cut short or extended is damage to the reader, never a disk that ends in zeros', async (t) => {
  const f = await fixture(t);
  const path = join(f.storeDir, 'maps', f.id, `${f.point.disks[0].label}.map`);
  const whole = await fs.readFile(path);
  for (const [what, map, problem] of [
    ['truncated', whole.subarray(0, whole.byteLength / 2), /chunk map truncated \(448 bytes, 896 expected\)/],
    ['too long', Buffer.concat([whole, Buffer.alloc(32)]), /chunk map too long \(928 bytes, 896 expected\)/],
  ] as const) {
    await fs.writeFile(path, map);
    await t.rejects(DiskReader.open(f.store, f.point, f.point.disks[0].label, f.fetcher), { constructor: DamagedDataError, message: problem }, `${what}: the image cannot be opened`);
  }
});
