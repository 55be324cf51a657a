/**
 * Pack I/O errors in the store's readers: checkRecords reports them per record, naming the
 * pack and the errno (only an absent pack is "pack missing"); recordIds, recoverPack and
 * copyRecords throw a StoreReadError naming the pack path, never taking it for a short or empty pack.
 */
import t, { type Test } from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { StoreReadError } from '../../store/errors.js';
import { checkRecords, copyRecords, recordIds, recoverPack, packKey, PackWriter } from '../../store/pack.js';
import { FsBackend } from '../../store/backend/fs.js';
import { chunkId, loadHasher } from '../../store/chunk-id.js';
import { requireCapability, seededBytes, tempDir } from '../helpers/index.js';
import { canServeFuse, eioFile } from '../helpers/one-file-fs.js';

await loadHasher();
const record = { offset: 0, storedLength: 1000, id: chunkId(seededBytes(1, 1000)) };

const NAME = '0123abcd0123abcd';

async function refusedEverywhere(t: Test, backend: FsBackend, dir: string, errno: string): Promise<void> {
  const path = backend.pathOf(packKey(NAME));
  t.same(await checkRecords(backend, NAME, [record, { ...record, offset: 5000 }]), [`pack ${NAME}: cannot read (${errno})`, `pack ${NAME}: cannot read (${errno})`]);
  const error = { constructor: StoreReadError, code: 'CV_STORE_READ', message: `cannot read pack ${path} (${errno}); stopped, nothing was changed`, data: { object: path, code: errno } };
  await t.rejects(recordIds(backend, NAME), error, 'recordIds');
  await t.rejects(recoverPack(backend, NAME), error, 'recoverPack');
  const out = new FsBackend(join(dir, 'out'));
  const writer = new PackWriter(out);
  await fs.mkdir(join(dir, 'out'), { recursive: true });
  await t.rejects(copyRecords(backend, NAME, [record], writer), error, 'copyRecords');
  await writer.close();
  t.same(await fs.readdir(join(dir, 'out')), [], 'nothing was copied');
}

/** A store directory with its packs directory. */
async function packsIn(dir: string): Promise<FsBackend> {
  const backend = new FsBackend(join(dir, 'store'));
  await fs.mkdir(join(backend.dir, 'packs'), { recursive: true });
  return backend;
}

t.test('an absent pack is missing; one that is a directory is EISDIR, named', async (t) => {
  const dir = await tempDir(t);
  const backend = await packsIn(dir);
  t.same(await checkRecords(backend, 'gone', [record]), ['pack missing']);
  await t.rejects(recoverPack(backend, 'gone'), { code: 'CV_STORE_READ', message: `cannot read pack ${backend.pathOf(packKey('gone'))} (ENOENT); stopped, nothing was changed` }, 'a listed pack that vanished is not an empty one');
  await fs.mkdir(backend.pathOf(packKey(NAME)));
  await refusedEverywhere(t, backend, dir, 'EISDIR');
});

t.test('a pack whose reads fail with EIO', async (t) => {
  if (!requireCapability(t, canServeFuse(), 'needs root, /dev/fuse and fusermount')) return;
  const dir = await tempDir(t);
  const backend = await packsIn(dir);
  await fs.symlink(await eioFile(t, join(dir, 'mnt'), 1 << 20), backend.pathOf(packKey(NAME)));
  await refusedEverywhere(t, backend, dir, 'EIO');
});
