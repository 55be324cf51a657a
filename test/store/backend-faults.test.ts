/**
 * Invariant 6 through the storage seam: a read the backend fails (EIO from bench/faulty-fs) of
 * the format file, a catalog entry, a lock or a map is StoreReadError (CV_STORE_READ, exit 2)
 * naming the object, never absence; and nothing in the store changes.
 */
import t, { type Test } from 'tap';
import { promises as fs } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { canMount } from '../fuse/mounting.js';
import { Store } from '../../store/store.js';
import { gc } from '../../engine/gc.js';
import { exactly, faultyStore, storeState, type FaultRule, type FaultyStore } from '../helpers/faulty.js';

/** `read` on the faulty store rejects with StoreReadError naming `object` (a key, or what it is) and EIO, and changes nothing. */
async function readFails(t: Test, s: FaultyStore, rules: FaultRule[], object: string, read: () => Promise<unknown>, named = join(s.store, object)): Promise<void> {
  const before = await storeState(s.backing);
  await s.setRules(rules);
  s.fs.injected.length = 0;
  await t.rejects(read(), { name: 'StoreReadError', code: 'CV_STORE_READ', exitCode: 2, message: `cannot read ${named} (EIO); stopped, nothing was changed`, data: { code: 'EIO' } }, object);
  t.ok(s.fs.injected.length > 0, `${object}: the fault was met`);
  await s.setRules([]);
  t.equal(await storeState(s.backing), before, `${object}: nothing in the store changed`);
}

t.test('format file, catalog entry, lock and map: a backend read error is StoreReadError naming the object', async (t) => {
  if (!canMount(t)) return;
  const s = await faultyStore(t, { backups: 2 });
  const eio = (key: string): FaultRule[] => [{ path: exactly(`/${key}`), ops: ['read'], errno: 'EIO' }];

  await readFails(t, s, eio('chunkvault.json'), 'chunkvault.json', () => Store.open(s.store));

  const store = await Store.open(s.store);
  const entry = join('catalog', `${s.points[0].id}.json`);
  await readFails(t, s, eio(entry), entry, () => store.catalog.list());

  const lock = join('locks', `${process.pid}-0a0b0c.json`);
  await fs.writeFile(join(s.backing, lock), JSON.stringify({ pid: process.pid, host: hostname(), command: 'mount /mnt', started: new Date().toISOString() }) + '\n', { mode: 0o600 });
  await readFails(t, s, eio(lock), lock, () => store.locks());
  await fs.rm(join(s.backing, lock));

  const map = join('maps', s.points[1].id, 'disk.map');
  await s.setRules(eio(map));
  await t.rejects(store.readMap(s.points[1].id, 'disk'), { code: 'EIO' }, 'the map read fails with its errno, not as absent');
  // A ranged read's error carries no path: gc names the map by restore point and disk.
  await readFails(t, s, eio(map), map, () => gc(store), `the chunk map of restore point ${s.points[1].id} disk disk`);
});
