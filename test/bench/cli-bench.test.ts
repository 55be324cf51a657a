/** `chunkvault bench`: the built-in quick benchmark reports every figure, each positive. */
import t from 'tap';
import type { AeadLimit, ZstdLimit } from '../../bench/limits.js';
import { MiB, cli, cliJson } from '../helpers/index.js';

const FIELDS = ['cores', 'threads', 'dataBytes', 'blake3MBps', 'lz4CompressMBps', 'lz4DecompressMBps', 'lz4Ratio', 'backupMBps', 'restoreMBps', 'seconds'];

t.test('bench --json', async (t) => {
  const { zstd, aead, ...result } = await cliJson<Record<string, number> & { zstd: ZstdLimit[]; aead: AeadLimit[] }>(['bench', '--threads', '1']);
  t.same(Object.keys(result).sort(), [...FIELDS].sort());
  for (const field of FIELDS) t.ok(typeof result[field] === 'number' && result[field] > 0 && Number.isFinite(result[field]), `${field} = ${result[field]}`);
  t.same(zstd.map((z) => [z.level, z.sampleBytes]), [[1, 16 * MiB], [3, 16 * MiB], [9, 16 * MiB], [19, 2 * MiB]], 'zstd levels 1, 3, 9 and 19, the last on a small sample');
  for (const z of zstd) {
    for (const field of ['compressMBps', 'decompressMBps', 'ratio'] as const) t.ok(z[field] > 0 && Number.isFinite(z[field]), `zstd:${z.level} ${field} = ${z[field]}`);
    t.ok(z.ratio > 1.2, `zstd:${z.level} compresses the generated data`);
  }
  t.same(aead.map((a) => [a.cipher, a.recordBytes]), [['aes-256-gcm', MiB], ['aes-256-gcm', 4 * MiB], ['chacha20-poly1305', MiB], ['chacha20-poly1305', 4 * MiB]]);
  for (const a of aead) for (const field of ['sealMBps', 'openMBps'] as const) t.ok(a[field] > 0 && Number.isFinite(a[field]), `${a.cipher} ${a.recordBytes} ${field} = ${a[field]}`);
  t.equal(result.threads, 1);
  t.equal(result.dataBytes, 128 * MiB);
  t.ok(result.lz4Ratio > 1.2, 'the generated data compresses');
});

t.test('bench rejects a bad --threads before doing anything', async (t) => {
  const result = await cli(['bench', '--threads', '0']);
  t.equal(result.code, 2);
  t.match(result.stderr, /--threads: '0' is not a positive whole number/);
});
