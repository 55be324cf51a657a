import t, { type Test } from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import {
  Codec,
  PACK_OVERHEAD_BYTES,
  PackWriter,
  TABLE_ENTRY_BYTES,
  RECORD_HEADER_BYTES,
  checkRecords,
  decodeRecord,
  decodeRecordHeader,
  encodePayload,
  encodeRecordHeader,
  recordIds,
  recoverPack,
  readPackTable,
  packKey,
} from '../../store/pack.js';
import { FsBackend } from '../../store/backend/fs.js';
import { chunkId, loadHasher, isAllZero } from '../../store/chunk-id.js';
import { compressibleText, seededBytes, tempDir } from '../helpers/index.js';

await loadHasher();

/** What a pack of `records` records ends with: its table (an entry per record) and the trailer. */
function tableBytes(records: number): number {
  return records * TABLE_ENTRY_BYTES + PACK_OVERHEAD_BYTES;
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

/** A pack of `chunks` written by a PackWriter (so it ends in its table), and where each record went. */
async function writtenPack(t: Test, backend: FsBackend, chunks: Buffer[]): Promise<{ pack: string; offsets: number[]; path: string }> {
  const writer = new PackWriter(backend);
  const places = [];
  for (const c of chunks) places.push(await writer.append([record(c)]));
  await writer.sync();
  await writer.close();
  t.equal(new Set(places.map((p) => p.pack)).size, 1, 'one pack');
  return { pack: places[0].pack, offsets: places.map((p) => p.offset), path: backend.pathOf(packKey(places[0].pack)) };
}

t.test('a written pack ends in its record table: read from the tail alone, it lists every record', async (t) => {
  const backend = new FsBackend(await tempDir(t));
  const chunks = [compressibleText(70_000, 1), seededBytes(7, 65_536), compressibleText(100_000, 2)];
  const { pack, offsets, path } = await writtenPack(t, backend, chunks);
  const size = (await fs.stat(path)).size;
  const table = await readPackTable(backend, pack, size);
  t.same(
    table?.records.map((r) => ({ offset: r.offset, id: r.header.id, rawLength: r.header.rawLength, codec: r.header.codec })),
    chunks.map((c, i) => ({ offset: offsets[i], id: chunkId(c), rawLength: c.length, codec: i === 1 ? Codec.Raw : Codec.Lz4 })),
  );
  t.equal(table?.tableOffset, size - tableBytes(3), 'the table and its trailer are the last bytes');
  const recovered = await recoverPack(backend, pack);
  t.same(recovered, { records: table!.records, damaged: [], size }, 'recoverPack stops at the table: it is no damage');
  // With every record's bytes gone, the table alone still lists them: recordIds reads no record.
  const bytes = await fs.readFile(path);
  bytes.fill(0, 0, table!.tableOffset);
  await fs.writeFile(path, bytes);
  t.same(await recordIds(backend, pack), chunks.map((c) => chunkId(c)));
});

t.test('a pack without a table is walked; one whose table has a flipped byte is walked too, with the same ids', async (t) => {
  const backend = new FsBackend(await tempDir(t));
  const chunks = [compressibleText(70_000, 3), seededBytes(8, 65_536), compressibleText(90_000, 4)];
  const ids = chunks.map((c) => chunkId(c));
  const { pack, path } = await writtenPack(t, backend, chunks);
  const written = await fs.readFile(path);
  const tableOffset = written.length - tableBytes(chunks.length);

  const plain = Buffer.concat(chunks.map(record));
  await fs.writeFile(backend.pathOf(packKey('plain')), plain);
  t.equal(await readPackTable(backend, 'plain', plain.length), null, 'an old pack has no table');
  t.same(await recordIds(backend, 'plain'), ids);
  t.match(await recoverPack(backend, 'plain'), { damaged: [], size: plain.length });

  // A byte of an entry's offset, of an entry's header, of an id, the checksum, the table's offset, the magic.
  for (const at of [tableOffset + 3, tableOffset + 8 + 3, tableOffset + 60, written.length - 20, written.length - 30, written.length - 1]) {
    const flipped = Buffer.from(written);
    flipped[at] ^= 0x10;
    await fs.writeFile(path, flipped);
    t.equal(await readPackTable(backend, pack, flipped.length), null, `a flip at ${at - tableOffset} of the table is found`);
    t.same(await recordIds(backend, pack), ids, 'the header walk finds every record');
    const recovered = await recoverPack(backend, pack);
    t.same(recovered.records.map((r) => r.header.id), ids);
    t.same(recovered.damaged, [{ offset: tableOffset, length: flipped.length - tableOffset }], 'the damaged table is the damage');
  }
});

t.test('recoverPack reads a pack in windows: records across window edges, and past damage, are found', async (t) => {
  const backend = new FsBackend(await tempDir(t));
  const chunks = Array.from({ length: 12 }, (_, i) => seededBytes(20 + i, 1024 * 1024));
  const records = chunks.map(record);
  records[5].fill(0xff, 0, 8);
  const bytes = Buffer.concat(records);
  await fs.mkdir(join(backend.dir, 'packs'));
  await fs.writeFile(backend.pathOf(packKey('big')), bytes);
  const recovered = await recoverPack(backend, 'big');
  t.same(recovered.records.map((r) => r.header.id), chunks.filter((_, i) => i !== 5).map((c) => chunkId(c)));
  t.same(recovered.damaged, [{ offset: 5 * records[0].length, length: records[0].length }], 'only the damaged record is lost');
  t.same(await recordIds(backend, 'big'), chunks.filter((_, i) => i !== 5).map((c) => chunkId(c)));
});
