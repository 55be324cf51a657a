/** Issue 2 end to end through the real CLI: backup, dedup, list, restore, verify, stats. */
import t from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { BackupReport } from '../../engine/index.js';
import { MiB, cli, cliJson, mixedImage, sha256File, tempDir, writeImage } from '../helpers/index.js';

const SIZE = 16 * MiB + 12345;

t.test('backup, dedup, list, restore, verify and stats of a mixed image', async (t) => {
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  const image = join(dir, 'vm-disk.img');
  t.equal(await mixedImage(image), SIZE);
  await cliJson(['init', '--store', store]);

  const first = await cliJson<BackupReport>(['backup', '--store', store, image, '--time', '2026-11-20T23:00:00Z']);
  t.match(first, { name: 'vm-disk', time: '2026-11-20T23:00:00.000Z', disks: [{ label: 'vm-disk', size: SIZE }] });
  t.equal(first.bytesRead, SIZE, 'every byte read once');
  t.equal(first.chunksTotal, 17);
  t.equal(first.chunksZero, 5, 'zero chunks detected');
  t.equal(first.chunksNew, 9, 'the repeated block is stored once');
  t.ok(first.bytesNew < 8 * MiB, 'text is compressed');
  t.ok(first.seconds > 0);

  const second = await cliJson<BackupReport>(['backup', '--store', store, `disk0=${image}`, '--name', 'vm', '--time', '2026-11-21T23:00:00Z']);
  t.equal(second.chunksNew, 0, 'a second backup of the same image stores no chunk');
  t.equal(second.bytesNew, 0);
  t.equal(second.disks[0].label, 'disk0');

  const list = await cliJson<{ id: string; name: string; held: boolean; bytesNew: number }[]>(['list', '--store', store]);
  t.same(list.map((p) => [p.id, p.name, p.held]), [[second.id, 'vm', false], [first.id, 'vm-disk', false]], 'newest first');
  t.same(list.map((p) => p.bytesNew), [0, first.bytesNew]);

  const source = await sha256File(image);
  for (const ref of [first.id, first.id.slice(0, 12), 'vm-disk@latest']) {
    const out = join(dir, `restored-${ref.replace('@', '_')}.img`);
    const summary = await cliJson<{ size: number }>(['restore', '--store', store, ref, out]);
    t.equal(summary.size, SIZE);
    t.equal(await sha256File(out), source, `restore of ${ref} is byte-identical`);
  }
  const latest = join(dir, 'latest.img');
  await cliJson(['restore', '--store', store, 'latest', latest]);
  t.equal(await sha256File(latest), source);
  const allocated = (await fs.stat(latest)).blocks * 512;
  t.ok(allocated <= SIZE - 5 * MiB + 64 * 1024, `zero chunks are holes in the restored file (${allocated} bytes allocated)`);

  const verified = await cli(['verify', '--store', store, '--read-data']);
  t.equal(verified.code, 0);
  t.match(verified.stdout, /2 restore points, 9 chunks decoded and re-hashed/);
  t.match(verified.stdout, /^clean$/m);

  const stats = await cliJson<Record<string, number>>(['stats', '--store', store]);
  t.match(stats, { restorePoints: 2, logicalBytes: 2 * SIZE, dataBytes: 2 * (11 * MiB + 12345), uniqueChunks: 9, uniqueBytes: 8 * MiB + 12345, packs: 1 });
  t.equal(stats.dedupRatio, (2 * (11 * MiB + 12345)) / (8 * MiB + 12345));
  t.ok(stats.compressionRatio > 1.3, `compression ratio ${stats.compressionRatio}`);
});

t.test('several disks make one restore point; CHUNKVAULT_STORE names the store', async (t) => {
  const dir = await tempDir(t);
  const env = { CHUNKVAULT_STORE: join(dir, 'store') };
  const a = join(dir, 'a.raw');
  const b = join(dir, 'b.raw');
  await writeImage(a, [{ kind: 'random', bytes: 300_000, seed: 7 }]);
  await mixedImage(b, 3);
  await cliJson(['init', '--chunk-size', '64K'], env);
  const report = await cliJson<BackupReport>(['backup', `sys=${a}`, `data=${b}`, '--name', 'vm1'], env);
  t.same(report.disks.map((d) => d.label), ['sys', 'data']);
  t.equal(report.chunksTotal, Math.ceil(300_000 / 65536) + Math.ceil(SIZE / 65536));
  const noDisk = await cli(['restore', 'vm1@latest', join(dir, 'x.img')], env);
  t.equal(noDisk.code, 2);
  t.match(noDisk.stderr, /has 2 disks \(sys, data\); choose one with --disk/);
  for (const [label, path] of [['sys', a], ['data', b]]) {
    const out = join(dir, `${label}.out`);
    await cliJson(['restore', 'vm1@latest', out, '--disk', label], env);
    t.equal(await sha256File(out), await sha256File(path), `disk ${label} restores byte-identical`);
  }
  const dup = await cli(['backup', `x=${a}`, `x=${b}`], env);
  t.equal(dup.code, 2);
  t.match(dup.stderr, /disk label 'x' is used twice/);
});

t.test('restore over an existing larger file truncates it to the disk size', async (t) => {
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  const image = join(dir, 'small.img');
  await writeImage(image, [{ kind: 'text', bytes: 3 * MiB + 17 }]);
  await cliJson(['init', '--store', store, '--chunk-size', '256K']);
  await cliJson(['backup', '--store', store, image]);
  const target = join(dir, 'target.img');
  await writeImage(target, [{ kind: 'random', bytes: 9 * MiB, seed: 9 }]);
  await cliJson(['restore', '--store', store, 'latest', target]);
  t.equal(await sha256File(target), await sha256File(image));
});
