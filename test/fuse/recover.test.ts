/** Recovery sessions with real clients: loop device + ext4 + fsck, qemu-io and qemu-img, kill -9, ENOSPC. */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { backedUpInto, MiB, cliJson, compressibleText, ext4Image, hasCommand, mixedImage, mounted, requireCapability, writeSynced, seededBytes, sha256File, tempDir, treeDigest } from '../helpers/index.js';
import { canMount, isMountpoint } from './mounting.js';
import { sessionEnv } from './recovering.js';

/**
 * The store's restore points, packs, catalog and maps. The index is left out: LevelDB rewrites
 * its log and manifest whenever it is opened, by a mount and a restore too.
 */
async function pointsDigest(store: string): Promise<string[]> {
  return Promise.all(['packs', 'catalog', 'maps'].map((part) => treeDigest(join(store, part))));
}

function qemuIo(image: string, command: string): void {
  execFileSync('qemu-io', ['-f', 'raw', '-c', command, image], { stdio: 'pipe' });
}

function identical(a: string, b: string): boolean {
  try {
    execFileSync('qemu-img', ['compare', '-q', '-f', 'raw', '-F', 'raw', a, b], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

t.test('ext4 in a session: losetup read-write, files written, fsck clean, kept across --stop and --resume; the restore point is unchanged', async (t) => {
  if (!canMount(t)) return;
  if (!requireCapability(t, hasCommand('losetup') && hasCommand('mkfs.ext4') && hasCommand('fsck.ext4'), 'needs losetup and e2fsprogs')) return;
  const dir = await tempDir(t);
  const tree = join(dir, 'tree');
  await fs.mkdir(join(tree, 'etc'), { recursive: true });
  for (let i = 0; i < 10; i++) await fs.writeFile(join(tree, 'etc', `conf-${i}.txt`), compressibleText(3_000 + i * 977, i));
  const image = join(dir, 'root.img');
  ext4Image(image, 48, tree);
  const original = await sha256File(image);
  const { store, id } = await backedUpInto(dir, image);
  const storeDigest = await pointsDigest(store);
  const sessions = await sessionEnv(t);
  const mnt = join(dir, 'mnt');
  const inside = join(dir, 'inside');
  await fs.mkdir(mnt);
  await fs.mkdir(inside);

  const first = await sessions.start(['--store', store, id, '--disk', 'root', mnt], mnt);
  t.equal(first.image, join(mnt, 'root.img'));
  const written = seededBytes(7, 3 * MiB + 12345);
  const device = execFileSync('losetup', ['-f', '--show', first.image], { encoding: 'utf8' }).trim();
  try {
    execFileSync('mount', [device, inside]);
    await fs.writeFile(join(inside, 'recovered.bin'), written);
    await fs.writeFile(join(inside, 'etc', 'conf-0.txt'), 'changed in the session\n');
    execFileSync('umount', [inside]);
  } finally {
    if (isMountpoint(inside)) execFileSync('umount', ['-l', inside]);
    execFileSync('losetup', ['-d', device]);
  }
  execFileSync('fsck.ext4', ['-f', '-n', first.image], { stdio: 'pipe' });
  t.pass('fsck.ext4 -f -n of the session image reports it clean');

  const stop = await sessions.run(['recover', '--stop', mnt]);
  t.equal(stop.code, 0, stop.stderr);
  t.equal(await first.exited, 0, 'the serving process left after --stop');
  t.notOk(isMountpoint(mnt), 'unmounted');
  t.equal(first.stderr(), '');

  const second = await sessions.start(['--resume', mnt], mnt);
  const again = execFileSync('losetup', ['-r', '-f', '--show', second.image], { encoding: 'utf8' }).trim();
  try {
    execFileSync('mount', ['-o', 'ro', again, inside]);
    t.same(await fs.readFile(join(inside, 'recovered.bin')), written, 'the file written in the session is there after --resume');
    t.equal(await fs.readFile(join(inside, 'etc', 'conf-0.txt'), 'utf8'), 'changed in the session\n');
    t.same(await fs.readFile(join(inside, 'etc', 'conf-1.txt')), compressibleText(3_977, 1), 'an untouched file reads from the restore point');
    execFileSync('umount', [inside]);
  } finally {
    if (isMountpoint(inside)) execFileSync('umount', ['-l', inside]);
    execFileSync('losetup', ['-d', again]);
  }
  t.equal((await sessions.run(['recover', '--stop', mnt])).code, 0);
  await second.exited;

  const restored = join(dir, 'restored.img');
  await cliJson(['restore', '--store', store, id, restored]);
  t.equal(await sha256File(restored), original, "the restore point's own restore is unchanged");
  t.same(await pointsDigest(store), storeDigest, 'packs, catalog and maps are unchanged');
  t.equal((await sessions.run(['recover', '--discard', mnt])).code, 0);
});

t.test('qemu-io writes, an unaligned write across chunk boundaries, qemu-img compare; kill -9 after an fsync, --resume serves it', async (t) => {
  if (!canMount(t)) return;
  if (!requireCapability(t, hasCommand('qemu-io') && hasCommand('qemu-img'), 'needs qemu-utils')) return;
  const dir = await tempDir(t);
  const image = join(dir, 'disk.img');
  await mixedImage(image);
  const { store, id } = await backedUpInto(dir, image);
  const expected = join(dir, 'expected.img');
  await fs.copyFile(image, expected);
  const sessions = await sessionEnv(t);
  const mnt = join(dir, 'mnt');
  await fs.mkdir(mnt);
  const session = await sessions.start(['--store', store, id, mnt], mnt);

  for (const target of [session.image, expected]) {
    qemuIo(target, 'write -P 0xab 1M 64k');
    // From inside chunk 2 to inside chunk 4, starting and ending mid-block: read-modify-write at both ends.
    qemuIo(target, `write -P 0x5a ${3 * MiB - 1000} ${MiB + 70_001}`);
    qemuIo(target, `write -P 0x11 ${6 * MiB + 513} 17`);
  }
  t.ok(identical(session.image, expected), 'qemu-img compare: the session image equals the image with the same writes');
  const unaligned = seededBytes(9, 200_003);
  await writeSynced(session.image, unaligned, 9 * MiB - 99_999);
  await writeSynced(expected, unaligned, 9 * MiB - 99_999);

  session.child.kill('SIGKILL');
  await session.exited;
  const resumed = await sessions.start(['--resume', mnt], mnt);
  t.equal(await sha256File(resumed.image), await sha256File(expected), 'after kill -9 and --resume every fsynced write is there');
  const listed = await sessions.run(['recover', '--list', '--store', store, '--json']);
  const [entry] = JSON.parse(listed.stdout) as { status: string; bytesWritten: number; restorePoint: string }[];
  t.match(entry, { status: 'serving', restorePoint: id });
  // Blocks of 64 KiB: 1, 19 (1 MiB + 70 KB from the end of block 47 into block 65), 1, 4 (200 KB from the middle of block 142).
  t.equal(entry.bytesWritten, (1 + 19 + 1 + 4) * 64 * 1024, 'bytes written count whole 64 KiB blocks');
  const serving = await sessions.run(['backup', '--store', store, '--from-session', mnt]);
  t.equal(serving.code, 2, 'a serving session is not backed up: its bitmap is not final');
  t.match(serving.stderr, /^chunkvault: the session on \S+ is serving \(pid \d+ on .+\): stop it with 'chunkvault recover --stop \S+' first, so that its changed-block bitmap is final; nothing was written\n$/);
  t.equal((await sessions.run(['recover', '--stop', mnt])).code, 0);
  await resumed.exited;

  const restored = join(dir, 'restored.img');
  await cliJson(['restore', '--store', store, id, restored]);
  t.equal(await sha256File(restored), await sha256File(image), 'the restore point never changes');

  const clash = await sessions.run(['backup', '--store', store, '--from-session', mnt, image]);
  t.equal(clash.stderr, 'chunkvault: --from-session takes its disk, parent and changed blocks from the session: drop SOURCE\n');
  const backedUp = JSON.parse((await sessions.run(['backup', '--store', store, '--from-session', mnt, '--json'])).stdout) as { id: string; kind: string; parent: string; name: string; bytesRead: number };
  t.match(backedUp, { kind: 'cbt', parent: id, bytesRead: entry.bytesWritten }, "a CBT incremental of the session's point that reads exactly the blocks the guest wrote");
  const fromSession = join(dir, 'from-session.img');
  await cliJson(['restore', '--store', store, backedUp.id, fromSession]);
  t.equal(await sha256File(fromSession), await sha256File(expected), 'it restores to the disk the guest left');
});

t.test('a full state filesystem fails a write with ENOSPC; earlier writes and the rest of the disk are intact', async (t) => {
  if (!canMount(t)) return;
  const dir = await tempDir(t);
  const image = join(dir, 'disk.img');
  await mixedImage(image);
  const { store, id } = await backedUpInto(dir, image);
  const small = mounted(t, dir, 'tmpfs', ['-o', 'size=1m']);
  const sessions = await sessionEnv(t);
  const mnt = join(dir, 'mnt');
  await fs.mkdir(mnt);
  const session = await sessions.start(['--store', store, id, mnt, '--state', join(small, 'state')], mnt);

  const piece = 64 * 1024;
  const file = await fs.open(session.image, 'r+');
  let offset = 0;
  let failure: string | undefined;
  try {
    for (; offset < 4 * MiB && failure === undefined; offset += piece) {
      await file.write(seededBytes(offset, piece), 0, piece, offset).catch((err: NodeJS.ErrnoException) => (failure = err.code));
    }
    offset -= piece;
    t.equal(failure, 'ENOSPC', 'the write that found the delta full failed with ENOSPC');
    t.ok(offset > 0, 'writes before it succeeded');
    await file.sync();
  } finally {
    await file.close();
  }
  const now = await fs.readFile(session.image);
  const base = await fs.readFile(image);
  for (let at = 0; at < offset; at += piece) t.same(now.subarray(at, at + piece), seededBytes(at, piece), `write at ${at} reads back`);
  t.same(now.subarray(offset), base.subarray(offset), 'the failed write and everything after it read as the restore point');
  t.equal((await sessions.run(['recover', '--stop', mnt])).code, 0);
  t.equal(await session.exited, 0);
  t.match(session.stderr(), /ENOSPC/);
});
