/** Restore never writes into the store, a chunkvault mount or a device in use; restored files are private. */
import t, { type Test } from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { CLI, MiB, backedUpStore, cli, cliJson, collect, ext4Image, hasCommand, isRoot, requireCapability, sha256File, sha256Head, treeDigest, type CliResult } from '../helpers/index.js';
import { canMount, startMount } from '../fuse/mounting.js';

const REFUSED = 'restore never writes there: choose another target \\(nothing was written\\)';

function escaped(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** sha256 of a file, or what else is there: "untouched" covers "still absent" (and the store directory, by its digest). */
async function contentOf(path: string): Promise<string | null> {
  if (!existsSync(path)) return null;
  return (await fs.stat(path)).isDirectory() ? 'a directory' : sha256File(path);
}

/** A refused restore: exit 2, one line naming the target and why, the store and the target unchanged. */
async function refusesRestore(t: Test, store: string, id: string, target: string, why: RegExp, args: string[] = []): Promise<void> {
  // The target first: a chunkvault mount opens the store's index (LevelDB rewrites its log) on a file's first read.
  const targetBefore = await contentOf(target);
  const storeBefore = await treeDigest(store);
  const result = await cli(['restore', '--store', store, id, target, ...args]);
  t.equal(result.code, 2, `${target}: exit 2`);
  t.match(result.stderr, new RegExp(`^chunkvault: target ${escaped(target)} ${why.source}; ${REFUSED}\n$`), `${target}: one line naming it and why`);
  t.equal(await treeDigest(store), storeBefore, `${target}: the store is unchanged`);
  t.equal(await contentOf(target), targetBefore, `${target}: the target is untouched`);
}

function losetup(t: Test, args: string[]): string {
  const device = execFileSync('losetup', ['-f', '--show', ...args], { encoding: 'utf8' }).trim();
  t.teardown(() => execFileSync('losetup', ['-d', device]));
  return device;
}

const loopOk = (t: Test): boolean => requireCapability(t, isRoot() && existsSync('/dev/loop-control') && hasCommand('losetup'), 'needs root and loop devices (losetup)');

t.test('targets that are the store\'s own files, by path, symlink or hard link, are refused', async (t) => {
  const { dir, store, id } = await backedUpStore(t);
  const pack = join(store, 'packs', (await fs.readdir(join(store, 'packs'))).find((n) => n.endsWith('.pack'))!);
  const inStore = new RegExp(`is inside the store ${escaped(store)}`);
  for (const target of [pack, join(store, 'catalog', `${id}.json`), join(store, 'maps', id, 'disk.map'), join(store, 'chunkvault.json'), join(store, 'index', 'CURRENT'), join(store, 'packs', 'new.img')]) {
    await refusesRestore(t, store, id, target, inStore);
  }
  await refusesRestore(t, store, id, store, /is the store directory/);

  const link = join(dir, 'link-to-pack');
  await fs.symlink(pack, link);
  await refusesRestore(t, store, id, link, new RegExp(`\\(resolves to ${escaped(pack)}\\) ${inStore.source}`));
  const dangling = join(dir, 'link-to-new-file');
  await fs.symlink(join(store, 'maps', 'new.img'), dangling);
  await refusesRestore(t, store, id, dangling, new RegExp(`\\(resolves to ${escaped(join(store, 'maps', 'new.img'))}\\) ${inStore.source}`));
  t.notOk(existsSync(join(store, 'maps', 'new.img')), 'the dangling link\'s destination was not created');

  const hardLink = join(dir, 'hard-link-to-pack');
  await fs.link(pack, hardLink);
  await refusesRestore(t, store, id, hardLink, new RegExp(`is a hard link to the store's file ${escaped(pack)}`));
});

t.test('a file with other hard links that are not the store\'s is restored', async (t) => {
  const { dir, store, id, image } = await backedUpStore(t);
  const target = join(dir, 'target.img');
  await fs.writeFile(target, 'old contents');
  await fs.link(target, join(dir, 'second-name.img'));
  await cliJson(['restore', '--store', store, id, target]);
  t.equal(await sha256File(join(dir, 'second-name.img')), await sha256File(image), 'written in place: both names show the restored disk');
});

t.test('a file inside a chunkvault mount is refused, and so is a loop device over one', async (t) => {
  if (!canMount(t)) return;
  const { dir, store, id } = await backedUpStore(t);
  const mnt = join(dir, 'mnt');
  await fs.mkdir(mnt);
  await startMount(t, store, mnt);
  const served = join(mnt, id, 'disk.img');
  const inMount = new RegExp(`is inside the chunkvault mount ${escaped(mnt)}, whose files are a store's own disk images \\(read-only\\)`);
  await refusesRestore(t, store, id, served, inMount);
  await refusesRestore(t, store, id, join(mnt, 'new.img'), inMount);
  if (!loopOk(t)) return;
  const device = losetup(t, ['-r', served]);
  await refusesRestore(t, store, id, device, new RegExp(`is a loop device over ${escaped(served)}, which ${inMount.source}`));
});

t.test('a loop device over a pack, or over a hard link to one, is refused', async (t) => {
  if (!loopOk(t)) return;
  const { dir, store, id } = await backedUpStore(t);
  const pack = join(store, 'packs', (await fs.readdir(join(store, 'packs'))).find((n) => n.endsWith('.pack'))!);
  await refusesRestore(t, store, id, losetup(t, [pack]), new RegExp(`is a loop device over ${escaped(pack)}, which is inside the store ${escaped(store)}`));
  const hardLink = join(dir, 'hard-link-to-pack');
  await fs.link(pack, hardLink);
  await refusesRestore(t, store, id, losetup(t, [hardLink]), new RegExp(`is a loop device over ${escaped(hardLink)}, which is a hard link to the store's file ${escaped(pack)}`));
});

t.test('a loop device whose ext4 is mounted is refused; unmounted, the same restore writes the disk onto it', async (t) => {
  if (!loopOk(t) || !requireCapability(t, hasCommand('mkfs.ext4') && hasCommand('mount') && hasCommand('fsfreeze'), 'needs mkfs.ext4, mount and fsfreeze')) return;
  const { dir, store, id, image } = await backedUpStore(t);
  const content = join(dir, 'content');
  await fs.mkdir(content);
  await fs.writeFile(join(content, 'keep.txt'), 'data a restore must not destroy');
  const backing = join(dir, 'ext4.img');
  ext4Image(backing, 32, content);
  const device = losetup(t, [backing]);
  const at = join(dir, 'at');
  await fs.mkdir(at);
  execFileSync('mount', [device, at]);
  let mounted = true;
  t.teardown(() => mounted && execFileSync('umount', ['-l', at]));
  // Frozen, ext4 has flushed everything and writes nothing more, so the device's sha256 can only change by the restore.
  execFileSync('fsfreeze', ['--freeze', at]);
  await refusesRestore(t, store, id, device, /is in use \(mounted, or held by device-mapper, md or another program\)/);
  execFileSync('fsfreeze', ['--unfreeze', at]);
  t.equal(await fs.readFile(join(at, 'keep.txt'), 'utf8'), 'data a restore must not destroy', 'the mounted filesystem still holds its file');

  execFileSync('umount', [at]);
  mounted = false;
  await cliJson(['restore', '--store', store, id, device]);
  const { size } = await fs.stat(image);
  t.equal(await sha256Head(device, size), await sha256File(image), `the device's first ${size} bytes are the restored disk`);
});

/** The CLI under a given umask: restore must not depend on it either way. */
function cliWithUmask(umask: string, args: string[]): Promise<CliResult> {
  return collect(spawn('sh', ['-c', `umask ${umask} && exec "$0" "$@"`, process.execPath, CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
}

function modeOf(path: string): Promise<number> {
  return fs.stat(path).then((s) => s.mode & 0o7777);
}

/** Whether user nobody can read `path` (its directory is open to everyone, so only the file's mode decides). */
async function nobodyReads(path: string): Promise<boolean> {
  const result = await collect(spawn('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', 'cat', path], { stdio: ['ignore', 'pipe', 'pipe'] }));
  return result.code === 0;
}

t.test('a restored file is private (0600) whatever the umask; --mode sets its mode exactly', async (t) => {
  if (!requireCapability(t, isRoot() && hasCommand('setpriv'), 'needs root and setpriv to read as user nobody')) return;
  const { dir, store, id, image } = await backedUpStore(t);
  await fs.chmod(dir, 0o755);
  const restored = async (name: string, umask: string, args: string[] = []): Promise<string> => {
    const out = join(dir, name);
    const result = await cliWithUmask(umask, ['restore', '--store', store, id, out, ...args]);
    t.equal(result.code, 0, `${name}: restored (${result.stderr.trim()})`);
    t.equal(await sha256File(out), await sha256File(image), `${name}: byte-identical`);
    return out;
  };
  const plain = await restored('plain.img', '000');
  t.equal(await modeOf(plain), 0o600, 'umask 000: still 0600');
  t.notOk(await nobodyReads(plain), 'nobody cannot read it');
  const group = await restored('group.img', '077', ['--mode', '0640']);
  t.equal(await modeOf(group), 0o640, '--mode 0640 under umask 077: 0640');
  t.notOk(await nobodyReads(group), 'nobody cannot read it');
  const open = await restored('open.img', '077', ['--mode', '644']);
  t.equal(await modeOf(open), 0o644, '--mode 644: 0644');
  t.ok(await nobodyReads(open), 'nobody can read a file restored with --mode 644 (the check above can fail)');
});

t.test('an existing target file keeps its mode; --mode changes it', async (t) => {
  const { dir, store, id, image } = await backedUpStore(t);
  const out = join(dir, 'existing.img');
  await fs.writeFile(out, 'older contents, longer than nothing');
  await fs.chmod(out, 0o664);
  await cliJson(['restore', '--store', store, id, out]);
  t.equal(await modeOf(out), 0o664, 'kept its own mode');
  t.equal(await sha256File(out), await sha256File(image));
  await cliJson(['restore', '--store', store, id, out, '--mode', '0600']);
  t.equal(await modeOf(out), 0o600, '--mode 0600 applied to it');
});

t.test('a bad --mode, or --mode for a device, is refused before anything is written', async (t) => {
  const { dir, store, id } = await backedUpStore(t);
  const before = await treeDigest(store);
  const out = join(dir, 'out.img');
  for (const mode of ['8', '0o644', '17777', '-1', '', 'rw']) {
    const result = await cli(['restore', '--store', store, id, out, '--mode', mode]);
    t.equal(result.code, 2, `--mode '${mode}': exit 2`);
    t.equal(result.stderr, `chunkvault: --mode: '${mode}' is not an octal file mode from 0 to 7777 (e.g. 0640)\n`);
  }
  t.notOk(existsSync(out), 'no target created');
  t.equal(await treeDigest(store), before, 'the store is unchanged');
  if (!loopOk(t)) return;
  const backing = join(dir, 'device.img');
  await fs.writeFile(backing, Buffer.alloc(32 * MiB, 7));
  const device = losetup(t, [backing]);
  const result = await cli(['restore', '--store', store, id, device, '--mode', '0600']);
  t.equal(result.code, 2);
  t.equal(result.stderr, `chunkvault: --mode is for a file target; ${device} is a block device (its mode is left alone); nothing was written\n`);
  t.ok((await fs.readFile(backing)).every((b) => b === 7), 'the device is untouched');
});
