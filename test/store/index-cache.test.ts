import t from 'tap';
import { promises as fs } from 'node:fs';
import { FsBackend } from '../../store/backend/fs.js';
import { ChunkIndex } from '../../store/index-db.js';
import { Codec, type ChunkLocation } from '../../store/pack.js';
import { chunkId, loadHasher } from '../../store/chunk-id.js';
import { decodeSegment, encodeSegment, segmentIdOf, segmentKey, newSegmentId, type SegmentEntry } from '../../store/index-segment.js';
import { deleteSegments, listSegments, syncIndex, writeSegment } from '../../store/index-cache.js';
import { tempDir } from '../helpers/index.js';

await loadHasher();

const at = (pack: string, offset: number): ChunkLocation => ({ pack, offset, storedLength: 100 + offset, rawLength: 65536, codec: Codec.Lz4, settled: offset % 2 === 1 });
const idOf = (n: number): Buffer => chunkId(Buffer.from([n]));
const openIndex = (dir: string): Promise<ChunkIndex> => ChunkIndex.open(dir, { describeHolder: async () => 'test' });

async function contents(index: ChunkIndex): Promise<Record<string, ChunkLocation>> {
  const all: Record<string, ChunkLocation> = {};
  for await (const [id, location] of index.entries()) all[id.toString('hex')] = location;
  return all;
}

t.test('a segment round trips; any flipped byte or wrong length is damage naming it', async (t) => {
  const entries: SegmentEntry[] = [1, 2, 3].map((n) => [idOf(n), at('00000000000000a' + n, n * 4096)]);
  const bytes = encodeSegment(entries);
  t.same(decodeSegment(bytes, 'segments/x.seg'), entries);
  t.same(decodeSegment(encodeSegment([]), 'k'), []);
  for (const offset of [0, 5, 20, bytes.byteLength - 1]) {
    const bad = Buffer.from(bytes);
    bad[offset] ^= 0x10;
    t.throws(() => decodeSegment(bad, 'segments/x.seg'), { code: 'CV_DAMAGED', message: /index segment segments\/x\.seg is damaged/ }, `byte ${offset}`);
  }
  t.throws(() => decodeSegment(bytes.subarray(0, bytes.byteLength - 1), 'k'), { code: 'CV_DAMAGED' });
  const id = newSegmentId();
  t.equal(segmentIdOf(segmentKey(id)), id);
  t.equal(segmentIdOf('segments/.x.seg.1234.tmp'), null);
});

t.test('a new cache catches up with every segment; later segments win; a gone segment rebuilds it whole', async (t) => {
  const dir = await tempDir(t);
  const backend = new FsBackend(`${dir}/store`);
  const first = await writeSegment(backend, [[idOf(1), at('aaaaaaaaaaaaaaaa', 0)], [idOf(2), at('aaaaaaaaaaaaaaaa', 200)]]);
  const moved = await writeSegment(backend, [[idOf(2), at('bbbbbbbbbbbbbbbb', 0)], [idOf(3), at('bbbbbbbbbbbbbbbb', 300)]]);
  t.same(await listSegments(backend), [first, moved].sort());

  const index = await openIndex(`${dir}/cache`);
  t.same(await syncIndex(index, backend), { applied: 2, rebuilt: false });
  t.same(await contents(index), {
    [idOf(1).toString('hex')]: at('aaaaaaaaaaaaaaaa', 0),
    [idOf(2).toString('hex')]: at('bbbbbbbbbbbbbbbb', 0),
    [idOf(3).toString('hex')]: at('bbbbbbbbbbbbbbbb', 300),
  });
  t.same(await syncIndex(index, backend), { applied: 0, rebuilt: false }, 'nothing new: nothing read');

  // gc consolidates: one segment of what is live (chunk 1 died), the ones it read deleted.
  const consolidated = await writeSegment(backend, [[idOf(2), at('bbbbbbbbbbbbbbbb', 0)], [idOf(3), at('bbbbbbbbbbbbbbbb', 300)]]);
  await deleteSegments(backend, [first, moved]);
  t.same(await syncIndex(index, backend), { applied: 1, rebuilt: true });
  t.same(Object.keys(await contents(index)).sort(), [idOf(2), idOf(3)].map((id) => id.toString('hex')).sort(), 'the dead chunk is gone from the cache');
  t.same([...(await index.appliedSegments())], [consolidated]);
  await index.close();
});

t.test('a damaged segment stops the sync and changes nothing in the cache', async (t) => {
  const dir = await tempDir(t);
  const backend = new FsBackend(`${dir}/store`);
  const good = await writeSegment(backend, [[idOf(1), at('aaaaaaaaaaaaaaaa', 0)]]);
  const bad = await writeSegment(backend, [[idOf(2), at('aaaaaaaaaaaaaaaa', 200)]]);
  const path = backend.pathOf(segmentKey(bad));
  const bytes = await fs.readFile(path);
  bytes[10] ^= 1;
  await fs.writeFile(path, bytes);
  const index = await openIndex(`${dir}/cache`);
  await t.rejects(syncIndex(index, backend), { code: 'CV_DAMAGED', message: new RegExp(bad) });
  t.same([...(await index.appliedSegments())], [good], 'segments before the damaged one are applied, each whole');
  await index.close();
});
