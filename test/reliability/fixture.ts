/**
 * A small store whose every chunk is known, for damaging on purpose (64 KiB chunks):
 *   A  vm  T1  sda (v1: 16 random slots, 4 zero, 4 text, a 1000-byte tail)  sdb (8 random slots)
 *   B  vm  T2  sda (v2: slots 0-1 rewritten; CBT incremental on A)         sdb (same as A's)
 *   C  db  T3  disk (6 random slots, 2 zero)
 * A's pack holds sda v1's chunks, then sdb's; B's pack only its two new chunks; C's its six.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { Store } from '../../store/store.js';
import { ID_BYTES } from '../../store/chunk-id.js';
import { cliJson, seededBytes, sha256File, tempDir, writeImage } from '../helpers/index.js';
import { packFile } from '../helpers/corrupt.js';

export const CS = 64 * 1024;
export const T1 = '2026-11-01T00:00:00.000Z';
export const T2 = '2026-11-02T00:00:00.000Z';
export const T3 = '2026-11-03T00:00:00.000Z';

export interface Fixture {
  dir: string;
  store: string;
  a: string;
  b: string;
  c: string;
  images: { sda1: string; sda2: string; sdb: string; c: string };
  sha: Record<'sda1' | 'sda2' | 'sdb' | 'c', string>;
  sizes: { sda: number; sdb: number; c: number };
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

export async function buildFixture(t: Teardown): Promise<Fixture> {
  const dir = await tempDir(t, 'cv-fixture-');
  const images = { sda1: join(dir, 'sda1.img'), sda2: join(dir, 'sda2.img'), sdb: join(dir, 'sdb.img'), c: join(dir, 'c.img') };
  const sda = await writeImage(images.sda1, [
    { kind: 'random', bytes: 16 * CS, seed: 1 },
    { kind: 'zero', bytes: 4 * CS },
    { kind: 'text', bytes: 4 * CS },
    { kind: 'random', bytes: 1000, seed: 2 },
  ]);
  await fs.copyFile(images.sda1, images.sda2);
  const v2 = await fs.open(images.sda2, 'r+');
  await v2.write(seededBytes(3, 2 * CS), 0, 2 * CS, 0);
  await v2.close();
  const sdb = await writeImage(images.sdb, [{ kind: 'random', bytes: 8 * CS, seed: 4 }]);
  const c = await writeImage(images.c, [
    { kind: 'random', bytes: 6 * CS, seed: 5 },
    { kind: 'zero', bytes: 2 * CS },
  ]);
  const cbt = join(dir, 'cbt.json');
  await fs.writeFile(cbt, JSON.stringify({ changed: [{ offset: 0, length: 2 * CS }] }));

  const store = join(dir, 'store');
  await cliJson(['init', '--store', store, '--chunk-size', '64K']);
  const backup = async (args: string[]): Promise<string> => (await cliJson<{ id: string }>(['backup', '--store', store, '--threads', '1', ...args])).id;
  const a = await backup([`sda=${images.sda1}`, `sdb=${images.sdb}`, '--name', 'vm', '--time', T1]);
  const b = await backup([`sda=${images.sda2}`, `sdb=${images.sdb}`, '--name', 'vm', '--time', T2, '--parent', a, '--changed', `sda=${cbt}`]);
  const cId = await backup([`disk=${images.c}`, '--name', 'db', '--time', T3]);
  const sha = { sda1: await sha256File(images.sda1), sda2: await sha256File(images.sda2), sdb: await sha256File(images.sdb), c: await sha256File(images.c) };
  return { dir, store, a, b, c: cId, images, sha, sizes: { sda, sdb, c } };
}

/** A copy of the fixture's store to damage. */
export async function copyStore(t: Teardown, fixture: Fixture): Promise<{ dir: string; store: string }> {
  const dir = await tempDir(t, 'cv-damaged-');
  const store = join(dir, 'store');
  await fs.cp(fixture.store, store, { recursive: true });
  return { dir, store };
}

/** The pack holding a restore point's chunks (the first pack its maps reference). */
export async function packOf(store: string, point: string, label: string, slot: number): Promise<{ pack: string; offset: number; storedLength: number; path: string }> {
  const opened = await Store.open(store);
  const map = await opened.readMap(point, label);
  const index = await opened.openIndex();
  try {
    const [location] = await index.getMany([Buffer.from(map.subarray(slot * ID_BYTES, (slot + 1) * ID_BYTES))]);
    if (!location) throw new Error(`slot ${slot} of ${point}/${label} has no chunk`);
    return { ...location, path: packFile(opened, location.pack) };
  } finally {
    await index.close();
  }
}

/** Drops the index entries of the chunks at these slots, as an index restored from an old copy would lack them. */
export async function dropIndexEntries(store: string, point: string, label: string, slots: number[]): Promise<void> {
  const opened = await Store.open(store);
  const map = await opened.readMap(point, label);
  const index = await opened.openIndex();
  try {
    await index.deleteMany(slots.map((slot) => Buffer.from(map.subarray(slot * ID_BYTES, (slot + 1) * ID_BYTES))));
  } finally {
    await index.close();
  }
}
