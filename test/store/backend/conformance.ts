/**
 * Every contract of store/backend/backend.ts, run against a backend: fs.test.ts and s3.test.ts
 * are this suite with their own `makeBackend`, which gives each subtest an empty backend.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import type { Test } from 'tap';
import type { Backend } from '../../../store/backend/backend.js';
import { openBackend } from '../../../store/backend/open.js';
import { isAbsent } from '../../../store/errors.js';
import { MiB, seededBytes } from '../../helpers/index.js';

export type MakeBackend = (t: Test) => Promise<Backend>;

const sha256 = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex');

async function keysOf(backend: Backend, prefix: string): Promise<string[]> {
  return (await backend.list(prefix)).map((info) => info.key);
}

/** Runs `work` on each item, at most `limit` at a time. */
async function inParallel<T>(items: T[], limit: number, work: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: limit }, async () => {
    while (next < items.length) await work(items[next++]!);
  }));
}

async function uploadWhole(backend: Backend, key: string, data: Buffer, step: number): Promise<void> {
  const upload = await backend.upload(key);
  for (let at = 0; at < data.byteLength; at += step) await upload.append([data.subarray(at, Math.min(at + step, data.byteLength))]);
  if (upload.size !== data.byteLength) throw new Error(`upload.size ${upload.size}, appended ${data.byteLength}`);
  await upload.finish();
}

export function backendConformance(t: Test, makeBackend: MakeBackend): void {
  t.test('absent objects: get and stat null, readInto ENOENT, delete fine, list empty', async (t) => {
    const backend = await makeBackend(t);
    t.equal(await backend.get('packs/none.pack'), null);
    t.equal(await backend.stat('packs/none.pack'), null);
    const err = await backend.readInto('packs/none.pack', 0, Buffer.alloc(10)).then(() => null, (e: unknown) => e);
    t.ok(isAbsent(err), `readInto of an absent object throws ENOENT (got ${String(err)})`);
    const empty = await backend.readInto('packs/none.pack', 0, Buffer.alloc(0)).then(() => null, (e: unknown) => e);
    t.ok(isAbsent(empty), 'an empty readInto of an absent object throws ENOENT too');
    await backend.delete(['packs/none.pack', 'catalog/none.json']);
    t.same(await backend.list('packs/'), []);
    t.same(await backend.list(''), []);
  });

  t.test('put, get, stat, put replaces, ranged reads including the end', async (t) => {
    const backend = await makeBackend(t);
    const data = seededBytes(1, 100_000);
    const before = Date.now();
    await backend.put('maps/a/disk.map', data);
    t.equal(sha256((await backend.get('maps/a/disk.map'))!), sha256(data));
    const info = await backend.stat('maps/a/disk.map');
    t.equal(info?.key, 'maps/a/disk.map');
    t.equal(info?.size, 100_000);
    t.ok(Math.abs(info!.mtimeMs - before) < 60_000, 'mtime is about now');
    const middle = Buffer.alloc(1000);
    t.equal(await backend.readInto('maps/a/disk.map', 5000, middle), 1000);
    t.ok(middle.equals(data.subarray(5000, 6000)), 'a ranged read in the middle');
    const tail = Buffer.alloc(1000);
    t.equal(await backend.readInto('maps/a/disk.map', 99_500, tail), 500, 'a read over the end is short');
    t.ok(tail.subarray(0, 500).equals(data.subarray(99_500)));
    t.equal(await backend.readInto('maps/a/disk.map', 100_000, Buffer.alloc(10)), 0, 'a read at the end gives nothing');
    t.equal(await backend.readInto('maps/a/disk.map', 200_000, Buffer.alloc(10)), 0, 'a read past the end gives nothing');
    await backend.put('maps/a/disk.map', Buffer.from('second'));
    t.equal((await backend.get('maps/a/disk.map'))?.toString(), 'second', 'put replaces');
    t.equal((await backend.stat('maps/a/disk.map'))?.size, 6);
    await backend.put('empty', Buffer.alloc(0));
    t.equal((await backend.get('empty'))?.byteLength, 0, 'an empty object is an object');
    t.equal(await backend.readInto('empty', 0, Buffer.alloc(4)), 0);
  });

  t.test('list: recursive below a "directory", a partial name, sorted', async (t) => {
    const backend = await makeBackend(t);
    const keys = ['a/b/2', 'a/b/1', 'a/c', 'ab', 'b', 'a/bc'];
    for (const key of keys) await backend.put(key, Buffer.from(key));
    t.same(await keysOf(backend, ''), [...keys].sort());
    t.same(await keysOf(backend, 'a/'), ['a/b/1', 'a/b/2', 'a/bc', 'a/c']);
    t.same(await keysOf(backend, 'a'), ['a/b/1', 'a/b/2', 'a/bc', 'a/c', 'ab']);
    t.same(await keysOf(backend, 'a/b'), ['a/b/1', 'a/b/2', 'a/bc'], 'a partial name matches files and directories');
    t.same(await keysOf(backend, 'a/b/'), ['a/b/1', 'a/b/2']);
    t.same(await keysOf(backend, 'c'), []);
    t.same((await backend.list('a/c')).map(({ key, size }) => ({ key, size })), [{ key: 'a/c', size: 3 }]);
  });

  t.test('list of more than 1000 objects (pages)', async (t) => {
    const backend = await makeBackend(t);
    const keys = Array.from({ length: 1100 }, (_, i) => `packs/${String(i).padStart(5, '0')}.pack`);
    await inParallel(keys, 16, (key) => backend.put(key, Buffer.from(key)));
    await backend.put('packz', Buffer.from('outside'));
    t.same(await keysOf(backend, 'packs/'), keys);
    await backend.delete(keys);
    t.same(await keysOf(backend, ''), ['packz'], 'a delete of 1100 keys (batches) leaves only the others');
  });

  t.test('create is exclusive, also when creates race', async (t) => {
    const backend = await makeBackend(t);
    t.equal(await backend.create('catalog/1.json', Buffer.from('first')), true);
    t.equal(await backend.create('catalog/1.json', Buffer.from('second')), false, 'a second create returns false');
    t.equal((await backend.get('catalog/1.json'))?.toString(), 'first', 'and leaves the first object byte-identical');
    const contenders = Array.from({ length: 8 }, (_, i) => seededBytes(10 + i, 4096));
    const results = await Promise.all(contenders.map((data) => backend.create('catalog/race.json', data)));
    t.equal(results.filter(Boolean).length, 1, 'exactly one of 8 racing creates wins');
    t.equal(sha256((await backend.get('catalog/race.json'))!), sha256(contenders[results.indexOf(true)]!), 'the object is the winner\'s');
  });

  t.test('upload: 0 bytes, less than a part, several parts (40 MiB), sha256 round trip', async (t) => {
    const backend = await makeBackend(t);
    await uploadWhole(backend, 'packs/empty.pack', Buffer.alloc(0), 1);
    t.equal((await backend.stat('packs/empty.pack'))?.size, 0);
    const small = seededBytes(2, 300_000);
    await uploadWhole(backend, 'packs/small.pack', small, 70_000);
    t.equal(sha256((await backend.get('packs/small.pack'))!), sha256(small));
    const big = seededBytes(3, 40 * MiB + 12345);
    await uploadWhole(backend, 'packs/big.pack', big, MiB + 7);
    t.equal((await backend.stat('packs/big.pack'))?.size, big.byteLength);
    t.equal(sha256((await backend.get('packs/big.pack'))!), sha256(big), '40 MiB round trip');
    const across = Buffer.alloc(2 * MiB);
    t.equal(await backend.readInto('packs/big.pack', 7 * MiB, across), 2 * MiB);
    t.ok(across.equals(big.subarray(7 * MiB, 9 * MiB)), 'a ranged read across part boundaries');
  });

  t.test('an aborted upload leaves nothing listed', async (t) => {
    const backend = await makeBackend(t);
    const upload = await backend.upload('packs/aborted.pack');
    await upload.append([seededBytes(4, 20 * MiB)]);
    await upload.abort();
    t.same(await backend.list(''), []);
    t.equal(await backend.get('packs/aborted.pack'), null);
  });

  t.test('stage: written freely (sparse, any order), committed whole; discarded leaves nothing', async (t) => {
    const backend = await makeBackend(t);
    const staged = await backend.stage('maps/1/disk.map');
    const handle = await fs.open(staged.path, 'r+');
    const slot = seededBytes(5, 32);
    await handle.write(slot, 0, 32, 3 * MiB);
    await handle.write(slot, 0, 32, 64);
    await handle.close();
    t.equal(await backend.get('maps/1/disk.map'), null, 'nothing before the commit');
    await staged.commit();
    const expected = Buffer.alloc(3 * MiB + 32);
    slot.copy(expected, 64);
    slot.copy(expected, 3 * MiB);
    t.equal(sha256((await backend.get('maps/1/disk.map'))!), sha256(expected), 'the committed object is the file');
    const dropped = await backend.stage('maps/2/disk.map');
    await fs.writeFile(dropped.path, 'partial');
    await dropped.discard();
    t.same(await keysOf(backend, ''), ['maps/1/disk.map'], 'a discarded stage leaves nothing listed');
    await t.rejects(fs.stat(dropped.path), { code: 'ENOENT' }, 'nor its file');
  });

  t.test('spec: plain data that opens the same backend', async (t) => {
    const backend = await makeBackend(t);
    await backend.put('chunkvault.json', Buffer.from('{"format":1}'));
    const other = openBackend(structuredClone(backend.spec));
    t.teardown(() => other.close());
    t.equal(other.location, backend.location);
    t.equal((await other.get('chunkvault.json'))?.toString(), '{"format":1}');
  });
}
