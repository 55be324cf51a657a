import t from 'tap';
import { promises as fs } from 'node:fs';
import { FsBackend } from '../../store/backend/fs.js';
import { ChunkIndex } from '../../store/index-db.js';
import { Codec, type ChunkLocation } from '../../store/pack.js';
import { chunkId, loadHasher } from '../../store/chunk-id.js';
import { decodeSegment, encodeSegment, segmentIdOf, segmentKey, newSegmentId, type SegmentEntry } from '../../store/index-segment.js';
import { consolidateSegments, listSegments, syncIndex, writeSegment } from '../../store/index-cache.js';
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

const hex = (ids: Buffer[]): string[] => ids.map((id) => id.toString('hex')).sort();

t.test('a segment round trips; any flipped byte or wrong length is damage naming it', async (t) => {
  const entries: SegmentEntry[] = [1, 2, 3].map((n) => [idOf(n), at('00000000000000a' + n, n * 4096)]);
  const segment = { entries, supersedes: [newSegmentId(), newSegmentId()] };
  const bytes = encodeSegment(segment);
  t.same(decodeSegment(bytes, 'segments/x.seg'), segment);
  t.same(decodeSegment(encodeSegment({ entries: [], supersedes: [] }), 'k'), { entries: [], supersedes: [] });
  for (const offset of [0, 5, 9, 20, 80, bytes.byteLength - 1]) {
    const bad = Buffer.from(bytes);
    bad[offset] ^= 0x10;
    t.throws(() => decodeSegment(bad, 'segments/x.seg'), { code: 'CV_DAMAGED', message: /index segment segments\/x\.seg is damaged/ }, `byte ${offset}`);
  }
  t.throws(() => decodeSegment(bytes.subarray(0, bytes.byteLength - 1), 'k'), { code: 'CV_DAMAGED' });
  const id = newSegmentId();
  t.equal(segmentIdOf(segmentKey(id)), id);
  t.equal(segmentIdOf('segments/.x.seg.1234.tmp'), null);
});

t.test('a new cache catches up with every segment, later segments winning; nothing new reads nothing', async (t) => {
  const dir = await tempDir(t);
  const backend = new FsBackend(`${dir}/store`);
  const first = await writeSegment(backend, { entries: [[idOf(1), at('aaaaaaaaaaaaaaaa', 0)], [idOf(2), at('aaaaaaaaaaaaaaaa', 200)]], supersedes: [] });
  const moved = await writeSegment(backend, { entries: [[idOf(2), at('bbbbbbbbbbbbbbbb', 0)], [idOf(3), at('bbbbbbbbbbbbbbbb', 300)]], supersedes: [] });
  t.same(await listSegments(backend), [first, moved].sort());
  const index = await openIndex(`${dir}/cache`);
  t.same(await syncIndex(index, backend), { applied: 2, rebuilt: false });
  t.same(await contents(index), {
    [idOf(1).toString('hex')]: at('aaaaaaaaaaaaaaaa', 0),
    [idOf(2).toString('hex')]: at('bbbbbbbbbbbbbbbb', 0),
    [idOf(3).toString('hex')]: at('bbbbbbbbbbbbbbbb', 300),
  });
  t.same(await syncIndex(index, backend), { applied: 0, rebuilt: false });
  await index.close();
});

t.test('consolidation: the host that did it changes nothing, one that applied the old segments rebuilds without the dead chunk, a new one applies one segment', async (t) => {
  const dir = await tempDir(t);
  const backend = new FsBackend(`${dir}/store`);
  await writeSegment(backend, { entries: [[idOf(1), at('aaaaaaaaaaaaaaaa', 0)]], supersedes: [] });
  await writeSegment(backend, { entries: [[idOf(2), at('aaaaaaaaaaaaaaaa', 200)]], supersedes: [] });
  const gcHost = await openIndex(`${dir}/gc-host`);
  const otherHost = await openIndex(`${dir}/other-host`);
  await syncIndex(gcHost, backend);
  await syncIndex(otherHost, backend);
  await gcHost.deleteMany([idOf(1)]); // gc found chunk 1 dead
  const consolidated = await consolidateSegments(gcHost, backend, null);
  t.same(await listSegments(backend), [consolidated], 'the superseded segments are deleted');
  t.same(await syncIndex(gcHost, backend), { applied: 0, rebuilt: false });
  t.same(await syncIndex(otherHost, backend), { applied: 1, rebuilt: true });
  t.same(Object.keys(await contents(otherHost)), hex([idOf(2)]), 'the dead chunk is gone from the other cache');
  const newHost = await openIndex(`${dir}/new-host`);
  t.same(await syncIndex(newHost, backend), { applied: 1, rebuilt: false });
  t.same(await contents(newHost), await contents(gcHost));
  for (const index of [gcHost, otherHost, newHost]) await index.close();
});

t.test('a consolidation whose superseded segments were not deleted (gc killed): they are never applied again', async (t) => {
  const dir = await tempDir(t);
  const backend = new FsBackend(`${dir}/store`);
  const old = await writeSegment(backend, { entries: [[idOf(1), at('aaaaaaaaaaaaaaaa', 0)], [idOf(2), at('aaaaaaaaaaaaaaaa', 200)]], supersedes: [] });
  const applied = await openIndex(`${dir}/applied`);
  await syncIndex(applied, backend);
  await writeSegment(backend, { entries: [[idOf(2), at('aaaaaaaaaaaaaaaa', 200)]], supersedes: [old] });
  const fresh = await openIndex(`${dir}/fresh`);
  t.same(await syncIndex(fresh, backend), { applied: 1, rebuilt: false });
  t.same(Object.keys(await contents(fresh)), hex([idOf(2)]));
  t.same(await syncIndex(fresh, backend), { applied: 0, rebuilt: false }, 'the superseded one is remembered, not read again');
  t.same(await syncIndex(applied, backend), { applied: 1, rebuilt: true });
  t.same(Object.keys(await contents(applied)), hex([idOf(2)]));
  for (const index of [applied, fresh]) await index.close();
});

t.test('a damaged segment stops the sync before the cache changes', async (t) => {
  const dir = await tempDir(t);
  const backend = new FsBackend(`${dir}/store`);
  await writeSegment(backend, { entries: [[idOf(1), at('aaaaaaaaaaaaaaaa', 0)]], supersedes: [] });
  const bad = await writeSegment(backend, { entries: [[idOf(2), at('aaaaaaaaaaaaaaaa', 200)]], supersedes: [] });
  const path = backend.pathOf(segmentKey(bad));
  const bytes = await fs.readFile(path);
  bytes[20] ^= 1;
  await fs.writeFile(path, bytes);
  const index = await openIndex(`${dir}/cache`);
  await t.rejects(syncIndex(index, backend), { code: 'CV_DAMAGED', message: new RegExp(bad) });
  t.same([...(await index.segmentMarks()).keys()], [], 'nothing is marked when a segment could not be read');
  t.same(await contents(index), {});
  await index.close();
});
