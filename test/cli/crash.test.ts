/** kill -9 in the middle of a backup loses no committed restore point (invariants 1 and 5). */
import t from 'tap';
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { CLI, MiB, cli, cliJson, mixedImage, sha256File, tempDir, writeImage } from '../helpers/index.js';

async function packBytes(store: string): Promise<number> {
  let total = 0;
  for (const name of await fs.readdir(join(store, 'packs'))) total += (await fs.stat(join(store, 'packs', name))).size;
  return total;
}

t.test('a backup killed while writing packs leaves the store openable and earlier points intact', async (t) => {
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  const small = join(dir, 'small.img');
  const big = join(dir, 'big.img');
  await mixedImage(small);
  await writeImage(big, [{ kind: 'random', bytes: 384 * MiB, seed: 5 }]);
  await cliJson(['init', '--store', store]);
  const committed = await cliJson<{ id: string }>(['backup', '--store', store, small]);
  const baseline = await packBytes(store);

  const child = spawn(process.execPath, [CLI, 'backup', '--store', store, big, '--threads', '1'], { stdio: 'ignore' });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  while ((await packBytes(store)) < baseline + 8 * MiB) await new Promise((r) => setTimeout(r, 20));
  child.kill('SIGKILL');
  await exited;

  const list = await cliJson<{ id: string }[]>(['list', '--store', store]);
  t.same(list.map((p) => p.id), [committed.id], 'the killed backup is not listed');
  const verified = await cli(['verify', '--store', store, '--read-data']);
  t.equal(verified.code, 0, 'verify is clean');
  const out = join(dir, 'out.img');
  await cliJson(['restore', '--store', store, committed.id, out]);
  t.equal(await sha256File(out), await sha256File(small));
  const next = await cliJson<{ chunksNew: number }>(['backup', '--store', store, small]);
  t.equal(next.chunksNew, 0, 'the store takes the next backup; the dead lock is cleared');
});
