import t from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { parseChunkSize, decodeFormat, encodeFormat, newFormat } from '../../store/format.js';
import { DEFAULT_COMPRESSION } from '../../store/compression.js';
import { Store } from '../../store/store.js';
import { parseSize } from '../../store/size.js';
import { tempDir } from '../helpers/index.js';

t.test('chunk sizes: powers of two from 64K to 8M, in bytes or with suffixes', async (t) => {
  t.equal(parseChunkSize('1M'), 1048576);
  t.equal(parseChunkSize('256K'), 262144);
  t.equal(parseChunkSize('65536'), 65536);
  t.equal(parseChunkSize('8M'), 8388608);
  t.equal(parseChunkSize('4MiB'), 4194304);
  for (const bad of ['3M', '32K', '16M', '1.5M', 'abc', '', '-1M', '0']) {
    t.throws(() => parseChunkSize(bad), { code: 'CV_INVALID_INPUT' }, bad);
  }
  t.throws(() => parseSize('99999999999999999T', '--x'), { code: 'CV_INVALID_INPUT' });
});

t.test('format file: newer or unknown formats are refused', async (t) => {
  const good = decodeFormat(encodeFormat(newFormat(1048576, new Date(0), DEFAULT_COMPRESSION)), '/s');
  t.equal(good.chunkSize, 1048576);
  t.equal(good.version, 3);
  t.throws(() => decodeFormat(JSON.stringify({ format: 'chunkvault', version: 5, chunkSize: 1048576 }), '/s'), { code: 'CV_UNSUPPORTED_FORMAT' });
  t.throws(() => decodeFormat(JSON.stringify({ format: 'borg', version: 1, chunkSize: 1048576 }), '/s'), { code: 'CV_UNSUPPORTED_FORMAT' });
  t.throws(() => decodeFormat('{not json', '/s'), { code: 'CV_NOT_A_STORE' });
});

t.test('init creates a store once; open refuses what is not a store', async (t) => {
  const dir = await tempDir(t);
  const store = await Store.init(join(dir, 's'), 65536);
  t.equal(store.chunkSize, 65536);
  t.same((await fs.readdir(store.location)).sort(), ['catalog', 'chunkvault.json', 'index', 'locks', 'maps', 'packs', 'reserve']);
  await t.rejects(Store.init(store.location, 65536), { code: 'CV_STORE_EXISTS' });
  await t.rejects(Store.open(dir), { code: 'CV_NOT_A_STORE' });
  await t.rejects(Store.open(join(dir, 'nope')), { code: 'CV_NOT_A_STORE' });
  await fs.writeFile(join(dir, 'other'), 'x');
  await t.rejects(Store.init(dir, 65536), { code: 'CV_INVALID_INPUT' }, 'a non-empty directory is not turned into a store');
});
