/** Bad input to recover: one line naming what is wrong, exit 2, nothing created (no state, no registry entry, no TARGET, store unchanged). */
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { dirname, join } from 'node:path';
import { MiB, backedUpStore, cliJson, ext4Image, hasCommand, isRoot, mixedImage, requireCapability, treeDigest, writeImage } from '../helpers/index.js';
import { canMount, isMountpoint } from './mounting.js';
import { sessionEnv, type SessionEnv } from './recovering.js';

interface Setup {
  dir: string;
  store: string;
  id: string;
  mnt: string;
  sessions: SessionEnv;
}

async function setup(t: Test): Promise<Setup> {
  const { dir, store, id } = await backedUpStore(t);
  const mnt = join(dir, 'mnt');
  await fs.mkdir(mnt);
  return { dir, store, id, mnt, sessions: await sessionEnv(t) };
}

async function snapshot(s: Setup): Promise<string[]> {
  const registry = s.sessions.env.CHUNKVAULT_SESSIONS;
  const entries = await fs.readdir(registry).catch(() => [] as string[]);
  return [...(await fs.readdir(s.dir)).sort(), ...(await fs.readdir(s.mnt)), `registry: ${entries.length}`, ...(await Promise.all(['packs', 'catalog', 'maps'].map((p) => treeDigest(join(s.store, p)))))];
}

/** Runs `recover ARGS`, expects one line matching `message` and exit 2, and that nothing was created. */
async function refused(t: Test, s: Setup, args: string[], message: RegExp, what: string): Promise<void> {
  const before = await snapshot(s);
  const result = await s.sessions.run(['recover', ...args]);
  t.equal(result.code, 2, `${what}: exit 2`);
  const lines = result.stderr.split('\n').filter(Boolean);
  t.equal(lines.length, 1, `${what}: one line`);
  t.match(lines[0], message, `${what}: ${lines[0]}`);
  t.same(await snapshot(s), before, `${what}: nothing created`);
}

t.test('refs, labels, directories, options', async (t) => {
  if (!canMount(t)) return;
  const s = await setup(t);
  const { store, id, mnt } = s;
  await refused(t, s, ['--store', store, 'ffff0000', mnt], /^chunkvault: no restore point 'ffff0000'$/, 'unknown REF');
  await refused(t, s, ['--store', store, id, '--disk', 'nope', mnt], new RegExp(`^chunkvault: restore point ${id} has no disk 'nope' \\(it has disk\\)$`), 'unknown LABEL');
  const full = join(s.dir, 'full');
  await fs.mkdir(full);
  await fs.writeFile(join(full, 'x'), 'x');
  await refused(t, s, ['--store', store, id, full], /^chunkvault: mountpoint .*\/full is not empty$/, 'DIR not empty');
  await refused(t, s, ['--store', store, id, join(store, 'locks')], /^chunkvault: mountpoint .*\/store\/locks is inside the store .*; choose a directory outside it \(nothing was created\)$/, 'DIR inside the store');
  await refused(t, s, ['--store', store, id, mnt, '--state', join(mnt, 'state')], /^chunkvault: --state .*\/mnt\/state is inside .*\/mnt, which the session mounts over/, '--state inside DIR');
  await refused(t, s, ['--store', store, id, mnt, '--state', join(store, 'state')], /^chunkvault: --state .*\/store\/state is inside the store/, '--state inside the store');
  await refused(t, s, ['--store', store, id, mnt, '--max-rate', '5'], /^chunkvault: --max-rate paces hydration: it needs --to TARGET \(nothing was created\)$/, '--max-rate without --to');
  await refused(t, s, ['--store', store, id, mnt, '--to', join(s.dir, 't.img'), '--max-rate', '0'], /^chunkvault: --max-rate must be a positive number of MB\/s, got 0$/, '--max-rate 0');
  await refused(t, s, ['--store', store, id, mnt, '--list'], /^chunkvault: recover REF DIR starts a session; --list takes no REF/, 'REF with --list');
  await refused(t, s, ['--stop', mnt], /^chunkvault: no recovery session on .*\/mnt \(chunkvault recover --list shows them\)$/, '--stop without a session');
  await refused(t, s, ['--resume', mnt], /^chunkvault: no recovery session on/, '--resume without a session');
});

t.test('targets: the store, too small, a mounted filesystem', async (t) => {
  if (!canMount(t)) return;
  if (!requireCapability(t, isRoot() && hasCommand('losetup') && hasCommand('mkfs.ext4'), 'needs root, losetup and mkfs.ext4')) return;
  const s = await setup(t);
  const { store, id, mnt } = s;
  const [pack] = await fs.readdir(join(store, 'packs'));
  await refused(t, s, ['--store', store, id, mnt, '--to', join(store, 'packs', pack)], /^chunkvault: target .* is inside the store .*; restore never writes there/, 'TARGET in the store');
  await refused(t, s, ['--store', store, id, mnt, '--to', store], /^chunkvault: target .* is the store directory/, 'TARGET the store');

  const smallFile = join(s.dir, 'small.img');
  await writeImage(smallFile, [{ kind: 'zerofill', bytes: MiB }]);
  const small = execFileSync('losetup', ['-f', '--show', smallFile], { encoding: 'utf8' }).trim();
  t.teardown(() => execFileSync('losetup', ['-d', small]));
  await refused(t, s, ['--store', store, id, mnt, '--to', small], new RegExp(`^chunkvault: target ${small} holds 1048576 bytes, the disk needs \\d+$`), 'TARGET smaller than the disk');

  const fsFile = join(s.dir, 'fs.img');
  const tree = join(s.dir, 'tree');
  await fs.mkdir(tree);
  ext4Image(fsFile, 32, tree);
  const busy = execFileSync('losetup', ['-f', '--show', fsFile], { encoding: 'utf8' }).trim();
  t.teardown(() => execFileSync('losetup', ['-d', busy]));
  const inside = join(dirname(fsFile), 'inside');
  await fs.mkdir(inside);
  execFileSync('mount', [busy, inside]);
  t.teardown(() => isMountpoint(inside) && execFileSync('umount', [inside]));
  await refused(t, s, ['--store', store, id, mnt, '--to', busy], /^chunkvault: target .* is in use \(mounted, or held by device-mapper, md or another program\)/, 'TARGET a mounted filesystem');
});

t.test('a second session on one DIR or one TARGET; backup, prune and gc run while a session serves, and keep its point', async (t) => {
  if (!canMount(t)) return;
  const s = await setup(t);
  const { store, id, mnt } = s;
  const target = join(s.dir, 'target.img');
  const running = await s.sessions.start(['--store', store, id, mnt, '--to', target], mnt);
  await refused(t, s, ['--store', store, id, mnt], /^chunkvault: .*\/mnt has a recovery session already: --resume, --stop or --discard it/, 'a second session on DIR');
  const other = join(s.dir, 'other');
  await fs.mkdir(other);
  await refused(t, s, ['--store', store, id, other, '--to', target], /^chunkvault: target .*target\.img is the target of the recovery session on .*\/mnt; choose another target/, 'a second session on TARGET');
  await refused(t, s, ['--resume', mnt], /^chunkvault: the recovery session on .*\/mnt is being served \(pid \d+ on .*\); --stop it first$/, '--resume of a served session');

  // A backup runs while the session serves; prune and gc leave the session's restore point alone.
  const newer = join(s.dir, 'newer', 'disk.img');
  await fs.mkdir(dirname(newer));
  await mixedImage(newer, 2);
  await cliJson(['backup', '--store', store, newer]);
  // The session pins its point: prune keeps it and says why; gc runs and keeps its chunks.
  const prune = await s.sessions.run(['prune', '--store', store, '--keep-last', '1', '--json']);
  t.equal(prune.code, 0, `prune ran: ${prune.stderr}`);
  const kept = (JSON.parse(prune.stdout) as { points: { id: string; action: string; reasons: string[] }[] }).points.find((d) => d.id === id);
  t.equal(kept?.action, 'keep', 'the session\'s restore point is kept');
  t.match(kept?.reasons.join('; '), /pinned by 'recover' \(pid \d+ on /);
  const gc = await s.sessions.run(['gc', '--store', store, '--max-unused', '0']);
  t.equal(gc.code, 0, `gc ran beside the session: ${gc.stderr}`);
  t.equal((await s.sessions.run(['verify', '--store', store, '--read-data'])).code, 0, 'gc deleted nothing the session or any point uses');
  t.equal((await s.sessions.run(['recover', '--discard', mnt])).code, 0);
  await running.exited;
  t.same(await fs.readdir(mnt), [], '--discard unmounted');
  await t.rejects(fs.stat(`${mnt}.chunkvault-session`), { code: 'ENOENT' }, '--discard deleted the state');
  t.ok((await fs.stat(target)).isFile(), '--discard kept TARGET');
});
