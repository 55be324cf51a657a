/** Damage on purpose: flip a byte inside the stored payload of the chunk at a disk slot. */
import { promises as fs } from 'node:fs';
import { Store, type StoreOptions } from '../../store/store.js';
import { ID_BYTES } from '../../store/chunk-id.js';
import { RECORD_HEADER_BYTES, packKey, type ChunkLocation } from '../../store/pack.js';
import type { FsBackend } from '../../store/backend/fs.js';

/** The file that holds a pack of a directory store, for tests that damage or age it on purpose. */
export function packFile(store: Store, pack: string): string {
  return (store.backend as FsBackend).pathOf(packKey(pack));
}

/** Where the chunk of a slot is stored; opens the index briefly (`open`: an encrypted store's passphrase). */
export async function chunkLocation(storeDir: string, pointId: string, label: string, slot: number, open: StoreOptions = {}): Promise<ChunkLocation> {
  const store = await Store.open(storeDir, open);
  const map = await store.readMap(pointId, label);
  const index = await store.openIndex();
  try {
    const [location] = await index.getMany([Buffer.from(map.subarray(slot * ID_BYTES, (slot + 1) * ID_BYTES))]);
    if (!location) throw new Error(`slot ${slot} of ${pointId}/${label} has no stored chunk`);
    return location;
  } finally {
    await index.close();
  }
}

export async function corruptChunk(storeDir: string, pointId: string, label: string, slot: number, open: StoreOptions = {}): Promise<ChunkLocation> {
  const location = await chunkLocation(storeDir, pointId, label, slot, open);
  const store = await Store.open(storeDir, open);
  const handle = await fs.open(packFile(store, location.pack), 'r+');
  try {
    const at = location.offset + RECORD_HEADER_BYTES + Math.floor(location.storedLength / 2);
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, at);
    byte[0] ^= 0xff;
    await handle.write(byte, 0, 1, at);
  } finally {
    await handle.close();
  }
  return location;
}
