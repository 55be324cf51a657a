/**
 * Changed-block lists of every format: detected or named, parsed into sorted merged changed
 * and discarded ranges, or rejected with the file, the place and what to do. The samples
 * have the exact shape the tools print on this machine (rbd 16.2, thin_delta 0.9, nbdinfo
 * 1.14, qemu-img 7.2); test/cli/cbt-sources.test.ts runs the tools themselves.
 */
import t from 'tap';
import { checkCbtFormat, parseChangedList, parseChanges, type CbtFormat } from '../../engine/cbt.js';
import { InvalidInputError } from '../../engine/errors.js';

const DISK = 1024 * 1024;
const K64 = 64 * 1024;
const FILE = 'day2.cbt';
const text = (value: unknown): string => (typeof value === 'string' ? value : JSON.stringify(value));
const parse = (value: unknown, format: CbtFormat | 'auto' = 'auto', disk = DISK) => parseChanges(text(value), FILE, disk, format);

const THIN_DELTA = `<superblock uuid="" time="1" transaction="2" data_block_size="128" nr_data_blocks="100">
  <diff left="1" right="2">
    <same begin="0" length="2"/>
    <different begin="2" length="1"/>
    <same begin="3" length="1"/>
    <left_only begin="6" length="1"/>
    <right_only begin="8" length="1"/>
    <right_only begin="10" length="3"/>
  </diff>
</superblock>
`;
const THIN_DELTA_VERBOSE = `<superblock uuid="" time="1" transaction="2" data_block_size="128" nr_data_blocks="100">
  <diff left="1" right="2">
    <same>
      <range begin="0" data_begin="0" length="2"/>
    </same>
    <different>
      <range begin="2" left_data_begin="2" right_data_begin="20" length="1"/>
    </different>
    <left_only>
      <range begin="6" data_begin="10" length="1"/>
    </left_only>
    <right_only>
      <range begin="8" data_begin="21" length="1"/>
      <range begin="10" data_begin="30" length="3"/>
    </right_only>
  </diff>
</superblock>
`;
const THIN_CHANGES = {
  changed: [
    { offset: 2 * K64, length: K64 },
    { offset: 8 * K64, length: K64 },
    { offset: 10 * K64, length: 3 * K64 },
  ],
  discarded: [{ offset: 6 * K64, length: K64 }],
};

// One dirty bitmap of the 1 MiB disk: dirty 64K-128K and 512K-576K.
const BITMAP = [
  [0, K64, 0, 'clean'],
  [K64, K64, 1, 'dirty'],
  [2 * K64, 6 * K64, 0, 'clean'],
  [8 * K64, K64, 1, 'dirty'],
  [9 * K64, 7 * K64, 0, 'clean'],
] as const;
const NBDINFO = BITMAP.map(([o, l, type, d]) => `${String(o).padStart(10)} ${String(l).padStart(11)}    ${type}  ${d}`).join('\n') + '\n';
const NBDINFO_JSON = `[\n${BITMAP.map(([o, l, type, d]) => `{ "offset": ${o}, "length": ${l}, "type": ${type}, "description": "${d}"}`).join(',\n')}\n]\n`;
const QEMU_MAP = `[${BITMAP.map(([o, l, type]) =>
  type === 1 ? `{ "start": ${o}, "length": ${l}, "depth": 0, "present": false, "zero": false, "data": false}` : `{ "start": ${o}, "length": ${l}, "depth": 0, "present": true, "zero": false, "data": true, "offset": ${o}}`,
).join(',\n')}]\n`;
const BITMAP_CHANGES = {
  changed: [
    { offset: K64, length: K64 },
    { offset: 8 * K64, length: K64 },
  ],
  discarded: [],
};

t.test('every format is detected, and parses the same when named', async (t) => {
  const cases: [CbtFormat, string, { changed: unknown[]; discarded: unknown[] }][] = [
    ['chunkvault', text({ changed: [{ offset: 8192, length: 512 }, { offset: 0, length: 4096 }] }), { changed: [{ offset: 0, length: 4096 }, { offset: 8192, length: 512 }], discarded: [] }],
    [
      'rbd',
      '[{"offset":4096,"length":4096,"exists":"true"},{"offset":0,"length":4096,"exists":"true"},{"offset":524288,"length":524288,"exists":"false"}]',
      { changed: [{ offset: 0, length: 8192 }], discarded: [{ offset: 524288, length: 524288 }] },
    ],
    ['rbd', '[{"offset":0,"length":10,"exists":true},{"offset":100,"length":10,"exists":false}]', { changed: [{ offset: 0, length: 10 }], discarded: [{ offset: 100, length: 10 }] }],
    ['rbd', '[]', { changed: [], discarded: [] }],
    ['thin', THIN_DELTA, THIN_CHANGES],
    ['thin', THIN_DELTA_VERBOSE, THIN_CHANGES],
    ['nbdinfo', NBDINFO, BITMAP_CHANGES],
    ['nbdinfo', NBDINFO_JSON, BITMAP_CHANGES],
    ['qemu-map', QEMU_MAP, BITMAP_CHANGES],
    ['vmware', text({ startOffset: 0, length: DISK, changedArea: [{ start: K64, length: K64 }, { start: 8 * K64, length: K64 }] }), BITMAP_CHANGES],
    [
      'vmware',
      text([
        { _vimtype: 'vim.vm.DiskChangeInfo', startOffset: 8 * K64, length: DISK - 8 * K64, changedArea: [{ _vimtype: 'vim.vm.DiskChangeInfo.DiskChangeExtent', start: 8 * K64, length: K64 }] },
        { startOffset: 0, length: 8 * K64, changedArea: [{ start: K64, length: K64 }] },
      ]),
      BITMAP_CHANGES,
    ],
    ['text', '# offset length\n65536 65536\n\n0x80000\t0x10000  # a hex range\n', BITMAP_CHANGES],
  ];
  for (const [format, input, expected] of cases) {
    t.same(parse(input), { ...expected, warnings: [] }, `${format} detected: ${input.slice(0, 40)}`);
    t.same(parse(input, format), { ...expected, warnings: [] }, `${format} named`);
  }
});

t.test('chunkvault lists: sorted, merged, unknown top-level keys ignored with a warning', async (t) => {
  const changed = [
    { offset: 8192, length: 512 },
    { offset: 0, length: 4096 },
    { offset: 4096, length: 100 },
    { offset: 8000, length: 300 },
    { offset: DISK - 1, length: 1 },
  ];
  t.same(parse({ changed }).changed, [
    { offset: 0, length: 4196 },
    { offset: 8000, length: 704 },
    { offset: DISK - 1, length: 1 },
  ]);
  t.same(parse({ changed: [] }), { changed: [], discarded: [], warnings: [] }, 'nothing changed');
  t.same(parse({ tool: 'vddk-export 2.1', changed: [{ offset: 0, length: 1 }], chnaged: [] }).warnings, [
    `${FILE}: ignored the unknown top-level key "tool" (a chunkvault CBT list is read from "changed" only)`,
    `${FILE}: ignored the unknown top-level key "chnaged" (a chunkvault CBT list is read from "changed" only)`,
  ]);
});

t.test('a byte both changed and discarded is read; the restore-onto list holds both', async (t) => {
  const diff = '[{"offset":0,"length":300,"exists":"false"},{"offset":100,"length":100,"exists":"true"}]';
  t.same(parse(diff), { changed: [{ offset: 100, length: 100 }], discarded: [{ offset: 0, length: 100 }, { offset: 200, length: 100 }], warnings: [] });
  t.same(parseChangedList(diff, FILE, DISK), [{ offset: 0, length: 300 }]);
  t.same(parseChangedList(THIN_DELTA, FILE, DISK), [{ offset: 2 * K64, length: K64 }, { offset: 6 * K64, length: K64 }, { offset: 8 * K64, length: K64 }, { offset: 10 * K64, length: 3 * K64 }]);
});

t.test('thin blocks: the last may overhang a disk of no whole number of blocks, no block may start past it', async (t) => {
  const size = 12 * K64 + 1000;
  t.same(parse(THIN_DELTA, 'auto', size).changed.at(-1), { offset: 10 * K64, length: 2 * K64 + 1000 }, 'cut at the disk end');
  t.throws(() => parse(THIN_DELTA, 'auto', 12 * K64), {
    constructor: InvalidInputError,
    message: `${FILE}: <right_only begin="10" length="3"/> (bytes 655360-851967) ends past the disk, which has 786432 bytes; is it thin_delta of another thin device, or of one of another size?`,
  });
});

t.test('bad lists are rejected with one line naming the file, the place and what to fix', async (t) => {
  const cases: [string, unknown, CbtFormat | 'auto', RegExp | string][] = [
    ['bad JSON', '{"changed": [', 'auto', /^day2\.cbt: not valid JSON/],
    ['unknown JSON', [1, 2], 'auto', `${FILE}: cannot tell which changed-block format this is (it starts with "[1,2]"); name it with --changed-format (chunkvault, rbd, thin, nbdinfo, qemu-map, vmware, text)`],
    ['words', 'changed: everything\n', 'auto', /cannot tell which changed-block format this is \(it starts with "changed: everything\\n"\)/],
    ['empty', '\n\n', 'auto', /cannot tell which changed-block format this is \(it is empty\)/],
    ['comments only', '# nothing\n', 'auto', /cannot tell which changed-block format this is/],
    ['rbd given an nbdinfo map', NBDINFO, 'rbd', `${FILE}: --changed-format rbd expects \`rbd diff --format json\` output, but this looks like \`nbdinfo --map\` output of a dirty bitmap; pass --changed-format nbdinfo (or auto)`],
    ['thin given a qemu map', QEMU_MAP, 'thin', /--changed-format thin expects `thin_delta` XML, but this looks like `qemu-img map --output=json` of a dirty bitmap; pass --changed-format qemu-map/],
    ['text given thin XML', THIN_DELTA, 'text', /--changed-format text expects an OFFSET LENGTH text list, but this looks like `thin_delta` XML/],
    ['chunkvault given rbd', '[]', 'chunkvault', /--changed-format chunkvault expects a chunkvault CBT list \{"changed": \[\.\.\.\]\}, but this looks like `rbd diff/],
    ['not an object', [1, 2], 'chunkvault', /the CBT list must be an object, got \[1,2\]/],
    ['no "changed"', { extents: [] }, 'chunkvault', /the CBT list has no "changed"/],
    ['changed not an array', { changed: { offset: 0 } }, 'auto', /"changed" must be an array/],
    ['negative offset', { changed: [{ offset: -4096, length: 10 }] }, 'auto', /changed\[0\]\.offset must be a whole number of bytes, 0 or more, got -4096/],
    ['fractional length', { changed: [{ offset: 0, length: 1.5 }] }, 'auto', /changed\[0\]\.length must be a whole number of bytes, 1 or more, got 1\.5/],
    ['zero length', { changed: [{ offset: 0, length: 0 }] }, 'auto', /changed\[0\]\.length must be a whole number of bytes, 1 or more, got 0/],
    ['string number', { changed: [{ offset: '0', length: 1 }] }, 'auto', /got "0"/],
    ['misspelt key in a range', { changed: [{ offset: 0, length: 1, lenght: 2 }] }, 'auto', /changed\[0\] has an unknown key "lenght"/],
    ['unsafe number', '{"changed": [{"offset": 9007199254740993, "length": 1}]}', 'auto', /changed\[0\]\.offset = 9007199254740992 is 2\^53 or more/],
    ['past the disk', { changed: [{ offset: 0, length: 10 }, { offset: DISK - 10, length: 11 }] }, 'auto', /changed\[1\] \(bytes 1048566-1048576\) ends past the disk, which has 1048576 bytes$/],
    ['rbd past the disk', '[{"offset":1048576,"length":4096,"exists":"false"}]', 'auto', /\[0\] \(bytes 1048576-1052671\) ends past the disk, which has 1048576 bytes; is it the diff of another image/],
    ['rbd negative', '[{"offset":-1,"length":4096,"exists":"true"}]', 'auto', /\[0\]\.offset must be a whole number of bytes, 0 or more, got -1/],
    ['rbd fractional', '[{"offset":0,"length":0.5,"exists":"true"}]', 'auto', /\[0\]\.length must be a whole number of bytes, 1 or more, got 0\.5/],
    ['rbd exists', '[{"offset":0,"length":1,"exists":"yes"}]', 'auto', /\[0\]\.exists must be "true" or "false", got "yes"/],
    ['rbd extra key', '[{"offset":0,"length":1,"exists":"true","snap":"s2"}]', 'rbd', /\[0\] has an unknown key "snap"/],
    ['text negative', '0 4096\n-4096 10\n', 'text', `${FILE}: line 2 offset: "-4096" is not a whole number (decimal, or hex with 0x), 0 or more`],
    ['text fractional', '0 1.5\n', 'auto', /line 1 length: "1\.5" is not a whole number/],
    ['text zero length', '10 0\n', 'auto', /line 1 length: "0" is not a whole number \(decimal, or hex with 0x\), 1 or more/],
    ['text three fields', '0 10\n5 5 5\n', 'auto', /line 2: expected OFFSET LENGTH, got "5 5 5"/],
    ['text past the disk', '0x100000 1\n', 'auto', /line 1 \(bytes 1048576-1048576\) ends past the disk/],
    ['nbdinfo of base:allocation', `         0     ${DISK}    0  data\n`, 'auto', /line 1: type 0 "data" is not a dirty-bitmap state \(0 clean or 1 dirty\); is this map of another context \(base:allocation\)\? Map the bitmap: nbdinfo --map=qemu:dirty-bitmap:NAME/],
    ['nbdinfo hole', `0 ${DISK} 3 hole,zero\n`, 'nbdinfo', /type 3 "hole,zero" is not a dirty-bitmap state/],
    ['nbdinfo type against description', `0 ${DISK} 0 dirty\n`, 'auto', /line 1: type 0 "dirty" is not a dirty-bitmap state/],
    ['nbdinfo of another disk', NBDINFO + `${DISK} ${DISK} 1 dirty\n`, 'auto', `${FILE}: the map describes 2097152 bytes, but the disk has 1048576; is it the map of another disk?`],
    ['nbdinfo short', `0 ${K64} 1 dirty\n`, 'auto', /the map describes 65536 bytes, but the disk has 1048576/],
    ['nbdinfo negative', `-1 ${K64} 1 dirty\n`, 'nbdinfo', /line 1 offset: "-1" is not a whole number, 0 or more/],
    ['qemu map of the image', `[{ "start": 0, "length": ${DISK}, "depth": 0, "present": false, "zero": true, "data": false}]`, 'auto', /\[0\] has "zero": true, which a dirty-bitmap map never has: map the bitmap with qemu-img map --image-opts driver=nbd,\.\.\.,x-dirty-bitmap=qemu:dirty-bitmap:NAME/],
    ['qemu map fractional', `[{ "start": 0.5, "length": ${DISK}, "zero": false, "data": true}]`, 'auto', /\[0\]\.start must be a whole number of bytes, 0 or more, got 0\.5/],
    ['vmware gap', [{ startOffset: 0, length: K64, changedArea: [] }, { startOffset: 2 * K64, length: DISK - 2 * K64, changedArea: [] }], 'auto', /no DiskChangeInfo covers bytes 65536-131071; give the result of every QueryChangedDiskAreas call from offset 0 to the disk's end/],
    ['vmware partial', { startOffset: 0, length: K64, changedArea: [] }, 'auto', /the map describes 65536 bytes, but the disk has 1048576/],
    ['vmware area outside', { startOffset: 0, length: DISK, changedArea: [{ start: DISK - 1, length: 2 }] }, 'auto', /the DiskChangeInfo\.changedArea\[0\] \(bytes 1048575-1048576\) lies outside the area it was queried for \(the DiskChangeInfo: bytes 0-1048575\)/],
    ['vmware negative', { startOffset: 0, length: DISK, changedArea: [{ start: -1, length: 2 }] }, 'auto', /changedArea\[0\]\.start must be a whole number of bytes, 0 or more, got -1/],
    ['thin block size', THIN_DELTA.replace('data_block_size="128"', 'data_block_size="0"'), 'auto', /data_block_size: "0" is not a whole number, 1 or more/],
    ['thin negative', THIN_DELTA.replace('begin="8"', 'begin="-8"'), 'auto', /<right_only begin="-8" length="1"\/> begin: "-8" is not a whole number, 0 or more/],
    ['thin no diff', '<superblock data_block_size="128">\n</superblock>\n', 'auto', /not thin_delta XML: no <superblock data_block_size=\.\.\.> with a <diff> in it/],
    ['thin unknown element', THIN_DELTA.replace('<same begin="3"', '<moved begin="3"'), 'auto', /not thin_delta XML: unexpected <moved begin="3" length="1"\/>/],
    ['thin text', THIN_DELTA.replace('</diff>', 'oops</diff>'), 'thin', /not thin_delta XML: text "oops" between tags/],
  ];
  for (const [what, input, format, message] of cases) {
    t.throws(() => parse(input, format), { constructor: InvalidInputError, code: 'CV_INVALID_INPUT', exitCode: 2, message }, what);
  }
  t.throws(() => checkCbtFormat('rbd-json', '--changed-format'), { code: 'CV_INVALID_INPUT', message: '--changed-format rbd-json: unknown format; use one of auto, chunkvault, rbd, thin, nbdinfo, qemu-map, vmware, text' });
});
