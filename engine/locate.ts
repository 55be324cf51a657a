/** From chunk maps to pack locations, holding the index only for the lookup itself. */
import type { Store } from '../store/store.js';
import type { ChunkLocation } from '../store/pack.js';
import type { RestorePoint } from '../store/catalog.js';
import { ID_BYTES, ZERO_ID } from '../store/chunk-id.js';
import type { ChunkRef } from './tasks.js';
import { DamagedDataError, errnoOf } from './errors.js';
import { slotCount } from '../store/chunk-map.js';

const LOOKUP_BATCH = 4096;

/** Unique non-zero ids of a map, keyed by hex. */
export function uniqueIds(map: Buffer, into = new Map<string, Buffer>()): Map<string, Buffer> {
  for (let at = 0; at < map.byteLength; at += ID_BYTES) {
    const id = map.subarray(at, at + ID_BYTES);
    if (id.equals(ZERO_ID)) continue;
    const hex = id.toString('hex');
    if (!into.has(hex)) into.set(hex, Buffer.from(id));
  }
  return into;
}

/** Locations of the given ids; ids the index does not know are absent from the result. */
export async function locateChunks(store: Store, ids: Map<string, Buffer>, waitMs = 10_000): Promise<Map<string, ChunkLocation>> {
  const index = await store.openIndex(waitMs);
  const found = new Map<string, ChunkLocation>();
  try {
    const entries = Array.from(ids.entries());
    for (let i = 0; i < entries.length; i += LOOKUP_BATCH) {
      const batch = entries.slice(i, i + LOOKUP_BATCH);
      const locations = await index.getMany(batch.map(([, id]) => id));
      batch.forEach(([hex], k) => locations[k] && found.set(hex, locations[k]!));
    }
  } finally {
    await index.close();
  }
  return found;
}

export function chunkRef(id: Buffer, location: ChunkLocation): ChunkRef {
  return { pack: location.pack, offset: location.offset, storedLength: location.storedLength, rawLength: location.rawLength, id };
}

/** What is wrong with a map that cannot be used: its length, or why it could not be read. */
function mapProblem(err: unknown): string {
  if (err instanceof DamagedDataError && typeof err.data.problem === 'string') return err.data.problem;
  return `chunk map unreadable (${errnoOf(err) ?? String(err)})`;
}

/** A map file that cannot be read, or is not exactly one id per slot, damages the whole disk. */
export async function readMapOrDamage(store: Store, point: RestorePoint, label: string): Promise<Buffer> {
  const disk = point.disks.find((d) => d.label === label);
  try {
    if (!disk) throw new Error(`no disk '${label}' in the catalog entry`);
    return await store.readMap(point.id, label, slotCount(disk.size, point.chunkSize));
  } catch (err) {
    const problem = mapProblem(err);
    throw new DamagedDataError(`restore point ${point.id} disk ${label}: ${problem}`, { restorePoint: point.id, disk: label, offset: 0, problem }, err);
  }
}
