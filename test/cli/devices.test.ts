/** Real data: an ext4 image built with mkfs.ext4 -d, and block devices through loop. */
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { MiB, cli, cliJson, compressibleText, ext4Image, hasCommand, isRoot, requireCapability, seededBytes, sha256File, tempDir, writeImage } from '../helpers/index.js';

async function fileTree(dir: string): Promise<void> {
  await fs.mkdir(join(dir, 'etc'), { recursive: true });
  await fs.mkdir(join(dir, 'var', 'lib'), { recursive: true });
  for (let i = 0; i < 40; i++) await fs.writeFile(join(dir, 'etc', `conf-${i}.txt`), compressibleText(10_000 + i * 997, i));
  for (let i = 0; i < 6; i++) await fs.writeFile(join(dir, 'var', 'lib', `blob-${i}.bin`), seededBytes(100 + i, 1_500_000 + i * 77_777));
  await fs.writeFile(join(dir, 'var', 'lib', 'copy-of-blob-0.bin'), seededBytes(100, 1_500_000));
}

function losetup(t: Test, args: string[]): string {
  const device = execFileSync('losetup', ['-f', '--show', ...args], { encoding: 'utf8' }).trim();
  t.teardown(() => execFileSync('losetup', ['-d', device]));
  return device;
}

t.test('an ext4 image round trips byte-identical and fscks clean', async (t) => {
  if (!requireCapability(t, hasCommand('mkfs.ext4') && hasCommand('fsck.ext4'), 'needs e2fsprogs (mkfs.ext4, fsck.ext4)')) return;
  const dir = await tempDir(t);
  await fileTree(join(dir, 'tree'));
  const image = join(dir, 'root.img');
  ext4Image(image, 64, join(dir, 'tree'));
  const store = join(dir, 'store');
  await cliJson(['init', '--store', store, '--chunk-size', '64K']);
  const report = await cliJson<{ chunksZero: number; chunksNew: number; chunksTotal: number }>(['backup', '--store', store, image]);
  t.equal(report.chunksTotal, 1024);
  t.ok(report.chunksZero > 300, `free space is zero chunks (${report.chunksZero})`);
  const out = join(dir, 'restored.img');
  await cliJson(['restore', '--store', store, 'latest', out]);
  t.equal(await sha256File(out), await sha256File(image));
  execFileSync('fsck.ext4', ['-n', '-f', out], { stdio: 'pipe' });
  t.pass('fsck.ext4 -n reports the restored filesystem clean');
});

t.test('block devices: back up a loop device, restore to a file and to another device', async (t) => {
  if (!requireCapability(t, isRoot() && hasCommand('losetup'), 'needs root and losetup for loop devices')) return;
  const dir = await tempDir(t);
  const image = join(dir, 'disk.img');
  await writeImage(image, [
    { kind: 'random', bytes: 5 * MiB, seed: 4 },
    { kind: 'zero', bytes: 3 * MiB },
    { kind: 'text', bytes: 4 * MiB },
  ]);
  const source = losetup(t, ['-r', image]);
  const store = join(dir, 'store');
  await cliJson(['init', '--store', store]);
  const report = await cliJson<{ disks: { label: string; size: number }[] }>(['backup', '--store', store, `sda=${source}`]);
  t.same(report.disks, [{ label: 'sda', size: 12 * MiB }], 'device size detected');
  const out = join(dir, 'out.img');
  await cliJson(['restore', '--store', store, 'latest', out]);
  t.equal(await sha256File(out), await sha256File(image), 'restore to a file');

  const targetFile = join(dir, 'target.img');
  await writeImage(targetFile, [{ kind: 'random', bytes: 12 * MiB, seed: 99 }]);
  const target = losetup(t, [targetFile]);
  await cliJson(['restore', '--store', store, 'latest', target]);
  t.equal(await sha256File(target), await sha256File(image), 'restore to a device writes zero chunks as zeros');

  const smallFile = join(dir, 'small.img');
  await writeImage(smallFile, [{ kind: 'zerofill', bytes: 4 * MiB }]);
  const small = losetup(t, [smallFile]);
  const tooSmall = await cli(['restore', '--store', store, 'latest', small]);
  t.equal(tooSmall.code, 2);
  t.match(tooSmall.stderr, /holds 4194304 bytes, the disk needs 12582912/);
});
