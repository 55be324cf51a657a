/** Hydration: TARGET becomes the restore point plus the guest's writes, resumes after kill -9, onto a file or a block device. */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { backedUpInto, MiB, hasCommand, mixedImage, requireCapability, sha256File, sha256Head, tempDir, writeImage } from '../helpers/index.js';
import { corruptChunk } from '../helpers/corrupt.js';
import { canMount, eventually } from './mounting.js';
import { sessionEnv, type RunningSession } from './recovering.js';

interface Progress {
  event: string;
  bytesHydrated: number;
  bytesPresent: number;
  size: number;
  complete: boolean;
}

function qemuIo(image: string, command: string): void {
  execFileSync('qemu-io', ['-f', 'raw', '-c', command, image], { stdio: 'pipe' });
}

async function hydrated(session: RunningSession): Promise<Progress> {
  await eventually(() => session.events().some((e) => e.event === 'hydrated'), 60_000, 'hydration to complete');
  return session.events().find((e) => e.event === 'hydrated') as unknown as Progress;
}

t.test('--to FILE: guest writes go to TARGET, the rest is copied; TARGET is then the whole disk', async (t) => {
  if (!canMount(t)) return;
  if (!requireCapability(t, hasCommand('qemu-io'), 'needs qemu-utils')) return;
  const dir = await tempDir(t);
  const image = join(dir, 'disk.img');
  await mixedImage(image);
  const { store, id } = await backedUpInto(dir, image);
  const expected = join(dir, 'expected.img');
  await fs.copyFile(image, expected);
  const target = join(dir, 'target.img');
  const sessions = await sessionEnv(t);
  const mnt = join(dir, 'mnt');
  await fs.mkdir(mnt);
  // Paced so that the guest's writes land while hydration is under way.
  const session = await sessions.start(['--store', store, id, mnt, '--to', target, '--max-rate', '8', '--json'], mnt);
  for (const image of [session.image, expected]) {
    qemuIo(image, 'write -P 0xab 15M 64k');
    qemuIo(image, `write -P 0x5a ${MiB - 7} 100000`);
  }
  const done = await hydrated(session);
  t.match(done, { complete: true, bytesPresent: done.size });
  t.ok(session.events().some((e) => e.event === 'progress' && !e.complete), 'progress lines while hydrating');
  t.equal(await sha256File(session.image), await sha256File(expected), 'the session image is the restore point plus the writes');
  const listed = JSON.parse((await sessions.run(['recover', '--list', '--store', store, '--json'])).stdout) as { hydrated: boolean; target: string }[];
  t.match(listed, [{ hydrated: true, target }], '--list shows TARGET holds the whole disk');
  t.equal((await sessions.run(['recover', '--stop', mnt])).code, 0);
  await session.exited;
  t.equal(await sha256File(target), await sha256File(expected), 'TARGET equals restore point + guest writes');
  t.equal((await fs.stat(target)).mode & 0o777, 0o600, 'a TARGET the session creates is private');
});

t.test('kill -9 during hydration: --resume continues where the bitmap says, copying the disk about once', async (t) => {
  if (!canMount(t)) return;
  const dir = await tempDir(t);
  const image = join(dir, 'disk.img');
  const size = await writeImage(image, [{ kind: 'random', bytes: 24 * MiB, seed: 5 }]);
  const { store, id } = await backedUpInto(dir, image);
  const target = join(dir, 'target.img');
  const sessions = await sessionEnv(t);
  const mnt = join(dir, 'mnt');
  await fs.mkdir(mnt);
  const first = await sessions.start(['--store', store, id, mnt, '--to', target, '--max-rate', '4', '--json'], mnt);
  const progressed = (): Progress[] => first.events().filter((e) => e.event === 'progress') as unknown as Progress[];
  // Two seconds of progress: the bitmap was saved at least once (every second).
  await eventually(() => progressed().length >= 3, 20_000, 'hydration progress');
  first.child.kill('SIGKILL');
  await first.exited;
  const before = progressed().at(-1)!;
  t.ok(before.bytesPresent < size, 'killed before hydration completed');

  const second = await sessions.start(['--resume', mnt, '--json'], mnt);
  const done = await hydrated(second);
  t.ok(done.bytesHydrated < size - 2 * MiB, `the resumed run copied ${done.bytesHydrated} of ${size} bytes: what was saved is not copied again`);
  t.ok(before.bytesHydrated + done.bytesHydrated <= size + 8 * MiB, `both runs together copied ${before.bytesHydrated + done.bytesHydrated} bytes for a ${size}-byte disk`);
  t.equal((await sessions.run(['recover', '--stop', mnt])).code, 0);
  await second.exited;
  t.equal(await sha256File(target), await sha256File(image), 'TARGET equals the restore point');
});

t.test('a damaged chunk stops hydration with its restore point, disk and offset; the guest still reads the rest', async (t) => {
  if (!canMount(t)) return;
  const dir = await tempDir(t);
  const image = join(dir, 'disk.img');
  await writeImage(image, [{ kind: 'random', bytes: 12 * MiB, seed: 8 }]);
  const { store, id } = await backedUpInto(dir, image);
  await corruptChunk(store, id, 'disk', 7);
  const target = join(dir, 'target.img');
  const sessions = await sessionEnv(t);
  const mnt = join(dir, 'mnt');
  await fs.mkdir(mnt);
  const session = await sessions.start(['--store', store, id, mnt, '--to', target, '--json'], mnt);
  await eventually(() => session.stderr().includes('hydration stopped'), 30_000, 'hydration to stop');
  t.match(session.stderr(), new RegExp(`^chunkvault: hydration stopped: restore point ${id} disk disk at offset ${7 * MiB}: `, 'm'));
  t.notOk(session.events().some((e) => e.event === 'hydrated'), 'TARGET is not reported whole');
  const listed = JSON.parse((await sessions.run(['recover', '--list', '--store', store, '--json'])).stdout) as { hydrated: boolean }[];
  t.match(listed, [{ hydrated: false }]);
  const served = await fs.open(session.image, 'r');
  try {
    const head = Buffer.alloc(7 * MiB);
    await served.read(head, 0, head.length, 0);
    t.same(head, (await fs.readFile(image)).subarray(0, 7 * MiB), 'the chunks before the damaged one read back');
    await t.rejects(served.read(Buffer.alloc(4096), 0, 4096, 7 * MiB + 8192), { code: 'EIO' }, 'the damaged chunk is EIO to the guest');
  } finally {
    await served.close();
  }
  t.equal((await sessions.run(['recover', '--stop', mnt])).code, 0);
  await session.exited;
});

t.test('--to BLOCKDEV: a loop device larger than the disk holds the disk after hydration', async (t) => {
  if (!canMount(t)) return;
  if (!requireCapability(t, hasCommand('losetup'), 'needs losetup')) return;
  const dir = await tempDir(t);
  const image = join(dir, 'disk.img');
  const size = await mixedImage(image);
  const { store, id } = await backedUpInto(dir, image);
  const backing = join(dir, 'device.img');
  // Not zero: the zero slots of the disk must be written on a device.
  await writeImage(backing, [{ kind: 'random', bytes: 24 * MiB, seed: 77 }]);
  const device = execFileSync('losetup', ['-f', '--show', backing], { encoding: 'utf8' }).trim();
  t.teardown(() => execFileSync('losetup', ['-d', device]));
  const sessions = await sessionEnv(t);
  const mnt = join(dir, 'mnt');
  await fs.mkdir(mnt);
  const session = await sessions.start(['--store', store, id, mnt, '--to', device, '--json'], mnt);
  await hydrated(session);
  t.equal((await sessions.run(['recover', '--stop', mnt])).code, 0);
  await session.exited;
  t.equal(await sha256Head(device, size), await sha256File(image), 'the device holds the disk');
});
