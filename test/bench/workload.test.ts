/** Generated workloads: exact sizes, exact CBT lists, the same bytes on every build. */
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { BLOCK, MiB, PROFILES, buildWorkload, diffBlocks, mergeRanges, sampleData, syntheticLayout, type Range } from '../../bench/workload.js';
import { hasCommand, isRoot, requireCapability, sha256File, tempDir } from '../helpers/index.js';

async function readCbt(path: string): Promise<Range[]> {
  return (JSON.parse(await fs.readFile(path, 'utf8')) as { changed: Range[] }).changed;
}

/** The changed blocks as `cmp -l` sees them, independent of diffBlocks. */
function cmpBlocks(a: string, b: string): number[] {
  const out = spawnSync('cmp', ['-l', a, b], { maxBuffer: 1 << 30 }).stdout.toString();
  const blocks = new Set<number>();
  for (const line of out.split('\n')) if (line.trim()) blocks.add(Math.floor((Number(line.trim().split(/\s+/)[0]) - 1) / BLOCK));
  return [...blocks].sort((x, y) => x - y);
}

function blocksOf(ranges: Range[]): number[] {
  return ranges.flatMap((r) => Array.from({ length: r.length / BLOCK }, (_, i) => r.offset / BLOCK + i));
}

t.test('mergeRanges joins touching and overlapping ranges', async (t) => {
  t.same(
    mergeRanges([
      { offset: 8, length: 4 },
      { offset: 0, length: 4 },
      { offset: 4, length: 2 },
      { offset: 10, length: 6 },
      { offset: 20, length: 1 },
    ]),
    [
      { offset: 0, length: 6 },
      { offset: 8, length: 8 },
      { offset: 20, length: 1 },
    ],
  );
});

t.test('the quick synthetic disk: exact sizes, exact CBT, reproducible bytes', async (t) => {
  const dir = await tempDir(t);
  const spec = PROFILES.quick.synthetic;
  const w = await buildWorkload(spec, join(dir, 'a'));
  const layout = syntheticLayout(spec);
  t.equal(w.size, 32 * MiB);
  t.equal((await fs.stat(w.base)).size, 32 * MiB);
  t.same(w.details, { units: 32, dataUnits: 18, duplicateUnits: 1 });
  t.equal(w.dataBytes, 18 * MiB);
  t.equal(layout.filter((c) => c !== null).length * MiB, w.dataBytes, 'data is the non-hole units');
  t.equal(w.allocatedBytes, 18 * MiB, 'holes take no space');
  t.equal((await sampleData(w.base, 64 * MiB)).byteLength, 18 * MiB, 'every data block is non-zero, every hole reads as zeros');
  t.equal(w.changedBytes, 384 * 1024);
  t.equal(w.changedRanges, 2);
  const cbt = await readCbt(w.cbt!);
  t.same(cbt, await diffBlocks(w.base, w.changed!), 'the CBT list is exactly the blocks that differ');
  t.same(blocksOf(cbt), cmpBlocks(w.base, w.changed!), 'and cmp agrees');

  const again = await buildWorkload(spec, join(dir, 'b'));
  t.equal(await sha256File(again.base), await sha256File(w.base), 'same seed, same base bytes');
  t.equal(await sha256File(again.changed!), await sha256File(w.changed!), 'same seed, same changed bytes');
  const manifest = await fs.readFile(join(dir, 'a', `${spec.name}.json`), 'utf8');
  t.same((await buildWorkload(spec, join(dir, 'a'))).base, w.base, 'a built workload is reused');
  t.equal(await fs.readFile(join(dir, 'a', `${spec.name}.json`), 'utf8'), manifest);
});

t.test('the quick VM disk: real ext4, a day of changes, exact CBT', async (t) => {
  if (!requireCapability(t, isRoot() && hasCommand('mkfs.ext4') && hasCommand('e2fsck'), 'needs root, loop devices and e2fsprogs')) return;
  const dir = await tempDir(t);
  const w = await buildWorkload(PROFILES.quick.vm, dir);
  t.equal(w.size, 48 * MiB);
  t.equal((await fs.stat(w.base)).size, 48 * MiB);
  t.ok(w.allocatedBytes < w.size, 'the image is sparse');
  t.ok(w.dataBytes <= 24 * MiB && w.dataBytes > 16 * MiB, `about half the image is file data: ${w.dataBytes}`);
  t.ok(w.details.files > 0 && w.details.deletedFiles + w.details.rewrittenFiles > 0, 'files were deleted or rewritten');
  for (const image of [w.base, w.changed!]) execFileSync('e2fsck', ['-f', '-n', image], { stdio: 'pipe' });
  const cbt = await readCbt(w.cbt!);
  t.ok(cbt.length > 0);
  t.equal(w.changedBytes, cbt.reduce((s, r) => s + r.length, 0));
  t.same(blocksOf(cbt), cmpBlocks(w.base, w.changed!), 'the CBT list is exactly the blocks cmp finds changed');
  t.same((await fs.readdir(dir)).sort(), ['vm-quick-changed.cbt.json', 'vm-quick-changed.img', 'vm-quick.img', 'vm-quick.json'], 'no staging or mountpoint left behind');
});
