/** Append-only files written direct from aligned staging, or through the page cache where direct I/O is refused. */
import t, { type Test } from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { AppendFile, STAGE_BYTES, alignedStages } from '../../store/append-file.js';
import { MiB, isRoot, mounted, requireCapability, residentBytes, seededBytes, tempDir } from '../helpers/index.js';

/** Pieces of odd sizes, so stage and block boundaries fall inside them. */
const pieces = [1, 4097, 3 * MiB + 5, 9 * MiB + 511, 17, 5 * MiB].map((length, i) => seededBytes(i + 1, length));

/** Appends every piece, writing the tail after the third and at the end: the file holds them all, unpadded, both times. */
async function appendsEveryByte(t: Test, path: string, direct: boolean): Promise<void> {
  const file = await AppendFile.create(path, alignedStages());
  t.equal(file.direct, direct, direct ? 'written around the page cache' : 'direct I/O refused: written through the page cache');
  await file.append(pieces.slice(0, 3));
  await file.writeTail();
  if (direct) t.equal(residentBytes(path), 0, 'none of it went through the page cache');
  t.same(await fs.readFile(path), Buffer.concat(pieces.slice(0, 3)), 'after a tail write: every byte so far, no padding');
  const changed = pieces.slice(3).map((p) => Buffer.from(p));
  await file.append(changed);
  for (const piece of changed) piece.fill(0);
  await file.writeTail();
  await file.writeTail();
  await file.datasync();
  await file.close();
  t.same(await fs.readFile(path), Buffer.concat(pieces), 'appends go on from the unaligned end; buffers are copied on append');
  await t.rejects(AppendFile.create(path, alignedStages()), { code: 'EEXIST' }, 'an existing file is never reused');
}

t.test('direct: every byte in order, at any alignment', async (t) => {
  await appendsEveryByte(t, join(await tempDir(t), 'direct'), true);
});

t.test('appends that end on a stage boundary leave no tail to write', async (t) => {
  const path = join(await tempDir(t), 'boundary');
  const file = await AppendFile.create(path, alignedStages());
  const whole = seededBytes(9, 2 * STAGE_BYTES);
  await file.append([whole.subarray(0, STAGE_BYTES - 1), whole.subarray(STAGE_BYTES - 1)]);
  await file.writeTail();
  await file.close();
  t.same(await fs.readFile(path), whole);
});

t.test('a filesystem without direct I/O (ramfs) gets the same bytes through the page cache', async (t) => {
  if (!requireCapability(t, isRoot(), 'needs root to mount ramfs')) return;
  await appendsEveryByte(t, join(mounted(t, await tempDir(t), 'ramfs'), 'buffered'), false);
});

t.test('a failed stage write fails the call that waits for it, not the process', async (t) => {
  if (!requireCapability(t, isRoot(), 'needs root to mount a small tmpfs')) return;
  const small = mounted(t, await tempDir(t), 'tmpfs', ['-o', 'size=4m']);
  const file = await AppendFile.create(join(small, 'full'), alignedStages());
  await t.rejects(file.append([seededBytes(7, 24 * MiB)]), { code: 'ENOSPC' });
  await file.close();
});
