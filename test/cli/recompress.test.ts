/** `gc --recompress` through the CLI: output, the standing order, kill -9 at gc's steps, bad input. */
import t, { type Test } from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { MiB, cli, cliJson, tempDir, treeDigest, writeImage, restoresIdentically } from '../helpers/index.js';
import { TABLE_ENTRY_BYTES } from '../../store/pack.js';

interface StatsJson {
  packs: number;
  packBytes: number;
  storedBytes: number;
  reclaimableBytes: number;
}

interface GcJson {
  packsRewritten: number;
  packsDamaged: string[];
  recompression: { compression: string; olderThanSeconds: number; packs: number; liveBytes: number; recordsTried: number; recordsRecompressed: number; recordsSettled: number; bytesBefore: number; bytesAfter: number } | null;
}

const RECOMPRESS = ['--recompress', 'zstd:3', '--older-than', '0'];

/** Two LZ4 backups of random and text data (one pack each), made once; each test works on a copy. */
const base = await (async () => {
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  await cliJson(['init', '--store', store, '--chunk-size', '64K', '--compression', 'lz4']);
  const images: string[] = [];
  const ids: string[] = [];
  for (let k = 1; k <= 2; k++) {
    const image = join(dir, `v${k}.img`);
    await writeImage(image, [
      { kind: 'random', bytes: MiB, seed: 20 + k },
      { kind: 'text', bytes: k * MiB },
    ]);
    images.push(image);
    ids.push((await cliJson<{ id: string }>(['backup', '--store', store, `disk=${image}`, '--name', 'vm', '--time', `2026-11-0${k}T08:00:00Z`, '--threads', '1'])).id);
  }
  return { store, images, ids };
})();

async function copyOfBase(t: Test, name = 'store'): Promise<{ dir: string; store: string }> {
  const dir = await tempDir(t);
  const store = join(dir, name);
  await fs.cp(base.store, store, { recursive: true });
  return { dir, store };
}

async function everyPointRestores(t: Test, store: string, dir: string, what: string): Promise<void> {
  t.equal((await cli(['verify', '--store', store, '--read-data'])).code, 0, `${what}: verify --read-data is clean`);
  for (const [i, id] of base.ids.entries()) await restoresIdentically(t, store, id, base.images[i], join(dir, `${what}-${i}.img`));
}

t.test('gc --recompress zstd:3 --older-than 0 rewrites both packs smaller, and a second gc recompresses nothing', async (t) => {
  const { dir, store } = await copyOfBase(t);
  const before = await cliJson<StatsJson>(['stats', '--store', store]);

  const dry = await cli(['gc', '--store', store, ...RECOMPRESS, '--dry-run']);
  t.equal(dry.code, 0);
  t.match(dry.stdout, new RegExp(`^recompression +2 packs \\(.+ of live data, 64 records to try\\) would be recompressed \\(zstd:3, packs older than 0 s\\)$`, 'm'));
  t.match(await cliJson<StatsJson>(['stats', '--store', store]), { packBytes: before.packBytes }, 'the dry run changed nothing');

  const report = await cliJson<GcJson>(['gc', '--store', store, ...RECOMPRESS]);
  t.match(report, { packsRewritten: 2, packsDamaged: [], recompression: { compression: 'zstd:3', packs: 2, liveBytes: before.storedBytes + 64 * TABLE_ENTRY_BYTES, recordsTried: 64, recordsRecompressed: 32, recordsSettled: 32 } });
  const after = await cliJson<StatsJson>(['stats', '--store', store]);
  t.equal(after.storedBytes, before.storedBytes - (report.recompression!.bytesBefore - report.recompression!.bytesAfter), 'stats shows the bytes recompression saved');
  t.ok(after.packBytes < before.packBytes, `pack bytes ${before.packBytes} -> ${after.packBytes}`);
  t.equal(after.reclaimableBytes, 0);
  await everyPointRestores(t, store, dir, 'recompressed');

  const digest = await treeDigest(join(store, 'packs'));
  const again = await cli(['gc', '--store', store, ...RECOMPRESS]);
  t.equal(again.code, 0);
  t.match(again.stdout, /^recompression +0 packs \(0 B of live data\) recompressed \(zstd:3, packs older than 0 s\) in [\d.]+ s, [\d.]+ MB\/s$/m);
  t.match(again.stdout, /^records +0 recompressed, 0 settled \(zstd saved too little\): 0 B -> 0 B$/m);
  t.equal(await treeDigest(join(store, 'packs')), digest, 'the second gc left the packs as they were');
});

t.test("config --gc-recompress zstd:5 --gc-older-than 0 makes a plain gc recompress", async (t) => {
  const { dir, store } = await copyOfBase(t);
  t.match(await cliJson<GcJson>(['gc', '--store', store]), { packsRewritten: 0, recompression: null }, 'no standing order: nothing recompressed');
  await cliJson(['config', '--store', store, '--gc-recompress', 'zstd:5', '--gc-older-than', '0']);
  t.match(await cliJson<GcJson>(['gc', '--store', store]), { packsRewritten: 2, recompression: { compression: 'zstd:5', olderThanSeconds: 0, packs: 2, recordsRecompressed: 32, recordsSettled: 32 } });
  t.match(await cliJson<GcJson>(['gc', '--store', store]), { packsRewritten: 0, recompression: { packs: 0 } }, 'the next plain gc finds nothing to try');
  await everyPointRestores(t, store, dir, 'standing');
});

t.test('a recompressing gc killed after the copy or after the index move loses nothing, and the next gc finishes', async (t) => {
  const reference = await copyOfBase(t, 'reference');
  await cliJson(['gc', '--store', reference.store, ...RECOMPRESS]);
  const finished = await cliJson<StatsJson>(['stats', '--store', reference.store]);
  for (const step of ['gc-after-copy', 'gc-after-index']) {
    const { dir, store } = await copyOfBase(t, step);
    const killed = await cli(['gc', '--store', store, ...RECOMPRESS], { CHUNKVAULT_TEST_CRASH_AT: step });
    t.equal(killed.code, -1, `${step}: gc was killed there (the step was reached)`);
    await everyPointRestores(t, store, dir, step);
    const next = await cliJson<GcJson>(['gc', '--store', store, ...RECOMPRESS]);
    t.equal(next.recompression!.packs, step === 'gc-after-copy' ? 2 : 0, `${step}: the next gc recompresses what the index still points to`);
    const after = await cliJson<StatsJson>(['stats', '--store', store]);
    t.match(after, { packs: finished.packs, packBytes: finished.packBytes, storedBytes: finished.storedBytes, reclaimableBytes: 0 }, `${step}: the next gc ends where an uninterrupted gc ends`);
    await everyPointRestores(t, store, dir, `${step}-after`);
  }
});

t.test('bad --recompress and --older-than: one line, exit 2, the store unchanged', async (t) => {
  const { store } = await copyOfBase(t);
  const before = await treeDigest(store);
  const cases: [string, string[], RegExp][] = [
    ['unknown codec', ['--recompress', 'brotli'], /^chunkvault: --recompress: 'brotli' is not a compression \(use lz4, none, zstd or zstd:LEVEL with LEVEL 1-19\)$/],
    ['level out of range', ['--recompress', 'zstd:20'], /^chunkvault: --recompress: zstd level 20 is out of range \(1-19\)$/],
    ['level 0', ['--recompress', 'zstd:0', '--older-than', '0'], /^chunkvault: --recompress: zstd level 0 is out of range \(1-19\)$/],
    ['lz4', ['--recompress', 'lz4', '--older-than', '0'], /^chunkvault: --recompress: recompresses with zstd\[:LEVEL\] only, not 'lz4'$/],
    ['age that does not parse', ['--recompress', 'zstd', '--older-than', '7 days'], /^chunkvault: --older-than: '7 days' is not an age \(e\.g\. 7d, 2w, 12h, 1d12h, or 0: s seconds, h hours, d days, w weeks\)$/],
    ['--older-than alone', ['--older-than', '1d'], /^chunkvault: --older-than goes with --recompress zstd\[:LEVEL\]; add --recompress, or leave --older-than out$/],
  ];
  for (const [what, args, message] of cases) {
    for (const mode of [[], ['--dry-run']]) {
      const result = await cli(['gc', '--store', store, ...args, ...mode]);
      t.equal(result.code, 2, `${what}${mode.length > 0 ? ' (dry run)' : ''}: exit 2`);
      t.match(result.stderr.trimEnd(), message, `${what}: the message`);
      t.equal(result.stderr.trim().split('\n').length, 1, `${what}: one line`);
      t.equal(result.stdout, '', `${what}: nothing on stdout`);
    }
  }
  t.equal(await treeDigest(store), before, 'the store is exactly as it was');
});
