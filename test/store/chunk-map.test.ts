/** Chunk maps: written in any order, in runs, durable and visible only after commit. */
import t from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { ChunkMapWriter, readChunkMap, slotCount } from '../../store/chunk-map.js';
import { FsBackend } from '../../store/backend/fs.js';
import { ID_BYTES } from '../../store/chunk-id.js';
import { seededBytes, tempDir } from '../helpers/index.js';

t.test('chunk maps: positional writes, zero-filled gaps, visible only after commit', async (t) => {
  const dir = await tempDir(t);
  t.equal(slotCount(65537, 65536), 2);
  t.equal(slotCount(0, 65536), 0);
  const writer = await ChunkMapWriter.create(new FsBackend(dir), 'p/disk.map', 3);
  writer.write(2, Buffer.alloc(32, 7));
  await t.rejects(fs.access(join(dir, 'p', 'disk.map')), 'not visible before commit');
  await writer.commit();
  const map = await readChunkMap(new FsBackend(dir), 'p/disk.map');
  t.equal(map.length, 96);
  t.ok(map.subarray(0, 64).every((b) => b === 0));
  t.ok(map.subarray(64).every((b) => b === 7));
});

t.test('runs of any length, in and out of order, each slot where it belongs; ids are copied', async (t) => {
  const dir = await tempDir(t);
  const slots = 100_000; // 3.2 MB of ids: several 1 MiB runs
  const expected = seededBytes(3, slots * ID_BYTES);
  const writer = await ChunkMapWriter.create(new FsBackend(dir), 'p/disk.map', slots);
  const piece = (first: number, count: number): void => {
    const ids = Buffer.from(expected.subarray(first * ID_BYTES, (first + count) * ID_BYTES));
    writer.write(first, ids);
    ids.fill(0xee); // the writer kept its own copy
  };
  piece(50_000, 50_000); // one write longer than a run
  for (let first = 0; first < 40_000; first += 7) piece(first, Math.min(7, 40_000 - first)); // consecutive small writes
  piece(45_000, 5_000); // out of order
  for (const slot of [40_020, 40_010, 40_011]) piece(slot, 1); // scattered slots, then the run around them
  piece(40_000, 5_000);
  await writer.commit();
  t.ok((await readChunkMap(new FsBackend(dir), 'p/disk.map')).equals(expected));
});
