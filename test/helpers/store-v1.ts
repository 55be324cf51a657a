/**
 * The images behind test/fixtures/store-v1 (a format version 1 store, written by chunkvault
 * at 3d8807c with 64K chunks): rebuilt byte for byte here, so a restore can be compared by sha256.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { ROOT, seededBytes, writeImage } from './index.js';

export const V1_FIXTURE = join(ROOT, 'test', 'fixtures', 'store-v1');
export const V1_CHUNK = 64 * 1024;

/** What the second backup changed, as its CBT list says: one whole chunk and 4 KiB of a hole. */
export const V1_CHANGED = [
  { offset: V1_CHUNK, length: V1_CHUNK },
  { offset: 3 * V1_CHUNK, length: 4096 },
];

/**
 * base.img: 2 random chunks, a 2-chunk hole, 2 text chunks, a 50000-byte random tail (7 slots).
 * second.img: base.img with random bytes over each CBT range.
 */
export async function writeV1Images(dir: string): Promise<{ base: string; second: string }> {
  const base = join(dir, 'base.img');
  const second = join(dir, 'second.img');
  await writeImage(base, [
    { kind: 'random', bytes: 2 * V1_CHUNK, seed: 41 },
    { kind: 'zero', bytes: 2 * V1_CHUNK },
    { kind: 'text', bytes: 2 * V1_CHUNK },
    { kind: 'random', bytes: 50_000, seed: 42 },
  ]);
  await fs.copyFile(base, second);
  const handle = await fs.open(second, 'r+');
  try {
    for (const [i, range] of V1_CHANGED.entries()) await handle.write(seededBytes(43 + i, range.length), 0, range.length, range.offset);
  } finally {
    await handle.close();
  }
  return { base, second };
}
