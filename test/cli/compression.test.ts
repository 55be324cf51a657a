/** One store, three codecs, through the real CLI: restore, verify, stats per codec, repair; and the compression options' bad input. */
import t from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { PACK_OVERHEAD_BYTES, RECORD_HEADER_BYTES, TABLE_ENTRY_BYTES } from '../../store/pack.js';
import type { StoreStats } from '../../engine/stats.js';
import { cli, cliJson, compressibleText, seededBytes, sha256File, tempDir, treeDigest } from '../helpers/index.js';

const CHUNK = 65536;
const TEXT_CHUNKS = 4;
const RANDOM_CHUNKS = 2;

/** 4 text chunks (compress well) then 2 random ones (never do), none shared with another seed's image. */
async function imageFor(dir: string, seed: number): Promise<string> {
  const path = join(dir, `disk-${seed}.img`);
  await fs.writeFile(path, Buffer.concat([compressibleText(TEXT_CHUNKS * CHUNK, seed), seededBytes(seed, RANDOM_CHUNKS * CHUNK)]));
  return path;
}

const BACKUPS = [
  { compression: 'lz4', seed: 1 },
  { compression: 'zstd:3', seed: 2 },
  { compression: 'none', seed: 3 },
];

function codecFigures(chunks: number, storedBytes: number): StoreStats['codecs']['raw'] {
  return { chunks, rawBytes: chunks * CHUNK, storedBytes, compressionRatio: storedBytes > 0 ? (chunks * CHUNK) / storedBytes : 1 };
}

t.test('a store holding lz4, zstd and raw records restores each backup, verifies clean, counts chunks per codec, and repair rebuilds the same', async (t) => {
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  await cliJson(['init', '--store', store, '--chunk-size', '64K']);
  const points: { id: string; image: string }[] = [];
  for (const { compression, seed } of BACKUPS) {
    const image = await imageFor(dir, seed);
    const { id } = await cliJson<{ id: string }>(['backup', '--store', store, '--name', `vm${seed}`, '--compression', compression, image]);
    points.push({ id, image });
  }
  for (const { id, image } of points) {
    const target = join(dir, `restored-${id}.img`);
    await cliJson(['restore', '--store', store, id, target]);
    t.equal(await sha256File(target), await sha256File(image), `restore point ${id} restores sha256-identical`);
  }
  t.match(await cliJson(['verify', '--store', store, '--read-data']), { clean: true, restorePoints: 3, chunksChecked: 18, damaged: [] });

  const stats = await cliJson<StoreStats>(['stats', '--store', store]);
  // Random chunks are raw whatever the backup asked for; the none backup stores its text raw too.
  const rawChunks = BACKUPS.length * RANDOM_CHUNKS + TEXT_CHUNKS;
  t.same(stats.codecs.raw, codecFigures(rawChunks, rawChunks * (RECORD_HEADER_BYTES + CHUNK)));
  t.match(stats.codecs, { lz4: { chunks: TEXT_CHUNKS, rawBytes: TEXT_CHUNKS * CHUNK }, zstd: { chunks: TEXT_CHUNKS, rawBytes: TEXT_CHUNKS * CHUNK } });
  for (const name of ['lz4', 'zstd'] as const) {
    const codec = stats.codecs[name];
    t.ok(codec.storedBytes < codec.rawBytes / 4, `${name} text is stored in ${codec.storedBytes} bytes`);
    t.equal(codec.compressionRatio, codec.rawBytes / codec.storedBytes, `${name} ratio`);
  }
  const all = Object.values(stats.codecs);
  t.equal(stats.uniqueChunks, 18);
  t.equal(all.reduce((sum, c) => sum + c.chunks, 0), stats.uniqueChunks, 'the codecs add up to the unique chunks');
  t.equal(all.reduce((sum, c) => sum + c.storedBytes, 0), stats.storedBytes, '... and to the stored bytes');
  t.equal(stats.storedBytes + stats.uniqueChunks * TABLE_ENTRY_BYTES + stats.packs * PACK_OVERHEAD_BYTES, stats.packBytes, 'every record in the packs is indexed: the rest is their tables');

  const human = await cli(['stats', '--store', store]);
  t.equal(human.code, 0);
  t.match(human.stdout, new RegExp(`^  raw +${rawChunks} chunks +640 KiB -> 640 KiB +ratio 1\\.00$`, 'm'));
  t.match(human.stdout, /^ {2}lz4 +4 chunks +256 KiB -> .+ ratio \d+\.\d\d$/m);
  t.match(human.stdout, /^ {2}zstd +4 chunks +256 KiB -> .+ ratio \d+\.\d\d$/m);

  await fs.rm(join(store, 'index'), { recursive: true });
  await fs.rm(join(store, 'segments'), { recursive: true, force: true });
  t.match(await cliJson(['repair', '--store', store]), { chunksFound: 18, duplicates: 0, damagedRanges: [], entriesAdded: 18, indexEntriesAfter: 18 });
  t.same((await cliJson<StoreStats>(['stats', '--store', store])).codecs, stats.codecs, 'the rebuilt index has every chunk under its codec');
  t.match(await cliJson(['verify', '--store', store, '--read-data']), { clean: true, chunksChecked: 18 });
  const target = join(dir, 'after-repair.img');
  await cliJson(['restore', '--store', store, points[1].id, target]);
  t.equal(await sha256File(target), await sha256File(points[1].image), 'the zstd backup restores after the repair');
});

t.test('bad --compression and config options: exit 2, one line, the store unchanged', async (t) => {
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  const image = await imageFor(dir, 9);
  await cliJson(['init', '--store', store, '--chunk-size', '64K']);
  await cliJson(['backup', '--store', store, image]);
  const before = await treeDigest(store);
  const compression = (option: string, value: string): string => `${option}: '${value}' is not a compression (use lz4, none, zstd or zstd:LEVEL with LEVEL 1-19)`;
  const level = (option: string, n: number): string => `${option}: zstd level ${n} is out of range (1-19)`;
  const onlyZstd = (value: string): string => `--gc-recompress: recompresses with zstd[:LEVEL] only, not '${value}'`;
  const cases: [string, string[], string][] = [
    ['backup, unknown codec', ['backup', '--store', store, '--compression', 'gzip', image], compression('--compression', 'gzip')],
    ['backup, zstd:0', ['backup', '--store', store, '--compression', 'zstd:0', image], level('--compression', 0)],
    ['backup, zstd:20', ['backup', '--store', store, '--compression', 'zstd:20', image], level('--compression', 20)],
    ['backup, lz4:3', ['backup', '--store', store, '--compression', 'lz4:3', image], compression('--compression', 'lz4:3')],
    ['backup, empty', ['backup', '--store', store, '--compression', '', image], compression('--compression', '')],
    ['config, unknown codec', ['config', '--store', store, '--compression', 'brotli'], compression('--compression', 'brotli')],
    ['config, zstd:0', ['config', '--store', store, '--compression', 'zstd:0'], level('--compression', 0)],
    ['config, zstd:20', ['config', '--store', store, '--compression', 'zstd:20'], level('--compression', 20)],
    ['config, lz4:3', ['config', '--store', store, '--compression', 'lz4:3'], compression('--compression', 'lz4:3')],
    ['config, --gc-older-than alone', ['config', '--store', store, '--gc-older-than', '3d'], '--gc-older-than goes with --gc-recompress'],
    ['config, --gc-older-than with --no-gc-recompress', ['config', '--store', store, '--no-gc-recompress', '--gc-older-than', '3d'], '--gc-older-than goes with --gc-recompress, not --no-gc-recompress'],
    ['config, --gc-recompress lz4', ['config', '--store', store, '--gc-recompress', 'lz4'], onlyZstd('lz4')],
    ['config, --gc-recompress zstd:20', ['config', '--store', store, '--gc-recompress', 'zstd:20'], level('--gc-recompress', 20)],
    ['config, a good codec with a bad one', ['config', '--store', store, '--compression', 'zstd:9', '--gc-recompress', 'none'], onlyZstd('none')],
  ];
  for (const [what, args, message] of cases) {
    const result = await cli(args);
    t.equal(result.code, 2, `${what}: exit 2`);
    t.equal(result.stderr, `chunkvault: ${message}\n`, `${what}: one line`);
  }
  t.equal(await treeDigest(store), before, 'the store is byte for byte unchanged');

  const fresh = join(dir, 'fresh');
  const init = await cli(['init', '--store', fresh, '--compression', 'zstd:20']);
  t.equal(init.code, 2);
  t.equal(init.stderr, `chunkvault: ${level('--compression', 20)}\n`);
  await t.rejects(fs.access(fresh), 'init with a bad --compression creates nothing');
});
