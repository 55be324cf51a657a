/** Extent maps: parsing and validation, and a real file's physical extents through FIEMAP. */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { fileExtentMap, parseExtentMap } from '../../engine/extents.js';
import { InvalidInputError, SourceError } from '../../engine/errors.js';
import { hasCommand, requireCapability, seededBytes, tempDir } from '../helpers/index.js';

const SOURCE = 1 << 30;
const parse = (value: unknown) => parseExtentMap(typeof value === 'string' ? value : JSON.stringify(value), 'disk.extents.json', '/dev/sdx', SOURCE);

t.test('an extent map: sourceOffset defaults to offset, extents sorted by disk offset', async (t) => {
  const map = parse({
    size: 10 * 4096,
    device: '/dev/loop7',
    extents: [
      { offset: 8192, length: 4096, sourceOffset: 1 << 20 },
      { offset: 0, length: 4096 },
      { offset: 4096, length: 100, sourceOffset: 0 },
    ],
  });
  t.same(map, {
    size: 40960,
    extents: [
      { offset: 0, length: 4096, from: 0 },
      { offset: 4096, length: 100, from: 0 },
      { offset: 8192, length: 4096, from: 1 << 20 },
    ],
  });
  t.same(parse({ size: 1, extents: [] }), { size: 1, extents: [] }, 'an all-zero disk');
});

t.test('bad extent maps are rejected with a message naming what to fix', async (t) => {
  const cases: [string, unknown, RegExp][] = [
    ['bad JSON', '{"size": 10,', /^disk\.extents\.json: not valid JSON/],
    ['no size', { extents: [] }, /the extent map has no "size"/],
    ['zero size', { size: 0, extents: [] }, /"size" must be a whole number of bytes, 1 or more, got 0/],
    ['size as text', { size: '1G', extents: [] }, /"size" must be a whole number of bytes, 1 or more, got "1G"/],
    ['unsafe size', '{"size": 18446744073709551616, "extents": []}', /"size" = 18446744073709552000 is 2\^53 or more/],
    ['extents not an array', { size: 10, extents: null }, /"extents" must be an array, got null/],
    ['extent not an object', { size: 10, extents: [5] }, /extents\[0\] must be an object, got 5/],
    ['misspelt sourceOffset', { size: 10, extents: [{ offset: 0, length: 1, sourceOfset: 4 }] }, /extents\[0\] has an unknown key "sourceOfset" \(allowed: offset, length, sourceOffset\)/],
    ['negative offset', { size: 10, extents: [{ offset: -1, length: 1 }] }, /extents\[0\]\.offset must be a whole number of bytes, 0 or more, got -1/],
    ['fractional sourceOffset', { size: 10, extents: [{ offset: 0, length: 1, sourceOffset: 0.5 }] }, /extents\[0\]\.sourceOffset must be a whole number of bytes, 0 or more, got 0\.5/],
    ['zero length', { size: 10, extents: [{ offset: 0, length: 0 }] }, /extents\[0\]\.length must be a whole number of bytes, 1 or more/],
    ['past the disk', { size: 10, extents: [{ offset: 5, length: 6 }] }, /extents\[0\] \(bytes 5-10\) ends past the disk size 10/],
    ['past the source', { size: 10, extents: [{ offset: 0, length: 10, sourceOffset: SOURCE - 5 }] }, /extents\[0\] reads bytes 1073741819-1073741828 of \/dev\/sdx, which has only 1073741824 bytes/],
    [
      'overlap',
      { size: 100, extents: [{ offset: 50, length: 10 }, { offset: 0, length: 10 }, { offset: 55, length: 1 }] },
      /extents\[2\] \(disk bytes from 55\) overlaps extents\[0\] \(disk bytes 50-59\)/,
    ],
  ];
  for (const [what, input, message] of cases) {
    t.throws(() => parse(input), { constructor: InvalidInputError, code: 'CV_INVALID_INPUT', message }, what);
  }
});

t.test("a file's extents on its device: holes and preallocated extents left out, the tail clipped", async (t) => {
  if (!requireCapability(t, hasCommand('filefrag') && hasCommand('fallocate'), 'needs filefrag and fallocate (e2fsprogs, util-linux)')) return;
  const dir = await tempDir(t);
  const file = join(dir, 'disk.raw');
  const handle = await fs.open(file, 'w');
  await handle.write(seededBytes(1, 8192), 0, 8192, 0);
  await handle.write(seededBytes(2, 4096), 0, 4096, 1 << 20);
  await handle.write(seededBytes(3, 100), 0, 100, 3 << 20);
  await handle.close();
  execFileSync('fallocate', ['-o', String(2 << 20), '-l', String(1 << 20), '-n', file]);
  const map = await fileExtentMap(file);
  t.equal(map.file, file);
  t.equal(map.size, (3 << 20) + 100);
  t.match(map.device, /^\/dev\//);
  t.ok((await fs.stat(map.device)).isBlockDevice(), `${map.device} is a block device`);
  t.same(
    map.extents.map((e) => [e.offset, e.length]),
    [
      [0, 8192],
      [1 << 20, 4096],
      [3 << 20, 100],
    ],
    'data only, last extent clipped to the file size',
  );
  t.ok(map.extents.every((e) => e.sourceOffset > 0 && e.sourceOffset % 512 === 0), 'device offsets');
});

t.test('files whose bytes cannot be read from a device are refused', async (t) => {
  const dir = await tempDir(t);
  await t.rejects(fileExtentMap(join(dir, 'missing.raw')), { constructor: InvalidInputError, message: /missing\.raw: no such file/ });
  await t.rejects(fileExtentMap(dir), { constructor: InvalidInputError, message: /is not a regular file/ });
  const shm = await fs.mkdtemp('/dev/shm/cv-extents-').catch(() => null);
  if (!requireCapability(t, shm !== null, 'needs a tmpfs at /dev/shm')) return;
  t.teardown(() => fs.rm(shm!, { recursive: true, force: true }));
  await fs.writeFile(join(shm!, 'f'), 'data');
  await t.rejects(fileExtentMap(join(shm!, 'f')), { constructor: SourceError, code: 'CV_SOURCE', message: /its filesystem does not report extents/ });
});
