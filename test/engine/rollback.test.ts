/** Incremental restore in the engine: which slots --onto writes, and the exact error of each refusal. */
import t from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { initStore, restore, runBackup } from '../../engine/index.js';
import { differingSlots } from '../../engine/rollback.js';
import { ID_BYTES } from '../../store/chunk-id.js';
import { MiB, sha256File, tempDir, treeDigest, writeImage } from '../helpers/index.js';

/** A map whose slot i holds id byte ids[i] (0: the zero id). */
function mapOf(ids: number[]): Buffer {
  const map = Buffer.alloc(ids.length * ID_BYTES);
  ids.forEach((id, slot) => map.fill(id, slot * ID_BYTES, slot * ID_BYTES + (id === 0 ? 0 : ID_BYTES)));
  return map;
}

t.test('differingSlots: slots whose ids differ, plus every slot a changed range touches', async (t) => {
  const known = mapOf([1, 2, 3, 0, 5, 6]);
  t.same(differingSlots(mapOf([1, 2, 3, 0, 5, 6]), known, [], 10), [], 'the same map: none');
  t.same(differingSlots(mapOf([1, 9, 3, 4, 0, 6]), known, [], 10), [1, 3, 4], 'changed, filled, zeroed');
  t.same(differingSlots(known, known, [{ offset: 9, length: 2 }], 10), [0, 1], 'a range across a boundary touches both slots');
  t.same(differingSlots(known, known, [{ offset: 20, length: 10 }, { offset: 59, length: 1 }], 10), [2, 5], 'a range filling one slot, the last byte');
  t.same(differingSlots(mapOf([1, 9, 3, 0, 5, 6]), known, [{ offset: 15, length: 1 }], 10), [1], 'a changed slot the list touches too: once');
});

t.test('refusals: exact codes and exit codes, the target and the store unchanged', async (t) => {
  const dir = await tempDir(t);
  const store = await initStore(join(dir, 'store'));
  const image = join(dir, 'a.img');
  await writeImage(image, [{ kind: 'random', bytes: 3 * MiB, seed: 1 }]);
  const small = join(dir, 'small.img');
  await writeImage(small, [{ kind: 'random', bytes: 2 * MiB, seed: 1 }]);
  const a = (await runBackup(store, { sources: [`disk=${image}`], name: 'vm' })).id;
  const resized = (await runBackup(store, { sources: [`disk=${small}`], name: 'vm' })).id;
  const otherName = (await runBackup(store, { sources: [`disk=${image}`], name: 'db' })).id;
  const otherDisk = (await runBackup(store, { sources: [`sdb=${image}`], name: 'vm' })).id;
  const target = join(dir, 'target.img');
  await restore(store, a, target);
  const cbt = join(dir, 'cbt.json');
  await fs.writeFile(cbt, '{"changed": [{"offset": 0}]}');
  const targetBefore = await sha256File(target);
  const storeBefore = await treeDigest(store.location);
  const cases: [string, Parameters<typeof restore>[3], string, string][] = [
    ['--onto with --compare', { onto: a, compare: true }, target, 'CV_INVALID_INPUT'],
    ['--partial with --onto', { onto: a, partial: true }, target, 'CV_INVALID_INPUT'],
    ['--partial with --compare', { compare: true, partial: true }, target, 'CV_INVALID_INPUT'],
    ['--changed without --onto', { changed: cbt }, target, 'CV_INVALID_INPUT'],
    ['--onto of another name', { onto: otherName }, target, 'CV_INVALID_INPUT'],
    ['--onto without the disk', { onto: otherDisk }, target, 'CV_INVALID_INPUT'],
    ['--onto of another disk size', { onto: resized }, target, 'CV_INVALID_INPUT'],
    ['--onto of no restore point', { onto: 'fffff' }, target, 'CV_UNKNOWN_REF'],
    ['--changed not a CBT list', { onto: a, changed: cbt }, target, 'CV_INVALID_INPUT'],
    ['--onto a missing target', { onto: a }, join(dir, 'missing.img'), 'CV_TARGET'],
    ['--compare a missing target', { compare: true }, join(dir, 'missing.img'), 'CV_TARGET'],
    ['--onto a smaller file', { onto: a }, small, 'CV_TARGET'],
    ['--compare a larger file', { compare: true }, image, 'CV_TARGET'],
  ];
  // image is 3 MiB, the disk of `resized` 2 MiB: restoring `resized` by comparing onto it is the larger-file case.
  for (const [what, options, out, code] of cases) {
    const ref = out === image ? resized : a;
    const before = await fs.readFile(out).catch(() => null);
    await t.rejects(restore(store, ref, out, options), { code, exitCode: 2 }, what);
    t.same(await fs.readFile(out).catch(() => null), before, `${what}: ${out} unchanged`);
  }
  t.equal(await sha256File(target), targetBefore, 'the target is unchanged');
  t.equal(await treeDigest(store.location), storeBefore, 'the store is unchanged');
});
