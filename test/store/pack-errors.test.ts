/**
 * Pack I/O errors in the store's readers: checkRecords reports them per record, naming the
 * pack and the errno (only an absent pack is "pack missing"); recordIds, recoverPack and
 * copyRecords throw a StoreReadError naming the pack path, never taking it for a short or empty pack.
 */
import t, { type Test } from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { StoreReadError } from '../../store/errors.js';
import { checkRecords, copyRecords, recordIds, recoverPack, PackWriter } from '../../store/pack.js';
import { chunkId, loadHasher } from '../../store/chunk-id.js';
import { requireCapability, seededBytes, tempDir } from '../helpers/index.js';
import { canServeFuse, eioFile } from '../helpers/one-file-fs.js';

await loadHasher();
const record = { offset: 0, storedLength: 1000, id: chunkId(seededBytes(1, 1000)) };

async function refusedEverywhere(t: Test, dir: string, path: string, errno: string): Promise<void> {
  const name = path.split('/').pop()!.replace(/\.pack$/, '');
  t.same(await checkRecords(path, [record, { ...record, offset: 5000 }]), [`pack ${name}: cannot read (${errno})`, `pack ${name}: cannot read (${errno})`]);
  const error = { constructor: StoreReadError, code: 'CV_STORE_READ', message: `cannot read pack ${path} (${errno}); stopped, nothing was changed`, data: { object: path, code: errno } };
  await t.rejects(recordIds(path), error, 'recordIds');
  await t.rejects(recoverPack(path), error, 'recoverPack');
  const writer = new PackWriter(join(dir, 'out'));
  await fs.mkdir(join(dir, 'out'), { recursive: true });
  await t.rejects(copyRecords(path, [record], writer), error, 'copyRecords');
  await writer.close();
  t.same(await fs.readdir(join(dir, 'out')), [], 'nothing was copied');
}

t.test('an absent pack is missing; one that is a directory is EISDIR, named', async (t) => {
  const dir = await tempDir(t);
  t.same(await checkRecords(join(dir, 'gone.pack'), [record]), ['pack missing']);
  await t.rejects(recoverPack(join(dir, 'gone.pack')), { code: 'CV_STORE_READ', message: `cannot read pack ${join(dir, 'gone.pack')} (ENOENT); stopped, nothing was changed` }, 'a listed pack that vanished is not an empty one');
  const path = join(dir, '0123abcd0123abcd.pack');
  await fs.mkdir(path);
  await refusedEverywhere(t, dir, path, 'EISDIR');
});

t.test('a pack whose reads fail with EIO', async (t) => {
  if (!requireCapability(t, canServeFuse(), 'needs root, /dev/fuse and fusermount')) return;
  const dir = await tempDir(t);
  const path = join(dir, '0123abcd0123abcd.pack');
  await fs.symlink(await eioFile(t, join(dir, 'mnt'), 1 << 20), path);
  await refusedEverywhere(t, dir, path, 'EIO');
});
