/** Real clients on the mounted image: a read-only loop device, the ext4 inside it, fsck. */
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { cliJson, compressibleText, ext4Image, hasCommand, requireCapability, seededBytes, tempDir, treeDigest } from '../helpers/index.js';
import { canMount, isMountpoint, startMount } from './mounting.js';

async function fileTree(dir: string): Promise<void> {
  await fs.mkdir(join(dir, 'etc'), { recursive: true });
  await fs.mkdir(join(dir, 'srv', 'data'), { recursive: true });
  for (let i = 0; i < 30; i++) await fs.writeFile(join(dir, 'etc', `conf-${i}.txt`), compressibleText(5_000 + i * 1_013, i));
  for (let i = 0; i < 5; i++) await fs.writeFile(join(dir, 'srv', 'data', `blob-${i}.bin`), seededBytes(200 + i, 2_000_000 + i * 55_555));
}

/** `losetup -r` of the mounted image and `mount -o ro` of the filesystem in it, undone in teardown. */
function mountInside(t: Test, image: string, at: string): void {
  const device = execFileSync('losetup', ['-r', '-f', '--show', image], { encoding: 'utf8' }).trim();
  t.teardown(() => execFileSync('losetup', ['-d', device]));
  execFileSync('mount', ['-o', 'ro', device, at]);
  t.teardown(() => isMountpoint(at) && execFileSync('umount', ['-l', at]));
}

t.test('the ext4 filesystem in a mounted image mounts read-only with the source files, and fscks clean', async (t) => {
  if (!canMount(t)) return;
  if (!requireCapability(t, hasCommand('losetup') && hasCommand('mkfs.ext4') && hasCommand('fsck.ext4'), 'needs losetup and e2fsprogs')) return;
  const dir = await tempDir(t);
  const tree = join(dir, 'tree');
  await fileTree(tree);
  const image = join(dir, 'root.img');
  ext4Image(image, 48, tree);
  const store = join(dir, 'store');
  await cliJson(['init', '--store', store]);
  const { id } = await cliJson<{ id: string }>(['backup', '--store', store, image]);
  const mnt = join(dir, 'mnt');
  const inside = join(dir, 'inside');
  await fs.mkdir(mnt);
  await fs.mkdir(inside);
  const mount = await startMount(t, store, mnt);
  const file = join(mnt, id, 'root.img');

  mountInside(t, file, inside);
  t.equal(await treeDigest(inside), await treeDigest(tree), 'every file inside equals its source');
  execFileSync('umount', [inside]);

  execFileSync('fsck.ext4', ['-n', '-f', file], { stdio: 'pipe' });
  t.pass('fsck.ext4 -n -f of the mounted file reports it clean');
  t.equal(mount.stderr(), '');
});
