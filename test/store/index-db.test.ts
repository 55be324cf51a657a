import t from 'tap';
import { Store } from '../../store/store.js';
import { Codec } from '../../store/pack.js';
import { encodeLocation, decodeLocation } from '../../store/index-keys.js';
import { chunkId, loadHasher } from '../../store/chunk-id.js';
import { tempDir } from '../helpers/index.js';

await loadHasher();

t.test('locations round trip through the key layout', async (t) => {
  const location = { pack: '0123456789abcdef', offset: 2 ** 40 + 5, storedLength: 123456, rawLength: 1048576, codec: Codec.Lz4, settled: true };
  t.same(decodeLocation(encodeLocation(location)), location);
});

t.test('index: batch put, getMany, iterate, delete; a second opener is told who holds it', async (t) => {
  const store = await Store.init(`${await tempDir(t)}/s`, 65536);
  const ids = [1, 2, 3].map((i) => chunkId(Buffer.from([i])));
  const index = await store.openIndex();
  await index.putMany(ids.map((id, i) => [id, { pack: 'aaaaaaaaaaaaaaaa', offset: i * 100, storedLength: 10, rawLength: 20, codec: Codec.Raw, settled: false }]));
  const got = await index.getMany([ids[1], chunkId(Buffer.from('x'))]);
  t.equal(got[0]?.offset, 100);
  t.equal(got[1], undefined);
  const lock = await store.lock('backup');
  await t.rejects(store.openIndex(), { code: 'CV_STORE_BUSY', message: /'backup' \(pid \d+/ });
  await lock.release();
  await index.deleteMany([ids[0]]);
  const left = [];
  for await (const [id] of index.entries()) left.push(id.toString('hex'));
  t.same(left.sort(), [ids[1], ids[2]].map((id) => id.toString('hex')).sort());
  await index.close();
});
