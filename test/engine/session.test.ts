/**
 * A session's disk without FUSE: a real store and restore point, the session's real files.
 * Overlapping first writes of one block keep each other's bytes; a bitmap on disk never
 * claims a write that was not synced; a 4 KiB and a 2 TB disk's bitmaps are what they cost.
 */
import t, { type Test } from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { Store } from '../../store/store.js';
import { WorkerPool } from '../../engine/pool.js';
import { ChunkFetcher } from '../../engine/reader.js';
import { createSession, openSession, planSession, type OpenSession } from '../../engine/session/session.js';
import { BlockBitmap } from '../../engine/session/bitmap.js';
import { LruChunkCache } from '../../fuse/chunk-cache.js';
import { MiB, cliJson, mixedImage, seededBytes, tempDir } from '../helpers/index.js';

async function fixture(t: Test): Promise<{ image: Buffer; reopen: () => Promise<OpenSession> }> {
  const dir = await tempDir(t);
  process.env.CHUNKVAULT_SESSIONS = join(dir, 'registry');
  t.teardown(() => delete process.env.CHUNKVAULT_SESSIONS);
  const imagePath = join(dir, 'disk.img');
  await mixedImage(imagePath);
  const storeDir = join(dir, 'store');
  await cliJson(['init', '--store', storeDir]);
  const { id } = await cliJson<{ id: string }>(['backup', '--store', storeDir, imagePath]);
  const store = await Store.open(storeDir);
  const mountpoint = join(dir, 'mnt');
  await fs.mkdir(mountpoint);
  const record = await createSession(store, await planSession(store, { ref: id, mountpoint }));
  const pool = new WorkerPool(store.backend.spec, 1);
  t.teardown(() => pool.close());
  const reopen = async (): Promise<OpenSession> => {
    const session = await openSession(store, record, new ChunkFetcher(pool, new LruChunkCache(8 * MiB)), 1000);
    t.teardown(() => session.close().catch(() => undefined));
    return session;
  };
  return { image: await fs.readFile(imagePath), reopen };
}

async function readAll(session: OpenSession): Promise<Buffer> {
  const out = Buffer.alloc(session.disk.size);
  await session.disk.read(out, out.length, 0);
  return out;
}

t.test('overlapping first writes of the same blocks, issued at once, all land (read-modify-write takes turns)', async (t) => {
  const { image, reopen } = await fixture(t);
  const session = await reopen();
  const expected = Buffer.from(image);
  const writes = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => ({ offset: 2 * MiB + 1000 + i * 9_000, data: seededBytes(50 + i, 20_000) }));
  await Promise.all(writes.map((w) => session.disk.write(w.data, w.data.length, w.offset)));
  for (const w of writes) w.data.copy(expected, w.offset);
  t.same(await readAll(session), expected, 'every write is there, in the order issued');
  await session.disk.sync();
  await session.close();
  t.same(await readAll(await reopen()), expected, 'and after the session is opened again');
});

t.test('a write that was not synced is not claimed by the bitmap on disk', async (t) => {
  const { image, reopen } = await fixture(t);
  const session = await reopen();
  const synced = seededBytes(1, 70_000);
  await session.disk.write(synced, synced.length, 5 * MiB + 3);
  await session.disk.sync();
  const unsynced = seededBytes(2, 4096);
  await session.disk.write(unsynced, unsynced.length, 12 * MiB);
  // Closed without a sync: as after kill -9, the bitmap holds only what the last sync saved.
  await session.close();
  const expected = Buffer.from(image);
  synced.copy(expected, 5 * MiB + 3);
  t.same(await readAll(await reopen()), expected, 'the synced write is there; the other block reads from the restore point');
});

t.test('bitmaps: a block of 64 KiB, pages saved only when changed', async (t) => {
  const twoTB = 2 * 1024 ** 4;
  t.equal(BlockBitmap.bytesFor(twoTB / (64 * 1024)), 4 * MiB, 'a 2 TB disk: 4 MiB of bitmap');
  const bits = new BlockBitmap(100_000);
  bits.setRange(10, 20);
  bits.setRange(15, 40_000);
  t.equal(bits.count, 39_991);
  t.same(bits.takeChanged().map((p) => p.page), [0, 1], 'the two 4 KiB pages touched');
  t.same(bits.takeChanged(), [], 'nothing changed since');
  bits.setRange(39_990, 40_001);
  t.same(bits.takeChanged().map((p) => p.page), [1]);
  t.ok(bits.hasAll(10, 40_001));
  t.notOk(bits.has(9));
});
