/** A qcow2 overlay on the read-only mount (the hand-made recovery before sessions): writes land in the overlay, the image stays. */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { MiB, backedUpStore, hasCommand, requireCapability, sha256File } from '../helpers/index.js';
import { canMount, startMount } from './mounting.js';

t.test('qemu-img create -f qcow2 -b <mounted .img> -F raw: qemu-io writes, qemu-img check and compare', async (t) => {
  if (!canMount(t)) return;
  if (!requireCapability(t, hasCommand('qemu-io') && hasCommand('qemu-img'), 'needs qemu-utils')) return;
  const { dir, store, image, id } = await backedUpStore(t);
  const mnt = join(dir, 'mnt');
  await fs.mkdir(mnt);
  await startMount(t, store, mnt);
  // The immutable <id>/ path: a by-name/.../latest backing file would move to another base after the next backup.
  const base = join(mnt, id, 'disk.img');
  const overlay = join(dir, 'overlay.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'raw', overlay]);
  const expected = join(dir, 'expected.img');
  await fs.copyFile(image, expected);
  for (const [format, file] of [['qcow2', overlay], ['raw', expected]]) {
    execFileSync('qemu-io', ['-f', format, '-c', 'write -P 0xab 1M 64k', '-c', `write -P 0x5a ${3 * MiB - 4096} 1M`, file], { stdio: 'pipe' });
  }
  execFileSync('qemu-img', ['check', '-q', overlay], { stdio: 'pipe' });
  t.pass('qemu-img check of the overlay is clean');
  execFileSync('qemu-img', ['compare', '-q', '-f', 'qcow2', '-F', 'raw', overlay, expected], { stdio: 'pipe' });
  t.pass('qemu-img compare: the overlay reads as the restore point plus its writes');
  t.equal(await sha256File(base), await sha256File(image), 'the mounted image is unchanged');
});

t.test('--colon-free: an overlay beside the mount with a relative backing path into by-name/ opens (qemu reads a colon as a protocol)', async (t) => {
  if (!canMount(t)) return;
  if (!requireCapability(t, hasCommand('qemu-img'), 'needs qemu-utils')) return;
  const { dir, store, image } = await backedUpStore(t);
  const mnt = join(dir, 'mnt');
  await fs.mkdir(mnt);
  await startMount(t, store, mnt, ['--colon-free']);
  const [time] = (await fs.readdir(join(mnt, 'by-name', 'disk'))).filter((n) => n !== 'latest');
  t.match(time, /^\d{8}T\d{6}\.\d{3}Z$/, 'the time has no colon');
  const overlay = join(mnt, '..', 'relative.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', `mnt/by-name/disk/${time}/disk.img`, '-F', 'raw', overlay]);
  execFileSync('qemu-img', ['compare', '-q', '-f', 'qcow2', '-F', 'raw', overlay, image], { stdio: 'pipe' });
  t.pass('qemu-img compare through the relative backing path: identical to the image');
});
