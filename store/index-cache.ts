/**
 * A host's chunk index is a cache of the store's index segments (index-segment.ts). Before a
 * command trusts it, the cache catches up with the segments it has not seen, in id order
 * (later segments win: gc's segment of moved records overrides the backup's that wrote them).
 *
 * gc consolidates: it writes one segment of every live entry that supersedes the segments it
 * had seen, then deletes those. A superseded segment is never applied again (its dead entries
 * would come back); a cache that applied one, or whose applied segment is gone without a
 * successor it knows, may hold entries of chunks gc has deleted since: it is rebuilt from the
 * live segments, in one atomic batch.
 *
 * In an encrypted store (`sealer` given) a segment is sealed whole, bound to its id.
 */
import type { Backend } from './backend/backend.js';
import { SealBrokenError, storeReadError } from './errors.js';
import type { Sealer } from './crypto.js';
import type { ChunkIndex } from './index-db.js';
import type { SegmentMark } from './index-keys.js';
import { SEGMENTS_PREFIX, damagedSegment, decodeSegment, encodeSegment, newSegmentId, segmentIdOf, segmentKey, type Segment, type SegmentEntry } from './index-segment.js';

export interface IndexSync {
  /** Segments applied now. */
  applied: number;
  /** Whether the cache was rebuilt from every live segment. */
  rebuilt: boolean;
}

/** Segment ids in the store, oldest first; a listing that fails stops the caller. */
export async function listSegments(backend: Backend): Promise<string[]> {
  const objects = await backend.list(SEGMENTS_PREFIX).catch((err: unknown) => {
    throw storeReadError(`${backend.location} ${SEGMENTS_PREFIX}`, err);
  });
  return objects.map((o) => segmentIdOf(o.key)).filter((id): id is string => id !== null);
}

/** A listed segment; absent now (a gc deleted it meanwhile) is an error too: the command is run again. */
export async function readSegment(backend: Backend, id: string, sealer: Sealer | null = null): Promise<Segment> {
  const key = segmentKey(id);
  const bytes = await backend.get(key).catch((err: unknown) => {
    throw storeReadError(key, err);
  });
  if (bytes === null) throw storeReadError(key, Object.assign(new Error('removed while the index was brought up to date'), { code: 'ENOENT' }));
  return decodeSegment(sealer ? openSegment(sealer, bytes, id, key) : bytes, key);
}

function segmentAd(id: string): Buffer {
  return Buffer.from(`chunkvault segment ${id}`);
}

function openSegment(sealer: Sealer, sealed: Buffer, id: string, key: string): Buffer {
  try {
    return sealer.open(sealed, segmentAd(id));
  } catch (err) {
    if (!(err instanceof SealBrokenError)) throw err;
    throw damagedSegment(key, 'sealed segment does not open');
  }
}

/** Writes an immutable segment; returns its id, to be marked applied with its entries. */
export async function writeSegment(backend: Backend, segment: Segment, sealer: Sealer | null = null): Promise<string> {
  for (;;) {
    const id = newSegmentId();
    const plain = encodeSegment(segment);
    if (await backend.create(segmentKey(id), sealer ? sealer.seal(plain, segmentAd(id)) : plain)) return id;
  }
}

/** Brings the cache up to date with the store's segments (see the module comment). */
export async function syncIndex(index: ChunkIndex, backend: Backend, sealer: Sealer | null = null): Promise<IndexSync> {
  const listed = await listSegments(backend);
  const marks = await index.segmentMarks();
  const unseen = new Map<string, Segment>();
  for (const id of listed.filter((id) => !marks.has(id))) unseen.set(id, await readSegment(backend, id, sealer));
  const superseded = new Set([...unseen.values()].flatMap((s) => s.supersedes));
  const present = new Set(listed);
  const stale = [...marks].some(([id, mark]) => mark === 'applied' && (superseded.has(id) || !present.has(id)));
  if (stale) return rebuildIndex(index, backend, listed, unseen, sealer);
  let applied = 0;
  for (const [id, segment] of unseen) {
    if (superseded.has(id)) continue;
    await index.putMany(segment.entries, id);
    applied++;
  }
  const gone = [...marks.keys()].filter((id) => !present.has(id));
  await index.markSegments([...unseen.keys()].filter((id) => superseded.has(id)).map((id) => [id, 'superseded']), gone);
  return { applied, rebuilt: false };
}

/** The cache from scratch: every entry of every live segment, in id order, and marks for all listed. */
async function rebuildIndex(index: ChunkIndex, backend: Backend, listed: string[], read: Map<string, Segment>, sealer: Sealer | null): Promise<IndexSync> {
  for (const id of listed) if (!read.has(id)) read.set(id, await readSegment(backend, id, sealer));
  const superseded = new Set([...read.values()].flatMap((s) => s.supersedes));
  const live = listed.filter((id) => !superseded.has(id));
  const entries: SegmentEntry[] = [];
  for (const id of live) for (const entry of read.get(id)!.entries) entries.push(entry);
  const marks: [string, SegmentMark][] = listed.map((id) => [id, superseded.has(id) ? 'superseded' : 'applied']);
  await index.rebuild(entries, marks);
  return { applied: live.length, rebuilt: true };
}

/**
 * gc's and repair's last step: the index now holds exactly what is live, so one segment of all
 * of it supersedes every segment this cache has seen (or `supersede`: repair, whose scan of
 * the packs is the truth, supersedes all there are), which are then deleted. Segments other
 * hosts wrote since this cache last caught up are neither superseded nor deleted by gc.
 */
export async function consolidateSegments(index: ChunkIndex, backend: Backend, sealer: Sealer | null, supersede?: string[]): Promise<string> {
  const marks = await index.segmentMarks();
  const seen = supersede ?? [...marks.keys()];
  const entries: SegmentEntry[] = [];
  for await (const entry of index.entries()) entries.push(entry);
  const id = await writeSegment(backend, { entries, supersedes: seen }, sealer);
  await index.markSegments([[id, 'applied'], ...seen.map((s): [string, SegmentMark] => [s, 'superseded'])]);
  await backend.delete(seen.map(segmentKey));
  await index.markSegments([], [...new Set([...seen, ...marks.keys()])]);
  return id;
}
