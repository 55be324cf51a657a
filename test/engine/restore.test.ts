/** Restore with damaged or missing chunks: stop naming the range, or --partial. */
import t from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { MiB, backedUpStore, cli } from '../helpers/index.js';
import { corruptChunk } from '../helpers/corrupt.js';

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
