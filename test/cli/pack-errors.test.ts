/**
 * A pack that exists but cannot be read is never "pack missing" and never a raw errno: verify
 * and restore name the pack and the errno for the bytes it holds, repair stops naming its
 * path. EISDIR (the pack replaced by a directory) runs anywhere; EIO needs a FUSE file.
 */
import t, { type Test } from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { MiB, backedUpStore, cli, requireCapability, treeDigest } from '../helpers/index.js';
import { canServeFuse, eioFile } from '../helpers/one-file-fs.js';

/** The store's only pack: name and path. */
async function onlyPack(store: string): Promise<{ name: string; path: string }> {
  const files = await fs.readdir(join(store, 'packs'));
  if (files.length !== 1) throw new Error(`expected one pack, found ${files.join(', ')}`);
  return { name: files[0].replace(/\.pack$/, ''), path: join(store, 'packs', files[0]) };
}

function oneLine(t: Test, what: string, result: { code: number; stderr: string }, code: number, message: string): void {
  t.equal(result.code, code, `${what}: exit ${code}`);
  t.equal(result.stderr, `chunkvault: ${message}\n`, `${what}: the one line`);
}

/** Digests of everything but the index, which LevelDB rewrites (compacting its log) whenever it is opened. */
async function untouched(store: string): Promise<string[]> {
  return [await fs.readFile(join(store, 'chunkvault.json'), 'utf8'), ...(await Promise.all(['packs', 'maps', 'catalog'].map((part) => treeDigest(join(store, part)))))];
}

/** Runs verify, verify --read-data, restore and repair on a store whose pack fails with `errno`. */
async function everyReaderNames(t: Test, fixture: { dir: string; store: string; id: string }, pack: { name: string; path: string }, errno: string): Promise<void> {
  const problem = `pack ${pack.name}: cannot read (${errno})`;
  const before = await untouched(fixture.store);
  for (const extra of [[], ['--read-data']]) {
    const verified = await cli(['verify', '--store', fixture.store, ...extra]);
    t.equal(verified.code, 1, `verify ${extra.join(' ')}: exit 1, damage found`);
    const damaged = verified.stdout.split('\n').filter((line) => line.startsWith('DAMAGED'));
    t.ok(damaged.length > 0, 'damaged ranges are listed');
    for (const line of damaged) t.match(line, new RegExp(`^DAMAGED ${fixture.id} \\(disk\\) disk disk: bytes \\d+-\\d+: ${problem.replace(/[()]/g, '\\$&')}$`));
    t.notMatch(verified.stdout + verified.stderr, /pack missing|i\/o error/, 'neither "missing" nor a raw errno message');
  }
  oneLine(t, 'restore', await cli(['restore', '--store', fixture.store, fixture.id, join(fixture.dir, 'out.img')]), 1, `restore point ${fixture.id} disk disk at offset 0: ${problem}`);
  oneLine(t, 'repair', await cli(['repair', '--store', fixture.store]), 2, `cannot read pack ${pack.path} (${errno}); stopped, nothing was changed`);
  t.same(await untouched(fixture.store), before, 'packs, maps, catalog and format file unchanged');
}

t.test('a pack replaced by a directory: EISDIR, named, in verify, restore and repair', async (t) => {
  const fixture = await backedUpStore(t);
  const pack = await onlyPack(fixture.store);
  await fs.rename(pack.path, join(fixture.dir, 'saved.pack'));
  await fs.mkdir(pack.path);
  await everyReaderNames(t, fixture, pack, 'EISDIR');
});

t.test('a pack on a failing disk: EIO, named, in verify, restore and repair', async (t) => {
  if (!requireCapability(t, canServeFuse(), 'needs root, /dev/fuse and fusermount')) return;
  const fixture = await backedUpStore(t);
  const pack = await onlyPack(fixture.store);
  const { size } = await fs.stat(pack.path);
  t.ok(size > MiB, 'a pack of real size, so every record lies within the failing file');
  const failing = await eioFile(t, join(fixture.dir, 'mnt'), size);
  await fs.rm(pack.path);
  await fs.symlink(failing, pack.path);
  await everyReaderNames(t, fixture, pack, 'EIO');
});
