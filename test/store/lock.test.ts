/** Lock objects: one per running command, whole or absent, cleared once their process is gone. */
import t from 'tap';
import { promises as fs } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { acquireLock, listLocks } from '../../store/lock.js';
import { FsBackend } from '../../store/backend/fs.js';
import { Store } from '../../store/store.js';
import { gc } from '../../engine/gc.js';
import { tempDir } from '../helpers/index.js';

const DEAD = 999999;

t.test('a lock is a whole JSON file named by its pid, listed while held, gone once released', async (t) => {
  const store = await tempDir(t);
  const dir = join(store, 'locks');
  const lock = await acquireLock(new FsBackend(store), 'backup');
  const names = await fs.readdir(dir);
  t.match(names, [new RegExp(`^${process.pid}-[0-9a-f]{6}\\.json$`)], 'no partial file is left beside it');
  t.same(JSON.parse(await fs.readFile(join(dir, names[0]), 'utf8')), lock.info);
  t.same(await listLocks(new FsBackend(store)), [lock.info]);
  await lock.release();
  t.same(await fs.readdir(dir), []);
});

t.test('locks and partial locks of processes that died on this host are cleared; others stay', async (t) => {
  const store = await tempDir(t);
  const dir = join(store, 'locks');
  await fs.mkdir(dir);
  const info = (pid: number, host: string): string => JSON.stringify({ pid, host, command: 'backup', started: '' });
  await fs.writeFile(join(dir, `${DEAD}-aaaaaa.json`), info(DEAD, hostname()));
  // Killed between creating its lock and renaming it: the partial file may even be empty.
  await fs.writeFile(join(dir, `${DEAD}-bbbbbb.json.${hostname()}.tmp`), '');
  const elsewhere = [`${DEAD}-cccccc.json.other-host.example.tmp`, `${process.pid}-dddddd.json.${hostname()}.tmp`];
  for (const name of elsewhere) await fs.writeFile(join(dir, name), '');
  await fs.writeFile(join(dir, `${DEAD}-eeeeee.json`), info(DEAD, 'other-host.example'));
  const old = { kind: 'shared', command: 'backup', pid: DEAD, host: 'other-host.example', started: '', refreshed: '', pins: [] };
  t.same(await listLocks(new FsBackend(store)), [old], "another host's lock is live for all this host can tell; one from before kinds is a shared lock pinning nothing");
  t.same((await fs.readdir(dir)).sort(), [...elsewhere, `${DEAD}-eeeeee.json`].sort(), 'a partial lock of another host, or of a live process, is left alone');
});

t.test("what a writer killed while creating its lock leaves is a temp file: never a lock, reclaimed by gc", async (t) => {
  const store = await Store.init(join(await tempDir(t), 's'), 65536);
  // FsBackend.create writes a dot-named temp file, then links it to the lock's name.
  const partial = `locks/.${DEAD}-abcdef.json.0011aabb.tmp`;
  const path = join(store.location, partial);
  await fs.writeFile(path, '{"pid": 9');
  const hourAgo = new Date(Date.now() - 3600_000);
  await fs.utimes(path, hourAgo, hourAgo);
  t.same(await store.locks(), [], 'not a lock, and not an unreadable one');
  t.same((await store.tmpFiles()).map((f) => f.key), [partial], 'listed with the temp files of interrupted writes');
  t.match(await gc(store), { tmpFilesRemoved: 1 });
  t.same(await fs.readdir(join(store.location, 'locks')), []);
});

t.test('a holder stopped past its lease does not renew its lock when it runs again: the lease is lost', async (t) => {
  const store = await tempDir(t);
  process.env.CHUNKVAULT_LEASE_SECONDS = '0.5';
  t.teardown(() => delete process.env.CHUNKVAULT_LEASE_SECONDS);
  const lost = new Promise<Error>((resolve) => void acquireLock(new FsBackend(store), 'backup', { onLeaseLost: resolve }).then((lock) => t.teardown(() => lock.release())));
  await new Promise((resolve) => setTimeout(resolve, 50));
  const written = (await fs.readdir(join(store, 'locks')))[0];
  const before = await fs.readFile(join(store, 'locks', written), 'utf8');
  // As a SIGSTOP would: no timer runs for longer than the lease.
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 700);
  const err = await lost;
  t.match(err, { code: 'CV_LEASE_LOST', message: /could not be renewed for 0\.5 s \(it was not renewed for 0\.5 s, so others may take it for stale\)/ });
  t.equal(await fs.readFile(join(store, 'locks', written), 'utf8'), before, 'the lock object was not written again');
});
