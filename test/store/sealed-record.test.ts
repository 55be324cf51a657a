/**
 * Pack records of an encrypted store: the payload sealed and bound to the chunk id and the
 * header fields that say how to decode it, the id keyed; an edited header, a payload from
 * another record, or another store's keys is damage ('seal'), never data.
 */
import t from 'tap';
import { Codec, RECORD_HEADER_BYTES, decodeRecord, decodeRecordHeader, encodeRecordHeader, recordBound, writeRecord } from '../../store/pack.js';
import { chunkId, loadHasher } from '../../store/chunk-id.js';
import { DEFAULT_COMPRESSION } from '../../store/compression.js';
import { SEAL_OVERHEAD, newMasterKey, storeKeys } from '../../store/crypto.js';
import { compressibleText, seededBytes } from '../helpers/index.js';

await loadHasher();
const keys = storeKeys('chacha20-poly1305', newMasterKey());

function sealedRecord(data: Buffer, compression = DEFAULT_COMPRESSION): { record: Buffer; id: Buffer } {
  const id = chunkId(data, keys.chunkIdKey);
  const into = Buffer.alloc(recordBound(data.byteLength, compression));
  const length = writeRecord(data, id, into, 0, compression, keys);
  return { record: into.subarray(0, length), id };
}

t.test('chunk ids are keyed: the same bytes, another id than plain BLAKE3 and than another key', async (t) => {
  const data = seededBytes(1, 65536);
  t.not(chunkId(data, keys.chunkIdKey).toString('hex'), chunkId(data).toString('hex'));
  t.not(chunkId(data, keys.chunkIdKey).toString('hex'), chunkId(data, storeKeys('chacha20-poly1305', newMasterKey()).chunkIdKey).toString('hex'));
  t.same(chunkId(data, keys.chunkIdKey), chunkId(Buffer.from(data), keys.chunkIdKey), 'and the same id each time: dedup works');
});

t.test('a sealed record round trips; its stored length counts the seal', async (t) => {
  for (const data of [compressibleText(65536), seededBytes(2, 65536)]) {
    const { record, id } = sealedRecord(data);
    const header = decodeRecordHeader(record)!;
    t.equal(record.byteLength, RECORD_HEADER_BYTES + header.storedLength);
    const decoded = decodeRecord(record, id, undefined, keys);
    t.ok('data' in decoded && decoded.data.equals(data), `codec ${header.codec} round trips`);
  }
  const random = seededBytes(3, 65536);
  t.equal(decodeRecordHeader(sealedRecord(random).record)!.storedLength, random.byteLength + SEAL_OVERHEAD, 'raw: the bytes and the seal');
  t.equal(sealedRecord(random).record.subarray(RECORD_HEADER_BYTES).indexOf(random.subarray(0, 64)), -1, 'no plaintext in the payload');
});

t.test('a flipped bit, an edited header, a swapped payload or another key: seal, never data', async (t) => {
  const data = compressibleText(65536);
  const { record, id } = sealedRecord(data);
  const flipped = Buffer.from(record);
  flipped[RECORD_HEADER_BYTES + 40] ^= 1;
  t.same(decodeRecord(flipped, id, undefined, keys), { problem: 'seal' }, 'a flipped bit');

  const header = decodeRecordHeader(record)!;
  for (const edit of [{ rawLength: header.rawLength - 1 }, { codec: Codec.Zstd, level: 3 }]) {
    const edited = Buffer.from(record);
    encodeRecordHeader({ ...header, ...edit }, edited);
    t.same(decodeRecord(edited, id, undefined, keys), { problem: 'seal' }, `header edited: ${JSON.stringify(edit)}`);
  }
  const settled = Buffer.from(record);
  encodeRecordHeader({ ...header, settled: true }, settled);
  t.ok('data' in decodeRecord(settled, id, undefined, keys), "the settled flag is gc's hint, not bound: recompression sets it on a sealed record");

  const other = sealedRecord(compressibleText(65536, 9));
  const swapped = Buffer.concat([other.record.subarray(0, RECORD_HEADER_BYTES), record.subarray(RECORD_HEADER_BYTES)]);
  encodeRecordHeader({ ...decodeRecordHeader(other.record)!, storedLength: header.storedLength, rawLength: header.rawLength }, swapped);
  t.same(decodeRecord(swapped, other.id, undefined, keys), { problem: 'seal' }, "another chunk's payload under this header");

  t.same(decodeRecord(record, id, undefined, storeKeys('chacha20-poly1305', newMasterKey())), { problem: 'seal' }, "another store's keys");
  t.notOk('data' in decodeRecord(record, id), 'read as a plain record, sealed bytes are no chunk');
});
