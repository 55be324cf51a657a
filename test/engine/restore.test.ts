/** Restore where direct I/O is refused, and with damaged or missing chunks: stop naming the range, or --partial. */
import t from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { MiB, backedUpStore, cli, cliJson, isRoot, mounted, requireCapability, residentBytes, restoresIdentically, sha256File } from '../helpers/index.js';
import { corruptChunk } from '../helpers/corrupt.js';

t.test('a restore writes around the page cache: only the partial last block of the disk goes through it', async (t) => {
  const { dir, store, image, id } = await backedUpStore(t);
  const out = join(dir, 'direct.img');
  await cliJson(['restore', '--store', store, id, out]);
  const lastSlot = (await fs.stat(out)).size % MiB;
  t.ok(lastSlot % 4096 !== 0, `the disk ends in a partial block (${lastSlot} bytes past the last whole slot)`);
  const cached = residentBytes(out);
  t.ok(cached <= lastSlot + 4096, `${cached} bytes cached: at most that last slot`);
  t.equal(await sha256File(out), await sha256File(image), 'byte-identical');
});

t.test('a target on a filesystem without direct I/O (ramfs) is written through the page cache, byte-identical', async (t) => {
  if (!requireCapability(t, isRoot(), 'needs root to mount ramfs')) return;
  const { dir, store, image, id } = await backedUpStore(t);
  await restoresIdentically(t, store, id, image, join(mounted(t, dir, 'ramfs'), 'disk.img'));
});

t.test('a damaged chunk stops a restore; --partial restores the rest and lists the range', async (t) => {
  const { dir, store, image, id } = await backedUpStore(t);
  await corruptChunk(store, id, 'disk', 1);

  const stopped = await cli(['restore', '--store', store, id, join(dir, 'a.img')]);
  t.equal(stopped.code, 1);
  t.match(stopped.stderr, new RegExp(`^chunkvault: restore point ${id} disk disk at offset ${MiB}: (hash|decode|length)`));

  const out = join(dir, 'b.img');
  const partial = await cli(['restore', '--store', store, id, out, '--partial', '--json']);
  t.equal(partial.code, 1, 'exit 1: not everything was restored');
  const summary = JSON.parse(partial.stdout) as { unrestored: { offset: number; length: number; problem: string }[] };
  t.match(summary.unrestored, [{ offset: MiB, length: MiB, problem: /hash|decode|length/ }]);
  t.equal(summary.unrestored.length, 1);
  const restored = await fs.readFile(out);
  const source = await fs.readFile(image);
  t.ok(restored.subarray(MiB, 2 * MiB).every((b) => b === 0), 'the damaged range is left zero');
  t.ok(restored.subarray(0, MiB).equals(source.subarray(0, MiB)), 'before it: restored');
  t.ok(restored.subarray(2 * MiB).equals(source.subarray(2 * MiB)), 'after it: restored');
});

t.test('--partial with chunks missing from the index', async (t) => {
  const { dir, store, id } = await backedUpStore(t);
  await fs.rm(join(store, 'index'), { recursive: true });
  await fs.rm(join(store, 'segments'), { recursive: true, force: true });
  await fs.mkdir(join(store, 'index'));
  const stopped = await cli(['restore', '--store', store, id, join(dir, 'a.img')]);
  t.equal(stopped.code, 1);
  t.match(stopped.stderr, /at offset 0: chunk missing from the index/);
  const partial = await cli(['restore', '--store', store, id, join(dir, 'b.img'), '--partial', '--json']);
  t.equal(partial.code, 1);
  t.same((JSON.parse(partial.stdout) as { unrestored: unknown[] }).unrestored, [
    { offset: 0, length: 3 * MiB, problem: 'chunk missing from the index' },
    { offset: 8 * MiB, length: 8 * MiB + 12345, problem: 'chunk missing from the index' },
  ]);
});
