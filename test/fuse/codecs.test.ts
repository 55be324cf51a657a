/** The mount serves a store of mixed codecs: zstd, LZ4 and raw records, and packs gc recompressed, read back as backed up. */
import t from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { cliJson, compressibleText, seededBytes, sha256File, tempDir } from '../helpers/index.js';
import { canMount, startMount } from './mounting.js';

t.test('images of zstd, LZ4, raw and recompressed backups read byte-identical through the mount', async (t) => {
  if (!canMount(t)) return;
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  await cliJson(['init', '--store', store, '--chunk-size', '64K']);
  const images: Record<string, string> = {};
  for (const [i, compression] of ['zstd:19', 'lz4', 'none'].entries()) {
    const image = join(dir, `${i}.img`);
    await fs.writeFile(image, Buffer.concat([compressibleText(1 << 20, i), seededBytes(i, 300_000)]));
    const { id } = await cliJson<{ id: string }>(['backup', '--store', store, image, '--name', `vm${i}`, '--compression', compression]);
    images[id] = image;
  }
  // The LZ4 and raw backups' packs rewritten: zstd where it saves, settled where it does not.
  const gc = await cliJson<{ recompression: { recordsRecompressed: number; recordsSettled: number } }>(['gc', '--store', store, '--recompress', 'zstd:3', '--older-than', '0']);
  t.ok(gc.recompression.recordsRecompressed > 0 && gc.recompression.recordsSettled > 0, 'some records recompressed, some settled');
  const mountpoint = join(dir, 'mnt');
  await fs.mkdir(mountpoint);
  const mount = await startMount(t, store, mountpoint);
  for (const [id, image] of Object.entries(images)) {
    const [file] = await fs.readdir(join(mountpoint, id));
    t.equal(await sha256File(join(mountpoint, id, file)), await sha256File(image), `${id} (${image}) reads as backed up`);
  }
  t.equal(mount.stderr(), '', 'no damage logged');
});
