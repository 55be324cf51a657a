/** A chunk damaged in its pack: EIO for the reads that touch it, logged; the mount stays up. */
import t from 'tap';
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { MiB, cliJson, sha256File, tempDir, writeImage } from '../helpers/index.js';
import { corruptChunk } from '../helpers/corrupt.js';
import { canMount, startMount } from './mounting.js';

const run = promisify(execFile);

/** dd of `count` MiB from MiB `skip`: its output, or the error dd reported. */
async function dd(file: string, skip: number, count: number): Promise<{ ok: true; data: Buffer } | { ok: false; stderr: string }> {
  try {
    const { stdout } = await run('dd', [`if=${file}`, 'bs=1M', `skip=${skip}`, `count=${count}`, 'status=none'], { encoding: 'buffer', maxBuffer: 64 * MiB });
    return { ok: true, data: stdout };
  } catch (err) {
    return { ok: false, stderr: String((err as { stderr: Buffer }).stderr) };
  }
}

t.test('EIO for the damaged range only', async (t) => {
  if (!canMount(t)) return;
  const dir = await tempDir(t);
  const image = join(dir, 'disk.img');
  await writeImage(image, [
    { kind: 'random', bytes: 8 * MiB, seed: 11 },
    { kind: 'text', bytes: 4 * MiB },
  ]);
  const store = join(dir, 'store');
  await cliJson(['init', '--store', store]);
  const { id } = await cliJson<{ id: string }>(['backup', '--store', store, image]);
  await corruptChunk(store, id, 'disk', 5);
  const mnt = join(dir, 'mnt');
  await fs.mkdir(mnt);
  const mount = await startMount(t, store, mnt);
  const file = join(mnt, id, 'disk.img');
  const source = await fs.readFile(image);

  const damaged = await dd(file, 5, 1);
  t.notOk(damaged.ok, 'dd of the damaged chunk fails');
  if (!damaged.ok) t.match(damaged.stderr, /Input\/output error/);
  const across = await dd(file, 4, 2);
  t.notOk(across.ok, 'so does a read across it');

  for (const [skip, count] of [[0, 5], [6, 6], [4, 1]]) {
    const read = await dd(file, skip, count);
    t.ok(read.ok && read.data.equals(source.subarray(skip * MiB, (skip + count) * MiB)), `dd of ${count} MiB at ${skip} MiB still reads the right bytes`);
  }
  const handle = await fs.open(file, 'r');
  const unaligned = Buffer.alloc(100);
  await t.rejects(handle.read(unaligned, 0, 100, 5 * MiB + 12345), { code: 'EIO' });
  t.equal((await handle.read(unaligned, 0, 100, 5 * MiB - 100)).bytesRead, 100, 'the 100 bytes just before it read');
  await handle.close();

  t.match(mount.stderr(), `restore point ${id} disk disk at offset ${5 * MiB}: `, 'logged with restore point, disk and offset');
  t.equal(mount.stderr().split('\n').filter((l) => l.includes('at offset')).length, 1, 'once');
  t.equal(mount.child.exitCode, null, 'the mount stays up');
  await t.rejects(sha256File(file), { code: 'EIO' });
  mount.child.kill('SIGTERM');
  t.equal(await mount.exited, 0);
});
