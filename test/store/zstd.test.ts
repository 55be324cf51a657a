/** zstd records: levels, the raw fallback, damaged frames and the header bytes that say zstd. */
import t from 'tap';
import { Codec, RECORD_HEADER_BYTES, decodeRecord, decodeRecordHeader, encodeRecordHeader, recordBound, writeRecord } from '../../store/pack.js';
import type { Compression } from '../../store/compression.js';
import { chunkId, loadHasher } from '../../store/chunk-id.js';
import { compressibleText, seededBytes } from '../helpers/index.js';

await loadHasher();

const CHUNK = 65536;

function zstdRecord(data: Buffer, level: number): Buffer {
  const compression: Compression = { codec: 'zstd', level };
  const into = Buffer.alloc(recordBound(data.byteLength, compression));
  return into.subarray(0, writeRecord(data, chunkId(data), into, 0, compression));
}

t.test('zstd records round trip at levels 1, 3 and 19; random data falls back to raw', async (t) => {
  const text = compressibleText(CHUNK);
  const random = seededBytes(7, CHUNK);
  const stored: number[] = [];
  for (const level of [1, 3, 19]) {
    const record = zstdRecord(text, level);
    t.match(decodeRecordHeader(record), { codec: Codec.Zstd, level, settled: false, rawLength: CHUNK, storedLength: record.byteLength - RECORD_HEADER_BYTES }, `text at level ${level}`);
    t.ok(record.byteLength - RECORD_HEADER_BYTES < CHUNK / 4, `text compresses at level ${level}: ${record.byteLength - RECORD_HEADER_BYTES} bytes`);
    const decoded = decodeRecord(record, chunkId(text));
    t.ok('data' in decoded && decoded.data.equals(text), `text decodes at level ${level}`);
    stored.push(record.byteLength);

    const raw = zstdRecord(random, level);
    t.match(decodeRecordHeader(raw), { codec: Codec.Raw, level: 0, storedLength: CHUNK }, `random data at level ${level} is stored raw`);
    const back = decodeRecord(raw, chunkId(random));
    t.ok('data' in back && back.data.equals(random), `random data decodes at level ${level}`);
  }
  t.ok(stored[2] <= stored[0], `level 19 (${stored[2]} bytes) is no larger than level 1 (${stored[0]})`);
  const into = Buffer.alloc(CHUNK);
  const decoded = decodeRecord(zstdRecord(text, 3), chunkId(text), into);
  t.ok('data' in decoded && decoded.data.buffer === into.buffer && decoded.data.equals(text), "decodes into the caller's buffer");
});

t.test('a damaged zstd payload is a decode or hash problem, never other bytes', async (t) => {
  const text = compressibleText(CHUNK, 3);
  const id = chunkId(text);
  const record = zstdRecord(text, 3);
  const problems = new Map<string, number>();
  for (let at = RECORD_HEADER_BYTES; at < record.byteLength; at++) {
    const damaged = Buffer.from(record);
    damaged[at] ^= 0xff;
    const result = decodeRecord(damaged, id);
    // A few bits of a frame do not change what it decodes to (table padding); those give the chunk back whole.
    const kind = 'data' in result ? (result.data.equals(text) ? 'same data' : 'OTHER DATA') : result.problem;
    problems.set(kind, (problems.get(kind) ?? 0) + 1);
  }
  const counts = Object.fromEntries(problems);
  t.same(Object.keys(counts).filter((kind) => !['decode', 'hash', 'same data'].includes(kind)), [], `every flipped byte: ${JSON.stringify(counts)}`);
  t.ok((counts.decode ?? 0) > 0 && (counts.hash ?? 0) > 0, 'both kinds are met');
  t.ok((counts['same data'] ?? 0) < 10, 'nearly every flip is caught');

  const torn = Buffer.from(record.subarray(0, record.byteLength - 100));
  encodeRecordHeader({ ...decodeRecordHeader(record)!, storedLength: torn.byteLength - RECORD_HEADER_BYTES }, torn);
  t.same(decodeRecord(torn, id), { problem: 'decode' }, 'a frame cut short');
  const garbage = Buffer.concat([record.subarray(0, RECORD_HEADER_BYTES), seededBytes(9, record.byteLength - RECORD_HEADER_BYTES)]);
  t.same(decodeRecord(garbage, id), { problem: 'decode' }, 'bytes that are no frame');
});

t.test('header bytes: codec, flags and level are checked; anything else is not a header', async (t) => {
  const text = compressibleText(CHUNK);
  const header = Buffer.alloc(RECORD_HEADER_BYTES);
  const base = { codec: Codec.Zstd, level: 3, settled: false, rawLength: CHUNK, storedLength: 1000, id: chunkId(text) };
  const encoded = (changes: Partial<typeof base>): Buffer => {
    encodeRecordHeader({ ...base, ...changes }, header);
    return Buffer.from(header);
  };
  t.match(decodeRecordHeader(encoded({})), { codec: Codec.Zstd, level: 3, settled: false });
  t.match(decodeRecordHeader(encoded({ settled: true })), { settled: true }, 'flags 1: settled');
  t.match(decodeRecordHeader(encoded({ level: 19 })), { level: 19 });
  t.match(decodeRecordHeader(encoded({ codec: Codec.Lz4, level: 0 })), { codec: Codec.Lz4, level: 0 });
  t.equal(decodeRecordHeader(encoded({ codec: 3 as Codec })), null, 'codec 3');
  t.equal(decodeRecordHeader(encoded({ level: 0 })), null, 'zstd with level 0');
  t.equal(decodeRecordHeader(encoded({ level: 20 })), null, 'zstd with level 20');
  t.equal(decodeRecordHeader(encoded({ codec: Codec.Lz4, level: 5 })), null, 'lz4 with level 5');
  t.equal(decodeRecordHeader(encoded({ codec: Codec.Raw, level: 1 })), null, 'raw with level 1');
  const flags = encoded({});
  flags[5] = 2;
  t.equal(decodeRecordHeader(flags), null, 'flags 2');
  const reserved = encoded({});
  reserved[7] = 1;
  t.equal(decodeRecordHeader(reserved), null, 'the reserved byte set');
});
