/**
 * `chunkvault files` on real ext4, xfs and vfat images built here: listings, extractions that keep
 * every byte and attribute, the errors, time-outs and signals, and nothing left mounted or behind.
 */
import t, { type Test } from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import { promises as fs, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, MiB, cli, cliJson, collect, ext4Image, hasCommand, requireCapability, sha256File, tempDir, treeDigest, writeImage } from '../helpers/index.js';
import { BIG_SIZE, DEEP_LEVELS, ODD_NAME, SPACED_DIR, allocatedBytes, buildGuestTree, describeTree, manifestOf, vfatImage, xfsImage, type Meta } from '../helpers/guest-tree.js';
import { canMount, eventually, startMount } from '../fuse/mounting.js';
import { canPartition, partitionedStore } from '../helpers/partitioned.js';
import { flipByte, ntfsBootSector } from '../helpers/disks.js';

interface Listing {
  restorePoint: string;
  disk: string;
  filesystem: string;
  reader: string;
  entries: { name: string; type: string; mode: number; uid: number; gid: number; size: number; mtime: string; target: string | null }[];
}

interface Extraction {
  filesystem: string;
  to: string;
  files: { path: string; size: number; sha256: string }[];
}

/** Temp dirs, mounts and loop devices a files command may leave: none, ever. */
async function noLeftovers(t: Test, b: Backed): Promise<void> {
  t.same(await leftovers(b.tmp), [], 'no temp dir or mount is left behind');
}

async function leftovers(tmp: string): Promise<string[]> {
  const dirs = (await fs.readdir(tmp)).filter((n) => n.startsWith('chunkvault-files-'));
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((p) => p?.startsWith(tmp));
  const loops = execFileSync('losetup', ['-a'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.includes(tmp));
  return [...dirs, ...mounts, ...loops];
}

/**
 * What a restore point is made of: the format file, catalog, maps and packs. Left out: the index,
 * a rebuildable cache LevelDB compacts on its first open after a backup (any reader's open does).
 */
async function storeContent(store: string): Promise<string> {
  return (await Promise.all(['chunkvault.json', 'catalog', 'maps', 'packs'].map((part) => (part.endsWith('.json') ? sha256File(join(store, part)) : treeDigest(join(store, part)))))).join();
}

interface Backed {
  dir: string;
  store: string;
  id: string;
  tmp: string;
  env: Record<string, string>;
  digest: string;
}

/** A store with one backup of `image`; commands run with TMPDIR in the test's own dir, to see what they leave. */
async function backUp(dir: string, image: string): Promise<Backed> {
  const store = join(dir, 'store');
  const tmp = join(dir, 'tmp');
  await fs.mkdir(tmp);
  await cliJson(['init', '--store', store]);
  const { id } = await cliJson<{ id: string }>(['backup', '--store', store, image]);
  return { dir, store, id, tmp, env: { TMPDIR: tmp }, digest: await storeContent(store) };
}

function topLevel(meta: Record<string, Meta>): [string, Meta][] {
  return Object.entries(meta).filter(([path]) => !path.includes('/'));
}

/** The listing of / against the source tree: every attribute but directory sizes, times to `skew` seconds. */
function checkListing(t: Test, listing: Listing, source: Record<string, Meta>, skew = 1): void {
  const listed = listing.entries.filter((e) => e.name !== 'lost+found');
  t.same(
    listed.map((e) => ({ name: e.name, type: e.type, mode: e.mode, uid: e.uid, gid: e.gid, size: e.type === 'dir' ? 0 : e.size, mtimeSeconds: Math.floor(Date.parse(e.mtime) / 1000 / skew) * skew, target: e.target })),
    topLevel(source).map(([name, m]) => ({ name, type: m.type, mode: m.mode, uid: m.uid, gid: m.gid, size: m.size, mtimeSeconds: Math.floor(m.mtimeSeconds / skew) * skew, target: m.target })),
    'the listing of / shows every entry with its attributes',
  );
}

/** The big file's sha256, computed once: it reads 4 GiB. */
let bigSha: string | undefined;
async function sourceManifest(tree: string): Promise<Extraction['files']> {
  bigSha ??= await sha256File(join(tree, 'big.img'));
  return manifestOf(tree, { 'big.img': bigSha });
}

async function checkExtraction(t: Test, b: Backed, ref: string, tree: string, fsType: string): Promise<string> {
  const out = join(b.dir, `out-${fsType}`);
  const got = await cliJson<Extraction>(['files', '--store', b.store, ref, '--get', '/', '--to', out], b.env);
  t.equal(got.filesystem, fsType);
  t.same(got.files, await sourceManifest(tree), 'the manifest lists every regular file with the sha256 of its source');
  // The big file's 4 GiB are hashed by the command and once for the source: its size, holes and tail are checked instead.
  for (const f of got.files.filter((f) => f.path !== 'big.img')) t.equal(await sha256File(join(out, f.path)), f.sha256, `${f.path} as extracted matches the manifest`);
  t.same(await describeTree(out), await describeTree(tree), 'types, modes, owners, times, symlink targets and hard links are kept');
  t.ok((await allocatedBytes(join(out, 'sparse.bin'))) <= 1 * MiB, 'a sparse file stays sparse');
  return out;
}

const POSIX_TREE = { big: true, posix: true };

t.test('ext4 (fuse2fs): lists /, extracts the whole tree with every attribute, a 4 GiB sparse file and hard links', async (t) => {
  if (!canMount(t)) return;
  if (!requireCapability(t, hasCommand('fuse2fs') && hasCommand('mkfs.ext4'), 'needs fuse2fs and e2fsprogs')) return;
  const dir = await tempDir(t);
  const tree = join(dir, 'tree');
  await buildGuestTree(tree, POSIX_TREE);
  ext4Image(join(dir, 'root.img'), 128, tree);
  const b = await backUp(dir, join(dir, 'root.img'));

  const listing = await cliJson<Listing>(['files', '--store', b.store, `${b.id}:root`], b.env);
  t.match(listing, { restorePoint: b.id, disk: 'root', filesystem: 'ext4', reader: 'fuse2fs' });
  checkListing(t, listing, await describeTree(tree));
  const human = await cli(['files', '--store', b.store, 'root@latest', '/etc'], b.env);
  t.equal(human.code, 0, human.stderr);
  t.match(human.stdout, /^-rw-r-----  1234  5678 +\d+  [\d-]+ [\d:]+  secret$/m, 'human output is ls -l like: mode, uid, gid, size, time, name');
  t.match(human.stdout, new RegExp(`^lrwxrwxrwx .* rel-link -> \\.\\./${SPACED_DIR}/${ODD_NAME}$`, 'm'), 'symlinks show their target');

  const out = await checkExtraction(t, b, `${b.id}:root`, tree, 'ext4');
  t.equal((await fs.stat(join(out, 'big.img'))).size, BIG_SIZE);
  t.ok((await allocatedBytes(join(out, 'big.img'))) <= 1 * MiB, 'the 4 GiB file is extracted as a sparse file');

  const some = join(dir, 'some');
  const picked = await cliJson<Extraction>(['files', '--store', b.store, `${b.id}:root`, '--get', `/${SPACED_DIR}/${ODD_NAME}`, '/etc', '--to', some], b.env);
  t.same(picked.files.map((f) => f.path), [ODD_NAME, 'etc/conf-0', 'etc/conf-1', 'etc/conf-2', 'etc/conf-3', 'etc/conf-4', 'etc/secret'], 'each PATH lands in --to under its own name');
  t.equal((await fs.readFile(join(some, ODD_NAME))).length, 10_000);
  t.equal(b.digest, await storeContent(b.store), 'the store is unchanged');
  await noLeftovers(t, b);
});

t.test('xfs (read-only kernel mount, norecovery): the same tree, extracted with every attribute', async (t) => {
  if (!canMount(t)) return;
  if (!requireCapability(t, hasCommand('mkfs.xfs') && hasCommand('losetup'), 'needs xfsprogs and losetup')) return;
  const dir = await tempDir(t);
  const tree = join(dir, 'tree');
  await buildGuestTree(tree, POSIX_TREE);
  await xfsImage(join(dir, 'data.img'), 320, tree, join(dir, 'build'));
  const b = await backUp(dir, join(dir, 'data.img'));

  const listing = await cliJson<Listing>(['files', '--store', b.store, 'latest:data', '/'], b.env);
  t.match(listing, { filesystem: 'xfs', reader: 'kernel xfs' });
  checkListing(t, listing, await describeTree(tree));
  const out = await checkExtraction(t, b, 'latest:data', tree, 'xfs');
  t.ok((await allocatedBytes(join(out, 'big.img'))) <= 1 * MiB, 'the 4 GiB file is extracted as a sparse file');
  t.equal(b.digest, await storeContent(b.store), 'the store is unchanged');
  await noLeftovers(t, b);
});

t.test('vfat (mtools, no mount): lists and extracts names, contents and times (FAT keeps 2-second times)', async (t) => {
  if (!canMount(t)) return;
  if (!requireCapability(t, hasCommand('mformat') && hasCommand('mcopy') && hasCommand('mdir'), 'needs mtools')) return;
  const dir = await tempDir(t);
  const tree = join(dir, 'tree');
  await buildGuestTree(tree, { big: false, posix: false });
  await vfatImage(join(dir, 'boot.img'), 64, tree);
  const b = await backUp(dir, join(dir, 'boot.img'));

  const listing = await cliJson<Listing>(['files', '--store', b.store, 'latest'], b.env);
  t.match(listing, { filesystem: 'vfat', reader: 'mtools' });
  const source = await describeTree(tree);
  t.same(
    listing.entries.map((e) => [e.name, e.type, e.type === 'dir' ? 0 : e.size]),
    topLevel(source).map(([name, m]) => [name, m.type, m.size]),
    'names, types and sizes',
  );
  t.equal(Date.parse(listing.entries.find((e) => e.name === 'random.bin')!.mtime) / 1000, Math.floor(source['random.bin'].mtimeSeconds / 60) * 60, 'mdir shows times to the minute');
  const deep = await cliJson<Listing>(['files', '--store', b.store, 'latest', `/${Array.from({ length: DEEP_LEVELS }, (_, i) => `level-${String(i + 1).padStart(2, '0')}`).join('/')}`], b.env);
  t.same(deep.entries.map((e) => e.name), ['leaf.txt'], '40 levels down');

  const out = join(dir, 'out');
  const got = await cliJson<Extraction>(['files', '--store', b.store, 'latest', '--get', '/', '--to', out], b.env);
  t.same(got.files, await manifestOf(tree));
  const extracted = await describeTree(out, 2);
  for (const [path, m] of Object.entries(await describeTree(tree, 2))) {
    if (m.type === 'file') t.same([extracted[path]?.size, extracted[path]?.mtimeSeconds], [m.size, m.mtimeSeconds], `${path}: size and time (to 2 s)`);
  }
  t.equal(b.digest, await storeContent(b.store), 'the store is unchanged');
  await noLeftovers(t, b);
});

/** A small ext4 store for the error cases. */
async function smallExt4(t: Test): Promise<Backed & { tree: string }> {
  const dir = await tempDir(t);
  const tree = join(dir, 'tree');
  await buildGuestTree(tree, { big: false, posix: true });
  ext4Image(join(dir, 'root.img'), 48, tree);
  return { ...(await backUp(dir, join(dir, 'root.img'))), tree };
}

/** One line on stderr, the exit code, nothing on stdout, nothing written in the store or --to. */
async function refused(t: Test, b: Backed, args: string[], code: number, message: RegExp, to?: string): Promise<void> {
  const r = await cli(['files', '--store', b.store, ...args], b.env);
  t.equal(r.code, code, `exit ${code}: ${r.stderr}`);
  t.match(r.stderr, message);
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  t.equal(r.stdout, '');
  if (to) t.equal(await fs.stat(to).then(() => 'exists', () => 'absent'), 'absent', 'nothing written');
  t.equal(await storeContent(b.store), b.digest, 'the store is unchanged');
  await noLeftovers(t, b);
}

t.test('bad input: one line, non-zero exit, nothing written', async (t) => {
  if (!canMount(t)) return;
  if (!requireCapability(t, hasCommand('fuse2fs'), 'needs fuse2fs')) return;
  const b = await smallExt4(t);
  const to = join(b.dir, 'never');
  await refused(t, b, ['nope'], 2, /^chunkvault: no restore point 'nope'/);
  await refused(t, b, ['latest:data'], 2, /^chunkvault: restore point [0-9a-f]{16} has no disk 'data' \(it has root\)$/m);
  await refused(t, b, ['latest:root:p1'], 2, /^chunkvault: restore point [0-9a-f]{16} disk root has no partition p1 \(it has no partition table chunkvault can read\)$/m);
  await refused(t, b, ['latest:ro/ot'], 2, /is not REF\[:LABEL\[:pN\]\]/);
  await refused(t, b, ['latest', '/../etc'], 2, /^chunkvault: PATH \/\.\.\/etc: leads outside the filesystem/);
  await refused(t, b, ['latest', '--get', 'etc/../../x', '--to', to], 2, /leads outside the filesystem/, to);
  await refused(t, b, ['latest', '/no/such'], 2, /^chunkvault: PATH \/no\/such: no such file or directory in the filesystem$/m);
  await refused(t, b, ['latest', '--get', '/host-etc/passwd', '--to', to], 2, /^chunkvault: PATH \/host-etc\/passwd: \/host-etc is a symlink \(to \/etc\); give the path it points to$/m, to);
  await refused(t, b, ['latest', '--get', '/etc', '--to', join(b.store, 'x')], 2, /^chunkvault: --to .*: inside the store/);
  await refused(t, b, ['latest', '--get', '/etc'], 2, /give the PATHs to extract and --to DIR/);
  await fs.mkdir(join(b.dir, 'full'));
  await fs.writeFile(join(b.dir, 'full', 'etc'), 'mine');
  await refused(t, b, ['latest', '--get', '/etc', '--to', join(b.dir, 'full')], 2, /full\/etc exists; nothing is overwritten/);
  t.equal(await fs.readFile(join(b.dir, 'full', 'etc'), 'utf8'), 'mine');

  const mnt = join(b.dir, 'mnt');
  await fs.mkdir(mnt);
  await startMount(t, b.store, mnt);
  await refused(t, b, ['latest', '--get', '/etc', '--to', join(mnt, b.id, 'x')], 2, /inside a chunkvault mount/);
});

t.test('a disk with no filesystem, or one no reader here can read: exit 1 naming restore point and disk', async (t) => {
  if (!canMount(t)) return;
  const dir = await tempDir(t);
  await writeImage(join(dir, 'blank.img'), [{ kind: 'random', bytes: 2 * MiB, seed: 5 }]);
  const b = await backUp(dir, join(dir, 'blank.img'));
  await refused(t, b, ['latest'], 1, new RegExp(`^chunkvault: restore point ${b.id} disk blank: holds no filesystem chunkvault knows`));

  const ntfs = Buffer.alloc(2 * MiB);
  ntfsBootSector(512).copy(ntfs);
  await fs.writeFile(join(dir, 'win.img'), ntfs);
  const { id } = await cliJson<{ id: string }>(['backup', '--store', b.store, join(dir, 'win.img')]);
  b.digest = await storeContent(b.store);
  await refused(t, b, [`${id}:win`], 1, new RegExp(`^chunkvault: restore point ${id} disk win: holds ntfs, which cannot be read here: ntfs-3g`));

  // A byte of an ext4 superblock changed: its checksum says so, and no reader is started on it.
  const tree = join(dir, 'tree');
  await buildGuestTree(tree, { big: false, posix: false });
  ext4Image(join(dir, 'flipped.img'), 48, tree);
  await flipByte(join(dir, 'flipped.img'), 1024 + 0x78);
  const bad = await cliJson<{ id: string }>(['backup', '--store', b.store, join(dir, 'flipped.img')]);
  b.digest = await storeContent(b.store);
  await refused(t, b, [`${bad.id}:flipped`], 1, new RegExp(`^chunkvault: restore point ${bad.id} disk flipped: its ext4 superblock is damaged \\(.+\\); no reader was started$`, 'm'));
});

t.test('an ext4 whose superblock is sound but whose group descriptors are not: fuse2fs mounts it, its root cannot be read, exit 1', async (t) => {
  if (!canMount(t)) return;
  if (!requireCapability(t, hasCommand('fuse2fs'), 'needs fuse2fs')) return;
  const dir = await tempDir(t);
  const tree = join(dir, 'tree');
  await buildGuestTree(tree, { big: false, posix: true });
  const image = join(dir, 'root.img');
  ext4Image(image, 48, tree);
  // Past the superblock (bytes 1024-2047): the group descriptors, with 1 KiB or 4 KiB blocks alike.
  const handle = await fs.open(image, 'r+');
  await handle.write(Buffer.alloc(14 * 1024, 0xff), 0, 14 * 1024, 2048);
  await handle.close();
  const b = await backUp(dir, image);
  await refused(t, b, ['latest'], 1, new RegExp(`^chunkvault: restore point ${b.id} disk root: cannot list / in the ext4 filesystem \\(ERANGE from fuse2fs\\)$`, 'm'));
});

t.test('partitions: REF:LABEL:pN reads the filesystem in partition N; a partitioned disk without pN, a missing partition, swap', async (t) => {
  if (!canMount(t) || !canPartition(t)) return;
  if (!requireCapability(t, hasCommand('fuse2fs') && hasCommand('mdir'), 'needs fuse2fs and mtools')) return;
  const p = await partitionedStore(t);
  const tmp = join(p.dir, 'tmp');
  await fs.mkdir(tmp);
  const b: Backed = { dir: p.dir, store: p.store, id: p.id, tmp, env: { TMPDIR: tmp }, digest: await storeContent(p.store) };

  const root = await cliJson<Listing & { partition: number }>(['files', '--store', p.store, `${p.id}:gpt:p2`, '/'], b.env);
  t.match(root, { disk: 'gpt', partition: 2, filesystem: 'ext4', reader: 'fuse2fs' });
  t.same(root.entries.map((e) => e.name), ['etc', 'lost+found', 'random.bin']);
  const out = join(p.dir, 'out');
  const got = await cliJson<Extraction>(['files', '--store', p.store, 'latest:gpt:p2', '--get', '/random.bin', '/etc/hostname', '--to', out], b.env);
  t.same(got.files, [
    { path: 'random.bin', size: 3_000_000, sha256: await sha256File(join(p.tree, 'random.bin')) },
    { path: 'hostname', size: 12, sha256: await sha256File(join(p.tree, 'etc', 'hostname')) },
  ]);
  const esp = await cliJson<Listing>(['files', '--store', p.store, 'latest:mbr:p6'], b.env);
  t.match(esp, { filesystem: 'vfat', reader: 'mtools', entries: [] });
  const ext3 = await cliJson<Listing>(['files', '--store', p.store, 'latest:mbr:p5'], b.env);
  t.match(ext3, { filesystem: 'ext3', reader: 'fuse2fs' });

  await refused(t, b, ['latest:gpt'], 2, new RegExp(`^chunkvault: restore point ${p.id} disk gpt is partitioned: give REF:gpt:pN with one of its partitions \\(p1, p2, p3, p4, p5, p6, p7\\)$`, 'm'));
  await refused(t, b, ['latest:gpt:p9'], 2, new RegExp(`^chunkvault: restore point ${p.id} disk gpt has no partition p9 \\(it has p1, p2, p3, p4, p5, p6, p7\\)$`, 'm'));
  await refused(t, b, ['latest:gpt:p3'], 1, new RegExp(`^chunkvault: restore point ${p.id} disk gpt partition p3: holds swap, which cannot be read here: chunkvault has no reader for swap$`, 'm'));
});

/** The process running `command` on something in this test's temp dir, once there is one. */
async function processOf(command: string, tmp: string): Promise<number> {
  let pid = 0;
  await eventually(async () => {
    for (const p of await fs.readdir('/proc')) {
      if (!/^\d+$/.test(p)) continue;
      const cmd = await fs.readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '');
      if (cmd.startsWith(`${command}\0`) && cmd.includes(tmp)) pid = Number(p);
    }
    return pid > 0;
  }, 20_000, `${command} to start`);
  return pid;
}

/** The fuse2fs serving this test's temp dir, once it mounted. */
async function fuse2fsOf(tmp: string): Promise<number> {
  const pid = await processOf('fuse2fs', tmp);
  await eventually(() => readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.includes(`${tmp}/`) && l.includes(' - fuse.ext4 ')), 20_000, 'fuse2fs to mount');
  return pid;
}

t.test('a reader that hangs: time-out, exit 1 naming restore point and disk, everything torn down', async (t) => {
  if (!canMount(t)) return;
  if (!requireCapability(t, hasCommand('fuse2fs'), 'needs fuse2fs')) return;
  const dir = await tempDir(t);
  const tree = join(dir, 'tree');
  await buildGuestTree(tree, POSIX_TREE);
  ext4Image(join(dir, 'root.img'), 128, tree);
  const b = await backUp(dir, join(dir, 'root.img'));
  const out = join(dir, 'out');
  const child = spawn(process.execPath, [CLI, 'files', '--store', b.store, 'latest', '--get', '/big.img', '--to', out, '--timeout', '2'], { env: { ...process.env, ...b.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const result = collect(child);
  const pid = await fuse2fsOf(b.tmp);
  // Once the copy is under way (4 GiB through fuse2fs: many seconds), a stopped reader answers nothing, like one stuck in a loop.
  await processOf('cp', b.tmp);
  process.kill(pid, 'SIGSTOP');
  const r = await result;
  t.equal(r.code, 1, r.stderr);
  t.match(r.stderr, new RegExp(`^chunkvault: restore point ${b.id} disk root: cannot copy from the ext4 filesystem \\(cp made no progress for 2 s\\)`));
  t.equal(r.stderr.trim().split('\n').length, 1);
  t.equal(await fs.stat(`/proc/${pid}`).then(() => 'alive', () => 'gone'), 'gone', 'the hung reader was killed');
  await noLeftovers(t, b);
});

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  t.test(`${signal} during an extraction: the copy stops, everything is torn down, exit ${signal === 'SIGINT' ? 130 : 143}`, async (t) => {
    if (!canMount(t)) return;
    if (!requireCapability(t, hasCommand('fuse2fs'), 'needs fuse2fs')) return;
    const dir = await tempDir(t);
    const tree = join(dir, 'tree');
    await buildGuestTree(tree, POSIX_TREE);
    ext4Image(join(dir, 'root.img'), 128, tree);
    const b = await backUp(dir, join(dir, 'root.img'));
    const child = spawn(process.execPath, [CLI, 'files', '--store', b.store, 'latest', '--get', '/big.img', '--to', join(dir, 'out')], { env: { ...process.env, ...b.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const result = collect(child);
    const pid = await fuse2fsOf(b.tmp);
    child.kill(signal);
    const r = await result;
    t.equal(r.code, signal === 'SIGINT' ? 130 : 143, r.stderr);
    t.equal(r.stderr, `chunkvault: interrupted by ${signal}\n`);
    await eventually(() => fs.stat(`/proc/${pid}`).then(() => false, () => true), 10_000, 'fuse2fs to end');
    await noLeftovers(t, b);
  });
}
