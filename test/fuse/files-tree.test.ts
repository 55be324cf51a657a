/**
 * `mount --files`: the filesystem of each disk and partition under files/, through a reader the
 * mount starts on first access and releases when idle; nothing left mounted or behind.
 */
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { promises as fs, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cliJson, ext4Image, hasCommand, requireCapability, sha256File, tempDir } from '../helpers/index.js';
import { buildGuestTree, describeTree, type Meta } from '../helpers/guest-tree.js';
import { canPartition, partitionedStore } from '../helpers/partitioned.js';
import { canMount, eventually, startMount } from './mounting.js';

/** Readers the mount started under `tmp` (its TMPDIR): fuse2fs mounts there. */
function readerMounts(tmp: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.split(' ')[4]?.startsWith(`${tmp}/`))
    .map((l) => l.split(' ')[4]);
}

/** Loop devices fuse2fs read an image of this mount through: released with their reader. */
function loopsOf(mnt: string): string[] {
  return execFileSync('losetup', ['-a'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.includes(mnt));
}

/** Inode numbers are the kernel's (no use_ino): hard links are seen in nlink, not in equal inodes. */
function withoutLinkGroups(meta: Record<string, Meta>): Record<string, Omit<Meta, 'linkGroup'>> {
  return Object.fromEntries(Object.entries(meta).map(([path, { linkGroup: _, ...rest }]) => [path, rest]));
}

async function mountWithFiles(t: Test, store: string, dir: string, idleSeconds: number): Promise<{ mnt: string; tmp: string; stderr: () => string; stop: () => Promise<number | null> }> {
  const mnt = join(dir, 'mnt');
  const tmp = join(dir, 'tmp');
  await fs.mkdir(mnt);
  await fs.mkdir(tmp);
  const previous = process.env.TMPDIR;
  process.env.TMPDIR = tmp;
  const mount = await startMount(t, store, mnt, ['--files', '--files-idle', String(idleSeconds)]).finally(() => {
    if (previous === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = previous;
  });
  return {
    mnt,
    tmp,
    stderr: mount.stderr,
    stop: async () => {
      mount.child.kill('SIGTERM');
      return mount.exited;
    },
  };
}

t.test('files/<name>/<time>/<label>/ is the ext4 inside, started on first access, released when idle, gone at unmount', async (t) => {
  if (!canMount(t)) return;
  if (!requireCapability(t, hasCommand('fuse2fs') && hasCommand('mkfs.ext4'), 'needs fuse2fs and e2fsprogs')) return;
  const dir = await tempDir(t);
  const tree = join(dir, 'tree');
  await buildGuestTree(tree, { big: false, posix: true });
  ext4Image(join(dir, 'root.img'), 48, tree);
  const store = join(dir, 'store');
  await cliJson(['init', '--store', store]);
  const { id, time } = await cliJson<{ id: string; time: string }>(['backup', '--store', store, '--name', 'web', join(dir, 'root.img')]);
  const m = await mountWithFiles(t, store, dir, 2);

  t.same(await fs.readdir(join(m.mnt, 'files')), ['web']);
  t.same((await fs.readdir(join(m.mnt, 'files', 'web'))).sort(), [time, 'latest']);
  t.equal(await fs.readlink(join(m.mnt, 'files', 'web', 'latest')), time);
  t.same(await fs.readdir(join(m.mnt, 'files', 'web', 'latest')), ['root']);
  t.same(readerMounts(m.tmp), [], 'no reader until a filesystem is looked into');

  const root = join(m.mnt, 'files', 'web', time, 'root');
  const inside = await describeTree(root);
  t.same(withoutLinkGroups(inside), withoutLinkGroups(await describeTree(tree)), 'every path with its type, mode, owner, size, time and symlink target');
  t.equal((await fs.stat(join(root, 'etc', 'conf-0'))).nlink, 2, 'a hard-linked file shows both links');
  t.equal(await sha256File(join(root, 'random.bin')), await sha256File(join(tree, 'random.bin')), 'file contents read through');
  t.equal(readerMounts(m.tmp).length, 1, 'one reader, mounted under the private dir');

  await eventually(() => readerMounts(m.tmp).length === 0 && loopsOf(m.mnt).length === 0, 15_000, 'the idle reader and its loop device to be released');
  t.pass('released after 2 s idle');
  t.equal(await fs.readFile(join(root, 'etc', 'secret'), 'utf8'), 'owned by 1234:5678, mode 0640\n', 'and started again on the next access');
  t.equal(await fs.readFile(join(m.mnt, id, 'root.img')).then((b) => b.length), 48 * 1024 * 1024, 'the images are still served beside it');

  t.equal(await m.stop(), 0, 'SIGTERM: exit 0');
  t.same([...readerMounts(m.tmp), ...loopsOf(m.mnt)], [], 'no reader left mounted, no loop device');
  t.same(await fs.readdir(m.tmp), [], 'the private dir is gone');
  t.equal(m.stderr(), '');
});

t.test('files/<name>/<time>/<label>/pN/ for a partitioned disk; vfat is named as not mountable', async (t) => {
  if (!canMount(t) || !canPartition(t)) return;
  if (!requireCapability(t, hasCommand('fuse2fs'), 'needs fuse2fs')) return;
  const p = await partitionedStore(t);
  const m = await mountWithFiles(t, p.store, p.dir, 30);
  const [time] = (await fs.readdir(join(m.mnt, 'files', 'gpt'))).filter((n) => n !== 'latest');
  const disk = join(m.mnt, 'files', 'gpt', time, 'gpt');
  t.same(await fs.readdir(disk), ['p1', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7']);
  t.equal(await fs.readFile(join(disk, 'p2', 'etc', 'hostname'), 'utf8'), 'partitioned\n');
  t.equal(await sha256File(join(disk, 'p2', 'random.bin')), await sha256File(join(p.tree, 'random.bin')));
  t.equal(await fs.readdir(join(disk, 'p1')).then(() => 'listed', (err: NodeJS.ErrnoException) => err.code), 'EIO', 'vfat (mtools) cannot be shown here');
  t.same((await fs.readdir(join(m.mnt, 'files', 'gpt', time, 'plain'))).sort(), ['lost+found'], 'an unpartitioned disk is its filesystem');
  t.equal(await m.stop(), 0);
  t.same([...readerMounts(m.tmp), ...loopsOf(m.mnt)], []);
  t.same(await fs.readdir(m.tmp), []);
  t.match(m.stderr(), /gpt\.p1\.img: vfat: vfat is read by mtools, which does not mount: use chunkvault files/);
});
