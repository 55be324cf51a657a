import t from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import {
  Codec,
  PackWriter,
  RECORD_HEADER_BYTES,
  checkRecords,
  decodeRecord,
  decodeRecordHeader,
  encodePayload,
  encodeRecordHeader,
  recordIds,
  packKey,
} from '../../store/pack.js';
import { FsBackend } from '../../store/backend/fs.js';
import { chunkId, loadHasher, isAllZero } from '../../store/chunk-id.js';
import { compressibleText, seededBytes, tempDir } from '../helpers/index.js';

await loadHasher();

/** What a pack of `records` records ends with: its table (an entry per record) and the trailer. */
function tableBytes(records: number): number {
  return records * (8 + RECORD_HEADER_BYTES - 4) + 32;
}

function record(data: Buffer): Buffer {
  const { codec, payload } = encodePayload(data);
  const header = Buffer.alloc(RECORD_HEADER_BYTES);
  encodeRecordHeader({ codec, level: 0, settled: false, rawLength: data.length, storedLength: payload.length, id: chunkId(data) }, header);
  return Buffer.concat([header, payload]);
}

t.test('records round trip; text is compressed, random data stored raw', async (t) => {
  const text = compressibleText(65536);
  const random = seededBytes(1, 65536);
  t.equal(encodePayload(text).codec, Codec.Lz4);
  t.ok(encodePayload(text).payload.length < text.length / 2);
  t.equal(encodePayload(random).codec, Codec.Raw);
  for (const data of [text, random]) {
    const decoded = decodeRecord(record(data), chunkId(data));
    t.ok('data' in decoded && decoded.data.equals(data));
  }
  const header = decodeRecordHeader(record(text));
  t.equal(header?.rawLength, 65536);
  t.same(header?.id, chunkId(text));
});

t.test('damage is reported, never returned as data', async (t) => {
  const data = compressibleText(65536);
  const rec = record(data);
  const flipped = Buffer.from(rec);
  flipped[RECORD_HEADER_BYTES + 100] ^= 0xff;
  t.match(decodeRecord(flipped, chunkId(data)), { problem: /decode|hash|length/ });
  t.same(decodeRecord(rec, chunkId(Buffer.from('other'))), { problem: 'header' });
  const badMagic = Buffer.from(rec);
  badMagic[0] = 0;
  t.same(decodeRecord(badMagic, chunkId(data)), { problem: 'header' });
  const raw = record(seededBytes(2, 4096));
  raw[RECORD_HEADER_BYTES] ^= 1;
  t.same(decodeRecord(raw, chunkId(seededBytes(2, 4096))), { problem: 'hash' });
});

t.test('writer rolls over at the cap; the header walk skips a torn tail and damage; checkRecords finds damage', async (t) => {
  const backend = new FsBackend(await tempDir(t));
  const writer = new PackWriter(backend, 100_000);
  const chunks = [1, 2, 3].map((seed) => seededBytes(seed, 60_000));
  const places = [];
  for (const c of chunks) places.push(await writer.append([record(c)]));
  await writer.sync();
  await writer.close();
  t.equal(new Set(places.map((p) => p.pack)).size, 3, 'each 60 kB record exceeds what is left of a 100 kB pack');
  t.same(writer.packsWritten, places.map((p) => p.pack));
  const pack = places[0].pack;
  t.same(await recordIds(backend, pack), [chunkId(chunks[0])]);
  await fs.writeFile(backend.pathOf(packKey('torn')), Buffer.concat([record(chunks[0]), record(chunks[1]).subarray(0, 1000)]));
  t.same(await recordIds(backend, 'torn'), [chunkId(chunks[0])], 'a torn record at the end of a pack without a table is not listed');
  // Damage in the middle hides nothing after it: the walk resumes at the next record.
  const [first, second] = [record(chunks[1]), record(chunks[2])];
  first.fill(0xff, 0, 8);
  await fs.writeFile(backend.pathOf(packKey('damaged')), Buffer.concat([record(chunks[0]), first, second]));
  t.same(await recordIds(backend, 'damaged'), [chunkId(chunks[0]), chunkId(chunks[2])], 'the record after a damaged header is found');
  const good = { offset: 0, storedLength: 60_000, id: chunkId(chunks[0]) };
  t.same(await checkRecords(backend, pack, [good, { ...good, id: chunkId(chunks[1]) }]), [null, 'header']);
  t.same(await checkRecords(backend, 'missing', [good]), ['pack missing']);
});

t.test('zero detection', async (t) => {
  t.ok(isAllZero(Buffer.alloc(9 * 1024 * 1024)));
  const b = Buffer.alloc(1048577);
  b[1048576] = 1;
  t.notOk(isAllZero(b));
  t.notOk(isAllZero(Buffer.from([0, 0, 0, 1])));
});

t.test('writes happen behind append: sync waits for them, and a failed write fails sync and every later append', async (t) => {
  const backend = new FsBackend(await tempDir(t));
  const writer = new PackWriter(backend);
  // Over several stages, so stage writes overlap appends, and a tail that ends mid-block.
  const chunks = [4, 5, 6].map((seed) => seededBytes(seed, 7_000_001));
  const places: { pack: string; offset: number }[] = [];
  for (const c of chunks) places.push(await writer.append([record(c)]));
  await writer.sync();
  const pack = places[0].pack;
  t.equal((await fs.stat(backend.pathOf(packKey(pack)))).size, 3 * (RECORD_HEADER_BYTES + 7_000_001) + tableBytes(3), 'no padding past the last record and the table');
  t.same(
    await checkRecords(backend, pack, chunks.map((c, i) => ({ offset: places[i].offset, storedLength: 7_000_001, id: chunkId(c) }))),
    [null, null, null],
    'every record is in place once sync returns',
  );
  const more = await writer.append([record(chunks[0])]);
  await writer.sync();
  t.not(more.pack, pack, 'sync finished the pack: the next append starts a new one');
  t.same(await checkRecords(backend, more.pack, [{ offset: more.offset, storedLength: 7_000_001, id: chunkId(chunks[0]) }]), [null]);
  await writer.close();

  // The packs directory is a file: the first upload fails, and so does every later call.
  const blocked = await tempDir(t);
  await fs.writeFile(join(blocked, 'packs'), '');
  const failing = new PackWriter(new FsBackend(blocked));
  await t.rejects(failing.append([record(chunks[0])]), { code: 'EEXIST' });
  await t.rejects(failing.append([record(chunks[1])]), { code: 'EEXIST' }, 'the first failure fails every later append');
  await t.rejects(failing.sync(), { code: 'EEXIST' });
  await failing.close();
});
