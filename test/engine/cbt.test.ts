/** CBT lists: parsed into sorted merged ranges, or rejected with the file, field and value. */
import t from 'tap';
import { parseChangedList } from '../../engine/cbt.js';
import { InvalidInputError } from '../../engine/errors.js';

const DISK = 1024 * 1024;
const parse = (value: unknown, disk = DISK) => parseChangedList(typeof value === 'string' ? value : JSON.stringify(value), 'day2.cbt.json', disk);

t.test('ranges are sorted, overlapping and touching ones merged, any granularity kept', async (t) => {
  const changed = [
    { offset: 8192, length: 512 },
    { offset: 0, length: 4096 },
    { offset: 4096, length: 100 },
    { offset: 8000, length: 300 },
    { offset: DISK - 1, length: 1 },
  ];
  t.same(parse({ changed }), [
    { offset: 0, length: 4196 },
    { offset: 8000, length: 704 },
    { offset: DISK - 1, length: 1 },
  ]);
  t.same(parse({ changed: [] }), [], 'nothing changed');
});

t.test('bad lists are rejected with a message naming what to fix', async (t) => {
  const cases: [string, unknown, RegExp][] = [
    ['bad JSON', '{"changed": [', /^day2\.cbt\.json: not valid JSON/],
    ['not an object', [1, 2], /the CBT list must be an object, got \[1,2\]/],
    ['no "changed"', { extents: [] }, /the CBT list has no "changed"/],
    ['unknown key', { changed: [], chnaged: [] }, /unknown key "chnaged"/],
    ['changed not an array', { changed: { offset: 0 } }, /"changed" must be an array/],
    ['negative offset', { changed: [{ offset: -4096, length: 10 }] }, /changed\[0\]\.offset must be a whole number of bytes, 0 or more, got -4096/],
    ['fractional length', { changed: [{ offset: 0, length: 1.5 }] }, /changed\[0\]\.length must be a whole number of bytes, 1 or more, got 1\.5/],
    ['zero length', { changed: [{ offset: 0, length: 0 }] }, /changed\[0\]\.length must be a whole number of bytes, 1 or more, got 0/],
    ['string number', { changed: [{ offset: '0', length: 1 }] }, /got "0"/],
    ['missing length', { changed: [{ offset: 0 }] }, /changed\[0\] has no "length"/],
    ['misspelt key', { changed: [{ offset: 0, length: 1, lenght: 2 }] }, /changed\[0\] has an unknown key "lenght"/],
    ['unsafe number', '{"changed": [{"offset": 9007199254740993, "length": 1}]}', /changed\[0\]\.offset = 9007199254740992 is 2\^53 or more/],
    ['past the disk', { changed: [{ offset: 0, length: 10 }, { offset: DISK - 10, length: 11 }] }, /changed\[1\] \(bytes 1048566-1048576\) ends past the disk, which has 1048576 bytes/],
  ];
  for (const [what, input, message] of cases) {
    t.throws(() => parse(input), { constructor: InvalidInputError, code: 'CV_INVALID_INPUT', message }, what);
  }
});
