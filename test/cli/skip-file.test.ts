/**
 * backup --skip-file through the real CLI: ext4 on a loop device, a swap-like
 * file skipped (backed up as zeros, never read), the restored filesystem clean, every other
 * file intact; and the refusals, each before anything is written.
 */
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { MiB, cli, cliJson, hasCommand, isRoot, requireCapability, seededBytes, sha256File, tempDir, treeDigest } from '../helpers/index.js';

interface Report {
  id: string;
  bytesRead: number;
  bytesSkipped: number;
  chunksTotal: number;
}

const loopOk = (t: Test): boolean =>
  requireCapability(t, isRoot() && hasCommand('losetup') && hasCommand('mkfs.ext4') && hasCommand('fsck.ext4'), 'needs root, loop devices and e2fsprogs');

/** `image` attached to a loop device; detached at teardown. */
function attach(t: Test, image: string): string {
  const loop = execFileSync('losetup', ['--find', '--show', image], { encoding: 'utf8' }).trim();
  t.teardown(() => execFileSync('losetup', ['-d', loop]));
  return loop;
}

/** Mounts `device` on a new directory, unmounted at teardown (or earlier by the returned function). */
async function mount(t: Test, device: string, mountpoint: string, options: string[] = []): Promise<() => void> {
  await fs.mkdir(mountpoint, { recursive: true });
  execFileSync('mount', [...options, device, mountpoint]);
  let mounted = true;
  const unmount = (): void => {
    if (mounted) execFileSync('umount', [mountpoint]);
    mounted = false;
  };
  t.teardown(unmount);
  return unmount;
}

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/**
 * A 96 MiB ext4 loop device, mounted; a 24 MiB "swap" file and others written and synced.
 * (Partitions of loop devices would test the sysfs partition offset too, but this kernel
 * creates none: `losetup --partscan` leaves /sys/block/loopN without loopNp1.)
 */
async function diskWithSwap(t: Test, dir: string) {
  const image = join(dir, 'disk.img');
  await fs.writeFile(image, Buffer.alloc(0));
  await fs.truncate(image, 96 * MiB);
  const loop = attach(t, image);
  execFileSync('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', loop], { stdio: 'pipe' });
  const root = join(dir, 'mnt');
  const unmount = await mount(t, loop, root);
  const swap = join(root, 'swapfile');
  await fs.writeFile(swap, seededBytes(1, 24 * MiB));
  // Allocated, never written: its extents are "unwritten", skipped like the others.
  const pagefile = join(root, 'pagefile');
  execFileSync('fallocate', ['-l', `${4 * MiB}`, pagefile]);
  const others = new Map<string, string>();
  await fs.mkdir(join(root, 'data'));
  for (let i = 0; i < 6; i++) {
    const data = seededBytes(10 + i, 300_000 + i * 777_777);
    const path = join('data', `file-${i}.bin`);
    await fs.writeFile(join(root, path), data);
    others.set(path, sha256(data));
  }
  execFileSync('sync');
  // Read-only, as a snapshot would be: the journal is clean, so the restored copy checks clean.
  execFileSync('mount', ['-o', 'remount,ro', root]);
  return { image, loop, root, swap, pagefile, others, unmount };
}

t.test('a skipped file is backed up as zeros and never read; the restored filesystem is clean and every other file intact', async (t) => {
  if (!loopOk(t)) return;
  const dir = await tempDir(t);
  const { loop, swap, pagefile, others, unmount } = await diskWithSwap(t, dir);
  const store = join(dir, 'store');
  await cliJson(['init', '--store', store]);
  const full = await cliJson<Report>(['backup', '--store', store, `sda=${loop}`, '--name', 'vm']);
  t.match(full, { bytesRead: 96 * MiB, bytesSkipped: 0 });
  const skipped = await cliJson<Report>(['backup', '--store', store, `sda=${loop}`, '--name', 'vm', '--skip-file', swap, '--skip-file', pagefile, '--no-parent']);
  t.equal(skipped.bytesSkipped, 28 * MiB, "the swap file's 24 MiB of blocks and the page file's 4 MiB");
  t.equal(skipped.bytesRead, 96 * MiB - 28 * MiB, 'read exactly that much less');
  const human = await cli(['backup', '--store', store, `sda=${loop}`, '--name', 'vm', '--skip-file', swap]);
  t.match(human.stdout, /^ {2}read 72\.0 MiB from the source, skipped 24\.0 MiB \(--skip-file\), stored /m, 'the human output says what was read and skipped');
  unmount();

  const restored = join(dir, 'restored.img');
  await cliJson(['restore', '--store', store, skipped.id, restored]);
  const back = attach(t, restored);
  const check = execFileSync('fsck.ext4', ['-fn', back], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  t.match(check, /\d+\/\d+ files/, 'fsck.ext4 -fn exits 0 on the restored disk');
  const root = join(dir, 'restored-mnt');
  await mount(t, back, root, ['-o', 'ro']);
  const swapBack = await fs.readFile(join(root, 'swapfile'));
  t.equal(swapBack.byteLength, 24 * MiB, 'the skipped file keeps its size');
  t.ok(swapBack.equals(Buffer.alloc(24 * MiB)), 'and reads as zeros');
  t.equal((await fs.stat(join(root, 'pagefile'))).size, 4 * MiB, 'the page file is there, allocated as before');
  for (const [path, digest] of others) t.equal(await sha256File(join(root, path)), digest, `${path} intact`);
});

t.test('refusals: a directory, a missing file, a file on another filesystem, a regular-file source; exit 2, one line, the store unchanged', async (t) => {
  if (!loopOk(t)) return;
  const dir = await tempDir(t);
  const { image, loop, root, swap } = await diskWithSwap(t, dir);
  const store = join(dir, 'store');
  await cliJson(['init', '--store', store]);
  const elsewhere = join(dir, 'elsewhere.bin');
  await fs.writeFile(elsewhere, seededBytes(3, 4096));
  const before = await treeDigest(store);
  const dev = execFileSync('stat', ['-c', '%Hd:%Ld', elsewhere], { encoding: 'utf8' }).trim();
  const loopDev = execFileSync('stat', ['-c', '%Hr:%Lr', loop], { encoding: 'utf8' }).trim();
  const cases: [string, string[], string][] = [
    ['a directory', [loop, '--skip-file', root], `--skip-file ${root}: it is a directory; name the files in it; nothing was written`],
    ['a missing file', [loop, '--skip-file', join(root, 'nope')], `--skip-file ${join(root, 'nope')}: there is no such file; nothing was written`],
    [
      'another filesystem',
      [loop, '--skip-file', elsewhere],
      `--skip-file ${elsewhere}: its filesystem is on device ${dev}, which is neither a source of this backup (${loop} ${loopDev}) nor a partition of one; nothing was written`,
    ],
    [
      'a regular-file source',
      [image, '--skip-file', swap],
      `--skip-file ${swap}: the sources are regular files (${image}); back up the block device the filesystem is mounted from (for an image: losetup --find --show --partscan IMAGE); nothing was written`,
    ],
  ];
  for (const [what, args, message] of cases) {
    const run = await cli(['backup', '--store', store, ...args]);
    t.equal(run.code, 2, `${what}: exit 2`);
    t.equal(run.stderr, `chunkvault: ${message}\n`, `${what}: one line naming the file and what to do`);
  }
  t.equal(await treeDigest(store), before, 'nothing in the store changed');
});
