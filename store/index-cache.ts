/**
 * A host's chunk index is a cache of the store's index segments (index-segment.ts). Before a
 * command trusts it, the cache catches up: segments it has not applied are applied in id order
 * (later segments win: gc's segment of moved records overrides the backup's that wrote them).
 * gc consolidates: it writes one segment of every live entry and deletes the segments it read.
 * A cache that applied a segment which is gone may hold entries of chunks gc deleted since, so
 * it is rebuilt from the segments there are, in one atomic batch.
 */
import type { Backend } from './backend/backend.js';
import { storeReadError } from './errors.js';
import type { ChunkIndex } from './index-db.js';
import { SEGMENTS_PREFIX, decodeSegment, encodeSegment, newSegmentId, segmentIdOf, segmentKey, type SegmentEntry } from './index-segment.js';

export interface IndexSync {
  /** Segments applied now. */
  applied: number;
  /** Whether the cache was rebuilt because a segment it had applied is gone. */
  rebuilt: boolean;
}

/** Segment ids in the store, oldest first; a listing that fails stops the caller. */
export async function listSegments(backend: Backend): Promise<string[]> {
  const objects = await backend.list(SEGMENTS_PREFIX).catch((err: unknown) => {
    throw storeReadError(`${backend.location} ${SEGMENTS_PREFIX}`, err);
  });
  return objects.map((o) => segmentIdOf(o.key)).filter((id): id is string => id !== null);
}

/** A segment's entries; absent (deleted by a gc since it was listed) is an error too: the caller lists again. */
export async function readSegment(backend: Backend, id: string): Promise<SegmentEntry[]> {
  const key = segmentKey(id);
  const bytes = await backend.get(key).catch((err: unknown) => {
    throw storeReadError(key, err);
  });
  if (bytes === null) throw storeReadError(key, Object.assign(new Error('removed while the index was brought up to date'), { code: 'ENOENT' }));
  return decodeSegment(bytes, key);
}

/** Writes the immutable segment of `entries`; returns its id, to be marked applied with them. */
export async function writeSegment(backend: Backend, entries: readonly SegmentEntry[]): Promise<string> {
  for (;;) {
    const id = newSegmentId();
    if (await backend.create(segmentKey(id), encodeSegment(entries))) return id;
  }
}

export async function deleteSegments(backend: Backend, ids: readonly string[]): Promise<void> {
  await backend.delete(ids.map(segmentKey));
}

/** Brings the cache up to date with the store's segments (see the module comment). */
export async function syncIndex(index: ChunkIndex, backend: Backend): Promise<IndexSync> {
  const segments = await listSegments(backend);
  const applied = await index.appliedSegments();
  const present = new Set(segments);
  if ([...applied].some((id) => !present.has(id))) {
    const entries: SegmentEntry[] = [];
    for (const id of segments) for (const entry of await readSegment(backend, id)) entries.push(entry);
    await index.rebuild(entries, segments);
    return { applied: segments.length, rebuilt: true };
  }
  const missing = segments.filter((id) => !applied.has(id));
  for (const id of missing) await index.putMany(await readSegment(backend, id), id);
  return { applied: missing.length, rebuilt: false };
}
