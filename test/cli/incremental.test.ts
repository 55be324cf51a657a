/**
 * Issue 4 end to end through the real CLI: incremental backups from a changed-block list
 * on a real ext4 image, size changes, validation before anything is written, and a file
 * backed up from its filesystem's raw device with the table `chunkvault extents` prints.
 */
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { diffBlocks } from '../../bench/workload.js';
import { openStore, runBackup, type BackupRequest } from '../../engine/index.js';
import { MiB, cli, cliJson, compressibleText, ext4Image, hasCommand, isRoot, requireCapability, restoresIdentically, seededBytes, sha256File, tempDir, treeDigest, writeImage } from '../helpers/index.js';

const CS = 64 * 1024;

interface Report {
  id: string;
  kind: 'full' | 'cbt' | 'extents';
  parent: string | null;
  disks: { label: string; size: number }[];
  bytesRead: number;
  chunksTotal: number;
  chunksNew: number;
  secondsThrottled: number;
}

interface Range {
  offset: number;
  length: number;
}

/**
 * What a CBT backup of a fully allocated image must read: the changed 4 KiB blocks of each
 * slot, or the whole slot where they leave less than 1/16 of it (plan.ts MIN_SPARED_SHARE).
 */
function bytesOfChangedBlocks(ranges: Range[], size: number): number {
  const blocks = new Map<number, Set<number>>();
  for (const r of ranges) {
    for (let b = Math.floor(r.offset / 4096); b * 4096 < r.offset + r.length; b++) {
      const slot = Math.floor((b * 4096) / CS);
      blocks.set(slot, (blocks.get(slot) ?? new Set()).add(b));
    }
  }
  let sum = 0;
  for (const [slot, set] of blocks) {
    const length = Math.min(CS, size - slot * CS);
    const changed = Array.from(set).reduce((s, b) => s + Math.min(4096, size - b * 4096), 0);
    sum += length - changed < length / 16 ? length : changed;
  }
  return sum;
}

async function writeCbt(path: string, changed: Range[]): Promise<string> {
  await fs.writeFile(path, JSON.stringify({ changed }));
  return path;
}

async function fileTree(dir: string): Promise<void> {
  await fs.mkdir(join(dir, 'etc'), { recursive: true });
  await fs.mkdir(join(dir, 'data'), { recursive: true });
  for (let i = 0; i < 30; i++) await fs.writeFile(join(dir, 'etc', `conf-${i}.txt`), compressibleText(5_000 + i * 1_313, i));
  for (let i = 0; i < 8; i++) await fs.writeFile(join(dir, 'data', `blob-${i}.bin`), seededBytes(200 + i, 1_000_000 + i * 55_555));
}

/** Loop-mounts `image` read-write for `use`; the teardown cleans up when `use` fails half-way. */
async function withMount(t: Test, image: string, mountpoint: string, use: (root: string) => Promise<void>): Promise<void> {
  await fs.mkdir(mountpoint, { recursive: true });
  execFileSync('mount', ['-o', 'loop', image, mountpoint]);
  let mounted = true;
  const unmount = (): void => {
    if (mounted) execFileSync('umount', [mountpoint]);
    mounted = false;
  };
  t.teardown(unmount);
  await use(mountpoint);
  unmount();
}

/** A day on the VM: files deleted, files added, blocks rewritten in place. */
async function dayOfChanges(root: string): Promise<void> {
  for (const i of [3, 7, 11]) await fs.rm(join(root, 'etc', `conf-${i}.txt`));
  await fs.rm(join(root, 'data', 'blob-5.bin'));
  await fs.writeFile(join(root, 'data', 'new-0.bin'), seededBytes(300, 700_000));
  await fs.writeFile(join(root, 'etc', 'new.conf'), compressibleText(20_000, 99));
  const blob = await fs.open(join(root, 'data', 'blob-2.bin'), 'r+');
  for (const at of [0, 300_000, 812_345]) await blob.write(seededBytes(at, 4096), 0, 4096, at);
  await blob.close();
  execFileSync('sync');
}

const loopOk = (t: Test): boolean => requireCapability(t, isRoot() && hasCommand('losetup') && hasCommand('mkfs.ext4'), 'needs root, loop devices and mkfs.ext4');

t.test('a day of changes on ext4: CBT incremental reads only the changed blocks, both points restore exactly', async (t) => {
  if (!loopOk(t)) return;
  const dir = await tempDir(t);
  await fileTree(join(dir, 'tree'));
  const sparse = join(dir, 'sparse.img');
  ext4Image(sparse, 48, join(dir, 'tree'));
  // Fully allocated images: every block the CBT list touches is read, with no hole in it,
  // so bytesRead has one exact expected value.
  const day1 = join(dir, 'day1.img');
  const day2 = join(dir, 'day2.img');
  execFileSync('cp', ['--sparse=never', sparse, day1]);
  execFileSync('cp', ['--sparse=never', day1, day2]);
  await withMount(t, day2, join(dir, 'mnt'), dayOfChanges);
  const size = (await fs.stat(day2)).size;
  const changed = await diffBlocks(day1, day2, 4096);
  t.ok(changed.length > 5, `${changed.length} changed ranges, ${changed.reduce((s, r) => s + r.length, 0)} bytes`);
  const cbt = await writeCbt(join(dir, 'day2.cbt.json'), changed);

  const store = join(dir, 'store');
  await cliJson(['init', '--store', store, '--chunk-size', '64K']);
  const full = await cliJson<Report>(['backup', '--store', store, `sda=${day1}`, '--name', 'vm', '--time', '2026-11-20T23:00:00Z']);
  t.match(full, { kind: 'full', parent: null, bytesRead: size, secondsThrottled: 0 });

  const incremental = await cliJson<Report>(['backup', '--store', store, `sda=${day2}`, '--name', 'vm', '--time', '2026-11-21T23:00:00Z', '--parent', 'vm@latest', '--changed', cbt]);
  t.match(incremental, { kind: 'cbt', parent: full.id, chunksTotal: size / CS });
  const expected = bytesOfChangedBlocks(changed, size);
  t.equal(incremental.bytesRead, expected, `reads exactly the ${expected / 4096} changed blocks`);
  t.ok(expected < size / 4, 'a small share of the disk');

  await restoresIdentically(t, store, full.id, day1, join(dir, 'restored-full.img'));
  await restoresIdentically(t, store, incremental.id, day2, join(dir, 'restored-cbt.img'));

  const parentOnly = await cliJson<Report>(['backup', '--store', store, `sda=${day2}`, '--name', 'vm', '--time', '2026-11-22T23:00:00Z', '--parent', incremental.id]);
  t.match(parentOnly, { kind: 'full', parent: incremental.id, bytesRead: size, chunksNew: 0 }, 'without --changed every slot is read, nothing new stored');

  const list = await cliJson<{ id: string; kind: string; parent: string | null; bytesNew: number; held: boolean }[]>(['list', '--store', store]);
  t.same(
    list.map((p) => [p.id, p.kind, p.parent]),
    [
      [parentOnly.id, 'full', incremental.id],
      [incremental.id, 'cbt', full.id],
      [full.id, 'full', null],
    ],
    'list --json shows how each point was made and its parent',
  );
  t.ok(list.every((p) => typeof p.bytesNew === 'number' && p.held === false), 'the existing fields stay');

  await t.test('a CBT list missing a change: the wrong image, but a consistent store', async (t) => {
    const blobBlock = changed.reduce((a, b) => (b.length > a.length ? b : a));
    const missing = await writeCbt(join(dir, 'missing.cbt.json'), changed.filter((r) => r !== blobBlock));
    const wrong = await cliJson<Report>(['backup', '--store', store, `sda=${day2}`, '--name', 'vm', '--parent', full.id, '--changed', missing]);
    const out = join(dir, 'wrong.img');
    await cliJson(['restore', '--store', store, wrong.id, out]);
    t.not(await sha256File(out), await sha256File(day2), 'the change the list left out is not in the restore point');
    const verified = await cli(['verify', '--store', store, '--read-data']);
    t.equal(verified.code, 0, verified.stderr);
    t.match(verified.stdout, /clean/);
  });
});

t.test('without --parent the newest restore point of the name is the parent; --no-parent and a damaged one mean none', async (t) => {
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  await cliJson(['init', '--store', store, '--chunk-size', '64K']);
  const [day1, day2] = [join(dir, 'day1.img'), join(dir, 'day2.img')];
  const size = await writeImage(day1, [{ kind: 'text', bytes: 40 * CS }]);
  await fs.copyFile(day1, day2);
  await fs.writeFile(day2, seededBytes(8, 3 * CS), { flag: 'r+' });
  const backup = (image: string, ...extra: string[]): Promise<Report> => cliJson<Report>(['backup', '--store', store, `sda=${image}`, '--name', 'vm', ...extra]);

  const first = await backup(day1);
  t.match(first, { kind: 'full', parent: null });
  const second = await backup(day2);
  t.match(second, { kind: 'full', parent: first.id, bytesRead: size, chunksNew: 3 }, 'every slot read; only the 3 rewritten ones stored');
  const unrelated = await cliJson<Report>(['backup', '--store', store, `sda=${day2}`, '--name', 'db']);
  t.equal(unrelated.parent, null, 'another name has no parent');
  const none = await backup(day2, '--no-parent');
  t.match(none, { kind: 'full', parent: null, chunksNew: 0 });

  await fs.writeFile(join(store, 'maps', none.id, 'sda.map'), 'short');
  const afterDamage = await backup(day1);
  t.match(afterDamage, { kind: 'full', parent: null }, 'the newest point has a damaged map: backed up without a parent');
  await restoresIdentically(t, store, second.id, day2, join(dir, 'restored-second.img'));
  await restoresIdentically(t, store, afterDamage.id, day1, join(dir, 'restored-after-damage.img'));
  const explicit = await cli(['backup', '--store', store, `sda=${day1}`, '--name', 'vm', '--parent', none.id]);
  t.equal(explicit.code, 1, 'a named parent with a damaged map is an error, not silently dropped');
  t.match(explicit.stderr, /chunk map truncated \(5 bytes, \d+ expected\)/);
});

t.test('bad extent maps, CBT lists, parents and limits are refused before anything is written', async (t) => {
  const dir = await tempDir(t);
  const storeDir = join(dir, 'store');
  await cliJson(['init', '--store', storeDir, '--chunk-size', '64K']);
  const image = join(dir, 'sda.img');
  await writeImage(image, [{ kind: 'random', bytes: 2 * MiB, seed: 3 }]);
  const other = join(dir, 'sdb.img');
  await writeImage(other, [{ kind: 'random', bytes: MiB, seed: 4 }]);
  const base = await cliJson<Report>(['backup', '--store', storeDir, `sda=${image}`, '--name', 'vm']);
  await cliJson(['backup', '--store', storeDir, `sda=${image}`, '--name', 'db']);
  const file = async (name: string, content: unknown): Promise<string> => {
    const path = join(dir, name);
    await fs.writeFile(path, typeof content === 'string' ? content : JSON.stringify(content));
    return path;
  };
  const goodCbt = await file('good.cbt.json', { changed: [{ offset: 0, length: 4096 }] });
  const before = await treeDigest(storeDir);

  // The engine's façade, in this process: every check, quickly.
  const store = await openStore(storeDir);
  const sda = { sources: [`sda=${image}`], name: 'vm' };
  const cases: [string, BackupRequest, string, RegExp][] = [
    ['--changed without --parent', { ...sda, changed: [goodCbt] }, 'CV_INVALID_INPUT', /--changed needs --parent REF/],
    ['CBT not JSON', { ...sda, parent: base.id, changed: [await file('a.json', '{"changed": [')] }, 'CV_INVALID_INPUT', /a\.json: not valid JSON/],
    [
      'CBT negative offset',
      { ...sda, parent: base.id, changed: [await file('b.json', { changed: [{ offset: -1, length: 5 }] })] },
      'CV_INVALID_INPUT',
      /b\.json: changed\[0\]\.offset must be a whole number of bytes, 0 or more, got -1/,
    ],
    [
      'CBT past the disk',
      { ...sda, parent: base.id, changed: [await file('c.json', { changed: [{ offset: 2 * MiB - 1, length: 2 }] })] },
      'CV_INVALID_INPUT',
      /c\.json: changed\[0\] \(bytes 2097151-2097152\) ends past the disk, which has 2097152 bytes/,
    ],
    ['CBT file missing', { ...sda, parent: base.id, changed: [join(dir, 'nope.json')] }, 'CV_INVALID_INPUT', /--changed .*nope\.json: cannot read it \(no such file\)/],
    ['parent of another name', { ...sda, parent: 'db@latest', changed: [goodCbt] }, 'CV_INVALID_INPUT', /--parent db@latest is restore point [0-9a-f]{16} of 'db', but this backup is named 'vm'/],
    ['parent without that disk', { sources: [`sdb=${other}`], name: 'vm', parent: base.id, changed: [`sdb=${goodCbt}`] }, 'CV_INVALID_INPUT', /parent [0-9a-f]{16} has no disk 'sdb' \(it has sda\)/],
    ['unknown parent', { ...sda, parent: 'ffffffffffffffff' }, 'CV_UNKNOWN_REF', /no restore point 'ffffffffffffffff'/],
    ['--changed for a disk not in the backup', { ...sda, parent: base.id, changed: [`sdc=${goodCbt}`] }, 'CV_INVALID_INPUT', /no disk 'sdc' in this backup \(disks: sda\)/],
    [
      'unlabelled --changed with two disks',
      { sources: [`sda=${image}`, `sdb=${other}`], name: 'vm', parent: base.id, changed: [goodCbt] },
      'CV_INVALID_INPUT',
      /there are 2 disks \(sda, sdb\); name one: --changed LABEL=/,
    ],
    [
      'overlapping extents',
      { ...sda, extents: [await file('d.json', { size: MiB, extents: [{ offset: 0, length: 8192 }, { offset: 4096, length: 10 }] })] },
      'CV_INVALID_INPUT',
      /d\.json: extents\[1\] \(disk bytes from 4096\) overlaps extents\[0\]/,
    ],
    [
      'extent past the source',
      { ...sda, extents: [await file('e.json', { size: 4 * MiB, extents: [{ offset: 0, length: MiB, sourceOffset: 1.5 * MiB }] })] },
      'CV_INVALID_INPUT',
      /e\.json: extents\[0\] reads bytes 1572864-2621439 of .*sda\.img, which has only 2097152 bytes/,
    ],
    ['--max-latency 0', { ...sda, maxLatencyMs: 0 }, 'CV_INVALID_INPUT', /--max-latency must be a positive number of milliseconds, got 0/],
  ];
  for (const [what, request, code, message] of cases) await t.rejects(runBackup(store, request), { code, message }, what);

  // The CLI: flags parsed, the same errors as one line for a person and exit 2.
  const backup = ['backup', '--store', storeDir, '--name', 'vm', `sda=${image}`];
  const cliCases: [string, string[], RegExp][] = [
    ['extent size not a number', [...backup, '--extents', await file('f.json', { size: '4G', extents: [] })], /^chunkvault: .*f\.json: "size" must be a whole number of bytes, 1 or more, got "4G"\n$/],
    ['--max-rate text', [...backup, '--max-rate', 'fast'], /^chunkvault: --max-rate: 'fast' is not a positive number\n$/],
    ['parent of another name', [...backup, '--parent', 'db@latest'], /^chunkvault: --parent db@latest is restore point [0-9a-f]{16} of 'db'/],
    ['--changed with --no-parent', [...backup, '--no-parent', '--changed', goodCbt], /^chunkvault: --changed needs --parent REF/],
  ];
  for (const [what, args, message] of cliCases) {
    const result = await cli(args);
    t.equal(result.code, 2, `${what}: exit 2`);
    t.match(result.stderr, message, what);
  }
  t.equal(await treeDigest(storeDir), before, 'the store is untouched by every refused backup');
});

t.test('`chunkvault extents FILE`: the file backed up from the raw loop device restores byte for byte', async (t) => {
  if (!loopOk(t)) return;
  const dir = await tempDir(t);
  await fileTree(join(dir, 'tree'));
  const image = join(dir, 'fs.img');
  ext4Image(image, 32, join(dir, 'tree'));
  const device = execFileSync('losetup', ['-f', '--show', image], { encoding: 'utf8' }).trim();
  t.teardown(() => execFileSync('losetup', ['-d', device]));
  const mnt = join(dir, 'mnt');
  await fs.mkdir(mnt);
  execFileSync('mount', [device, mnt]);
  t.teardown(() => execFileSync('umount', [mnt]));
  // A virtual disk file: data, a hole, interleaved writes with another file (fragments),
  // a preallocated extent (reads as zero) and an odd tail.
  const disk = join(mnt, 'vm-disk.raw');
  const noise = join(mnt, 'noise.bin');
  const [a, b] = [await fs.open(disk, 'w'), await fs.open(noise, 'w')];
  for (let i = 0; i < 6; i++) {
    await a.write(seededBytes(10 + i, 256 * 1024), 0, 256 * 1024, i * 256 * 1024);
    await a.sync();
    await b.write(seededBytes(50 + i, 64 * 1024), 0, 64 * 1024, i * 64 * 1024);
    await b.sync();
  }
  await a.write(seededBytes(20, 5000), 0, 5000, 4 * MiB + 3);
  await a.close();
  await b.close();
  execFileSync('fallocate', ['-n', '-o', String(2 * MiB), '-l', String(MiB), disk]);

  const human = await cli(['extents', disk]);
  t.equal(human.code, 0, human.stderr);
  t.match(human.stdout, new RegExp(`on ${device}\\n`));
  t.match(human.stdout, /OFFSET\s+LENGTH\s+DEVICE OFFSET/);
  const map = await cliJson<{ device: string; size: number; extents: { offset: number; length: number; sourceOffset: number }[] }>(['extents', disk]);
  t.equal(map.device, device);
  t.equal(map.size, 4 * MiB + 5003);
  t.ok(map.extents.length >= 3, `${map.extents.length} extents`);
  const table = join(dir, 'vm-disk.extents.json');
  await fs.writeFile(table, JSON.stringify(map));

  const store = join(dir, 'store');
  await cliJson(['init', '--store', store, '--chunk-size', '64K']);
  const report = await cliJson<Report>(['backup', '--store', store, `disk=${device}`, '--extents', `disk=${table}`, '--name', 'vm']);
  t.match(report, { kind: 'extents', disks: [{ label: 'disk', size: map.size }] });
  t.equal(report.bytesRead, map.extents.reduce((s, e) => s + e.length, 0), 'only the extents are read from the device');
  const out = join(dir, 'restored.raw');
  await cliJson(['restore', '--store', store, 'latest', out]);
  t.equal(await sha256File(out), await sha256File(disk), 'restore equals the file');
});

t.test('the human output says what came from the source and what from the parent in the store', async (t) => {
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  await cliJson(['init', '--store', store, '--chunk-size', '64K', '--compression', 'none']);
  const [day1, day2] = [join(dir, 'day1.img'), join(dir, 'day2.img')];
  await writeImage(day1, [{ kind: 'random', bytes: 4 * CS, seed: 21 }]);
  await fs.copyFile(day1, day2);
  await fs.writeFile(day2, seededBytes(22, 100), { flag: 'r+' });
  const cbt = await writeCbt(join(dir, 'day2.cbt.json'), [{ offset: 0, length: 100 }]);
  const full = await cliJson<Report>(['backup', '--store', store, `sda=${day1}`, '--name', 'vm']);
  const run = await cli(['backup', '--store', store, `sda=${day2}`, '--name', 'vm', '--parent', full.id, '--changed', cbt]);
  t.equal(run.code, 0, run.stderr);
  // One 4 KiB block from the source; the parent's uncompressed record of slot 0 (64 KiB and a 48-byte header) from the store.
  t.match(run.stdout, /^ {2}read 4\.0 KiB from the source and 64\.0 KiB of the parent's chunks from the store, stored 64\.0 KiB new; /m);
});
