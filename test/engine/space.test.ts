/** Space pre-flight: the estimate from CBT size, parent change rate or allocated bytes; the check with real statfs. */
import t from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { initStore } from '../../engine/index.js';
import { checkSpace, diskNeed, estimateBackupBytes, freeBytes } from '../../engine/space.js';
import type { RestorePoint } from '../../store/catalog.js';
import { MiB, tempDir, treeDigest } from '../helpers/index.js';

const MARGIN = 16 * MiB;
const CHUNK = MiB;

function parentWith(bytesNew: number, size: number): RestorePoint {
  return {
    id: '0000000000000001',
    name: 'vm',
    time: '2026-11-01T00:00:00.000Z',
    created: '2026-11-01T00:00:00.000Z',
    chunkSize: CHUNK,
    kind: 'full',
    parent: null,
    disks: [{ label: 'disk', size }],
    hold: null,
    stats: { bytesRead: size, bytesNew, chunksTotal: size / CHUNK, chunksNew: 0, chunksZero: 0, seconds: 1 },
  };
}

t.test('the estimate: CBT size first, then the parent change rate, then allocated bytes', async (t) => {
  const size = 1024 * MiB;
  const map = 1024 * 32;
  const headers = (bytes: number): number => Math.ceil(bytes / CHUNK) * 48;
  t.equal(estimateBackupBytes([{ size, allocatedBytes: 600 * MiB }], CHUNK), MARGIN + 600 * MiB + headers(600 * MiB) + map, 'no parent: what the source holds');
  t.equal(estimateBackupBytes([{ size, allocatedBytes: 600 * MiB }], CHUNK, parentWith(100 * MiB, size)), MARGIN + 100 * MiB + headers(100 * MiB) + map, "the parent's change rate (10%) times the disk");
  t.equal(estimateBackupBytes([{ size, allocatedBytes: 50 * MiB }], CHUNK, parentWith(100 * MiB, size)), MARGIN + 50 * MiB + headers(50 * MiB) + map, 'never more than the source holds');
  t.equal(estimateBackupBytes([{ size, allocatedBytes: 600 * MiB, changedBytes: 3 * MiB }], CHUNK, parentWith(100 * MiB, size)), MARGIN + 3 * MiB + headers(3 * MiB) + map, 'a CBT list knows best');
  t.equal(
    estimateBackupBytes([{ size, allocatedBytes: 10 * MiB }, { size: 2 * size, allocatedBytes: 20 * MiB }], CHUNK),
    MARGIN + 30 * MiB + headers(10 * MiB) + headers(20 * MiB) + 3 * map,
    'disks add up',
  );
});

t.test("a disk's need comes from its backup layout: data extents, and the chunks a CBT list touches", async (t) => {
  const layout = { size: 64 * MiB, chunkSize: CHUNK, extents: [{ offset: 0, length: 2 * MiB, from: 0 }, { offset: 60 * MiB, length: MiB, from: 60 * MiB }], changed: null };
  t.same(diskNeed(layout), { size: 64 * MiB, allocatedBytes: 3 * MiB, changedBytes: null });
  const changed = [
    { offset: 0, length: 4096 },
    { offset: 8192, length: 4096 },
    { offset: MiB - 1, length: 2 },
    { offset: 5 * MiB, length: 2 * MiB },
  ];
  t.same(diskNeed({ ...layout, changed }), { size: 64 * MiB, allocatedBytes: 3 * MiB, changedBytes: 4 * CHUNK }, 'slots 0 and 1, 5 and 6: each touched chunk is stored whole');
});

t.test('checkSpace refuses with both numbers, unless forced, and writes nothing', async (t) => {
  const store = await initStore(join(await tempDir(t), 'store'), '64K');
  const free = await freeBytes(store);
  const stat = await fs.statfs(store.location);
  t.equal(free, stat.bavail * stat.bsize);
  const fits = await checkSpace(store, 1024);
  t.equal(fits.needed, 1024);
  t.ok(Math.abs(fits.available - free) < 64 * MiB, 'available is the free space (others write to this filesystem too)');
  const digest = await treeDigest(store.location);
  const needed = free + 1024 ** 4;
  const err = await checkSpace(store, needed).catch((e: unknown) => e);
  t.match(err, { code: 'CV_NO_SPACE', data: { store: store.location, needed } });
  const available = (err as { data: { available: number } }).data.available;
  t.ok(Math.abs(available - free) < 64 * MiB, 'available is the free space of the store filesystem');
  t.match((err as Error).message, /not enough free space for this backup: it may need up to .* TiB, the store's filesystem \(.*\) has .* free; .*--force/);
  t.match(await checkSpace(store, needed, true), { needed }, '--force overrides');
  t.equal(await treeDigest(store.location), digest);
});
