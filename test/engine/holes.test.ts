/** Holes of sparse sources: found through FIEMAP, never read, restored as holes. */
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { dataRanges } from '../../engine/holes.js';
import { initStore, restore, runBackup } from '../../engine/index.js';
import { MiB, hasCommand, requireCapability, seededBytes, tempDir } from '../helpers/index.js';

const TiB = 1024 ** 4;

async function writeAt(path: string, parts: [offset: number, data: Buffer][], size: number): Promise<void> {
  const handle = await fs.open(path, 'w');
  try {
    for (const [offset, data] of parts) await handle.write(data, 0, data.byteLength, offset);
    await handle.truncate(size);
  } finally {
    await handle.close();
  }
}

const fiemapTools = (t: Test): boolean => requireCapability(t, hasCommand('filefrag') && hasCommand('fallocate'), 'needs filefrag and fallocate (e2fsprogs, util-linux)');

t.test('data ranges of a sparse file: holes and unwritten (preallocated) extents are left out', async (t) => {
  if (!fiemapTools(t)) return;
  const file = join(await tempDir(t), 'sparse.img');
  await writeAt(file, [[0, seededBytes(1, 3 * MiB)], [10 * MiB, seededBytes(2, 4096)]], 16 * MiB + 3);
  execFileSync('fallocate', ['-n', '-o', String(12 * MiB), '-l', String(2 * MiB), file]);
  t.same(await dataRanges(file, 16 * MiB + 3), [
    { offset: 0, length: 3 * MiB },
    { offset: 10 * MiB, length: 4096 },
  ]);
  t.same(await dataRanges(join(await tempDir(t), 'missing'), 10), [{ offset: 0, length: 10 }], 'no extents known: the whole file is data');
});

t.test('data written into a preallocated extent and still in the page cache is data, not a hole', async (t) => {
  if (!fiemapTools(t)) return;
  const file = join(await tempDir(t), 'prealloc.img');
  execFileSync('fallocate', ['-l', String(8 * MiB), file]);
  const handle = await fs.open(file, 'r+');
  await handle.write(seededBytes(3, 8192), 0, 8192, 40960);
  await handle.close();
  // Without FIEMAP_FLAG_SYNC ext4 still reports the whole file unwritten here.
  t.same(await dataRanges(file, 8 * MiB), [{ offset: 40960, length: 8192 }]);
});

t.test('where the filesystem reports no extents (tmpfs), the whole file is read', async (t) => {
  const shm = await fs.mkdtemp('/dev/shm/cv-holes-').catch(() => null);
  if (!requireCapability(t, shm !== null, 'needs a tmpfs at /dev/shm')) return;
  t.teardown(() => fs.rm(shm!, { recursive: true, force: true }));
  const file = join(shm!, 'f.img');
  await writeAt(file, [[MiB, seededBytes(4, 10)]], 4 * MiB);
  t.same(await dataRanges(file, 4 * MiB), [{ offset: 0, length: 4 * MiB }]);
});

t.test('a 1 TiB sparse file backs up reading only its data, and restores sparse', async (t) => {
  if (!fiemapTools(t)) return;
  const dir = await tempDir(t);
  const file = join(dir, 'huge.img');
  const parts: [number, Buffer][] = [
    [5 * MiB + 100, seededBytes(5, 2 * MiB)],
    [TiB / 2, seededBytes(6, 4096)],
    [TiB - 10, seededBytes(7, 10)],
  ];
  await writeAt(file, parts, TiB);
  const store = await initStore(join(dir, 'store'));
  const report = await runBackup(store, { sources: [file] });
  // 4 KiB blocks: the first part spans blocks from 5 MiB to 7 MiB + 4 KiB.
  t.equal(report.bytesRead, 2 * MiB + 4096 + 4096 + 4096, 'only the allocated blocks are read');
  t.equal(report.chunksTotal, TiB / MiB);
  t.equal(report.chunksTotal - report.chunksZero, 5, 'slots 5, 6, 7, the middle one and the last one hold data');
  const out = join(dir, 'restored.img');
  await restore(store, 'latest', out);
  const restored = await fs.open(out, 'r');
  t.teardown(() => restored.close());
  t.equal((await restored.stat()).size, TiB);
  t.ok((await restored.stat()).blocks * 512 <= 8 * MiB, 'the restored file is sparse');
  for (const [offset, data] of parts) {
    const back = Buffer.alloc(data.byteLength);
    await restored.read(back, 0, back.byteLength, offset);
    t.ok(back.equals(data), `bytes at ${offset} restored`);
  }
});
