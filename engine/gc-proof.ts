/**
 * Before gc deletes or rewrites a pack it proves, from the pack's own records, that the index
 * accounts for every live chunk in it. The index says which packs hold live chunks, but an
 * index that was lost, rolled back to an older copy, or half rebuilt does not know some of
 * them, and would make those packs look dead. So every record of such a pack whose id a
 * restore point uses must be indexed in a pack that exists, or gc stops and deletes nothing.
 */
import type { Store } from '../store/store.js';
import type { ChunkIndex } from '../store/index-db.js';
import { recordIds } from '../store/pack.js';
import { IndexIncompleteError } from './errors.js';
import type { LiveSet } from './live-set.js';

const LOOKUP_BATCH = 4096;

/** Live ids of a pack's records, once each (a pack may hold a chunk twice). */
async function liveIdsIn(store: Store, pack: string, live: LiveSet): Promise<Buffer[]> {
  const ids = new Map<string, Buffer>();
  for (const id of await recordIds(store.backend, pack)) if (live.has(id)) ids.set(id.toString('hex'), id);
  return [...ids.values()];
}

/** Throws IndexIncompleteError unless every live chunk held by `packs` is indexed in a pack of `existing`. */
export async function proveIndexed(store: Store, index: ChunkIndex, live: LiveSet, packs: string[], existing: Set<string>): Promise<void> {
  for (const pack of packs) {
    const ids = await liveIdsIn(store, pack, live);
    for (let i = 0; i < ids.length; i += LOOKUP_BATCH) {
      const batch = ids.slice(i, i + LOOKUP_BATCH);
      const locations = await index.getMany(batch);
      const lost = batch.findIndex((_, k) => !locations[k] || !existing.has(locations[k]!.pack));
      if (lost < 0) continue;
      const where = locations[lost] ? `points to pack ${locations[lost]!.pack}, which is gone` : 'does not know it';
      throw new IndexIncompleteError(
        `the chunk index is incomplete: pack ${pack} holds chunk ${batch[lost].toString('hex')}, which restore points use, and the index ${where}; gc deleted nothing; run 'chunkvault repair' to rebuild the index from the packs, then gc again`,
        { pack, chunk: batch[lost].toString('hex') },
      );
    }
  }
}
