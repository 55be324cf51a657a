/**
 * Incremental restore through the real CLI: --onto KNOWN_REF (and --changed) writes only the
 * slots whose ids differ, --compare reads and hashes the target and writes what differs; on
 * files and a loop device, after kill -9, and refusals that leave target and store unchanged.
 */
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { dataRanges } from '../../engine/holes.js';
import { CRASH_ENV } from '../../engine/crash.js';
import { startFaultyFs } from '../../bench/faulty-fs.js';
import { canMount } from '../fuse/mounting.js';
import { storeState } from '../helpers/faulty.js';
import { MiB, cli, cliJson, hasCommand, isRoot, mounted, requireCapability, seededBytes, sha256File, sha256Head, tempDir, treeDigest, writeImage } from '../helpers/index.js';

/** 25 slots of 1 MiB, the last one 12345 bytes: random, text, two zero slots, random. */
const SIZE = 24 * MiB + 12345;
const TAIL = 24 * MiB;

interface Summary {
  mode: string;
  onto: string | null;
  bytesRead: number;
  bytesWritten: number;
  bytesPunched: number;
  slotsWritten: number;
}

async function writeAt(path: string, offset: number, data: Buffer): Promise<void> {
  const handle = await fs.open(path, 'r+');
  try {
    await handle.write(data, 0, data.length, offset);
  } finally {
    await handle.close();
  }
}

function known(path: string): Promise<number> {
  return writeImage(path, [
    { kind: 'random', bytes: 16 * MiB, seed: 1 },
    { kind: 'text', bytes: 4 * MiB },
    { kind: 'zerofill', bytes: 2 * MiB },
    { kind: 'random', bytes: 2 * MiB + 12345, seed: 2 },
  ]);
}

/**
 * The known disk with four slots changed: slot 2 rewritten, slot 5 zeroed, slot 20 (zero
 * before) filled, the partial last slot rewritten.
 */
async function changed(path: string): Promise<void> {
  await known(path);
  await writeAt(path, 2 * MiB, seededBytes(50, MiB));
  await writeAt(path, 5 * MiB, Buffer.alloc(MiB));
  await writeAt(path, 20 * MiB, seededBytes(51, MiB));
  await writeAt(path, TAIL, seededBytes(52, 12345));
}

interface Fixture {
  dir: string;
  store: string;
  images: { a: string; b: string; other: string };
  /** Restore points of 'vm': a (known), b (a with four slots changed), other (all slots differ). */
  ids: { a: string; b: string; other: string };
}

async function fixture(t: Test): Promise<Fixture> {
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  const images = { a: join(dir, 'a.img'), b: join(dir, 'b.img'), other: join(dir, 'other.img') };
  await known(images.a);
  await changed(images.b);
  await writeImage(images.other, [{ kind: 'random', bytes: SIZE, seed: 9 }]);
  await cliJson(['init', '--store', store]);
  const backup = async (image: string): Promise<string> => (await cliJson<{ id: string }>(['backup', '--store', store, '--name', 'vm', `disk=${image}`])).id;
  return { dir, store, images, ids: { a: await backup(images.a), b: await backup(images.b), other: await backup(images.other) } };
}

async function restoreJson(store: string, args: string[], env: Record<string, string> = {}): Promise<Summary> {
  return cliJson<Summary>(['restore', '--store', store, ...args], env);
}

function overlaps(ranges: { offset: number; length: number }[], offset: number, length: number): boolean {
  return ranges.some((r) => r.offset < offset + length && offset < r.offset + r.length);
}

function losetup(t: Test, file: string): string {
  const device = execFileSync('losetup', ['-f', '--show', file], { encoding: 'utf8' }).trim();
  t.teardown(() => execFileSync('losetup', ['-d', device]));
  return device;
}

t.test('--onto a file: only the four changed slots are written, nothing is read, a zeroed slot is a hole again', async (t) => {
  const { dir, store, images, ids } = await fixture(t);
  const target = join(dir, 'replica.img');
  await restoreJson(store, [ids.a, target]);

  const forward = await restoreJson(store, [ids.b, target, '--onto', ids.a]);
  t.match(forward, { mode: 'onto', onto: ids.a, bytesRead: 0, bytesWritten: 2 * MiB + 12345, bytesPunched: MiB, slotsWritten: 4 });
  t.equal(await sha256File(target), await sha256File(images.b), 'the target is b');
  const data = await dataRanges(target, SIZE);
  t.notOk(overlaps(data, 5 * MiB, MiB), 'slot 5, zero in b, is a hole');
  t.ok(overlaps(data, 20 * MiB, MiB), 'slot 20, zero in a, holds data');
  t.equal((await fs.stat(target)).mode & 0o777, 0o600, 'the file keeps its mode');

  const back = await restoreJson(store, [ids.a, target, '--onto', ids.b]);
  t.match(back, { bytesRead: 0, bytesWritten: 2 * MiB + 12345, bytesPunched: MiB, slotsWritten: 4 });
  t.equal(await sha256File(target), await sha256File(images.a), 'and back to a');
  t.notOk(overlaps(await dataRanges(target, SIZE), 20 * MiB, 2 * MiB), 'slots 20-21, zero in a, are holes again');

  const same = await restoreJson(store, [ids.a, target, '--onto', ids.a, '--mode', '0640']);
  t.match(same, { bytesRead: 0, bytesWritten: 0, bytesPunched: 0, slotsWritten: 0 }, 'onto itself: nothing to write');
  t.equal((await fs.stat(target)).mode & 0o777, 0o640, '--mode still applies');
});

t.test('--onto reads nothing: what the target wrote since is only undone with --changed, which writes the slots it touches', async (t) => {
  const { dir, store, images, ids } = await fixture(t);
  const target = join(dir, 'vm-disk.img');
  await restoreJson(store, [ids.a, target]);
  // The VM writes 10 bytes in slot 7 and 3 bytes across the boundary of slots 11 and 12.
  await writeAt(target, 7 * MiB + 100, Buffer.from('0123456789'));
  await writeAt(target, 12 * MiB - 1, Buffer.from('xyz'));
  const written = await sha256File(target);
  t.match(await restoreJson(store, [ids.a, target, '--onto', ids.a]), { bytesRead: 0, slotsWritten: 0 });
  t.equal(await sha256File(target), written, 'without --changed the target is not read: its writes stay');

  const cbt = join(dir, 'cbt.json');
  await fs.writeFile(cbt, JSON.stringify({ changed: [{ offset: 7 * MiB + 100, length: 10 }, { offset: 12 * MiB - 1, length: 3 }] }));
  const undone = await restoreJson(store, [ids.b, target, '--onto', ids.a, '--changed', `disk=${cbt}`]);
  t.match(undone, { bytesRead: 0, bytesWritten: 5 * MiB + 12345, bytesPunched: MiB, slotsWritten: 7 }, 'the 4 changed slots and the 3 the list touches');
  t.equal(await sha256File(target), await sha256File(images.b), 'the target is b');
});

t.test('--compare reads the whole target, writes only what differs, and a second run writes nothing', async (t) => {
  const { dir, store, images, ids } = await fixture(t);
  const target = join(dir, 'drifted.img');
  await restoreJson(store, [ids.b, target]);
  await writeAt(target, 9 * MiB + 4096, Buffer.from('drift'));
  await writeAt(target, 21 * MiB, Buffer.from([1]));

  const compared = await restoreJson(store, [ids.a, target, '--compare']);
  // b's four slots differ from a; slot 9 drifted; slot 21, zero in a, holds a byte.
  t.match(compared, { mode: 'compare', onto: null, bytesRead: SIZE, bytesWritten: 3 * MiB + 12345, bytesPunched: 2 * MiB, slotsWritten: 6 });
  t.equal(await sha256File(target), await sha256File(images.a), 'the target is a');
  t.notOk(overlaps(await dataRanges(target, SIZE), 20 * MiB, 2 * MiB), 'slots 20-21, zero in a, are holes');
  t.match(await restoreJson(store, [ids.a, target, '--compare']), { bytesRead: SIZE, bytesWritten: 0, bytesPunched: 0, slotsWritten: 0 }, 'converged');

  const human = await cli(['restore', '--store', store, ids.b, target, '--compare']);
  t.equal(human.code, 0);
  t.match(human.stdout, new RegExp(`^restored ${ids.b} disk disk \\(24\\.0 MiB\\) to ${target} by comparing in [0-9.]+ s, \\d+ MB/s\n  slots written 4: 2\\.0 MiB written, 1\\.0 MiB made holes; 24\\.0 MiB read from the target\n$`));
});

t.test('kill -9 in the middle of --onto or --compare: a rerun converges to the disk', async (t) => {
  const { dir, store, images, ids } = await fixture(t);
  const crash = { [CRASH_ENV]: 'restore-mid-write' };
  for (const mode of [['--onto', ids.a], ['--compare']]) {
    const target = join(dir, `crash${mode[0]}.img`);
    await restoreJson(store, [ids.a, target]);
    // One thread: two tasks of 8 slots in flight when the first result is handled, so the last 9 slots are surely unwritten.
    const killed = await cli(['restore', '--store', store, ids.other, target, ...mode, '--threads', '1'], crash);
    t.equal(killed.code, -1, `${mode[0]}: killed`);
    const half = await sha256File(target);
    t.not(half, await sha256File(images.a), `${mode[0]}: some slots were written`);
    t.not(half, await sha256File(images.other), `${mode[0]}: not all of them`);
    await restoreJson(store, [ids.other, target, ...mode]);
    t.equal(await sha256File(target), await sha256File(images.other), `${mode[0]}: the rerun restores the disk`);
  }
});

/** Bytes of `path` in the page cache (fincore). */
function cachedBytes(path: string): number {
  return Number(execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', path], { encoding: 'utf8' }).trim());
}

t.test('--compare reads the target around the page cache: only its partial last slot is read through it', async (t) => {
  if (!requireCapability(t, hasCommand('fincore') && hasCommand('dd'), 'needs fincore and dd (util-linux, coreutils)')) return;
  const { dir, store, ids } = await fixture(t);
  const target = join(dir, 'replica.img');
  await restoreJson(store, [ids.a, target]);
  execFileSync('dd', [`if=${target}`, 'iflag=nocache', 'count=0', 'status=none']);
  t.equal(cachedBytes(target), 0, 'the target starts out of the page cache');
  t.match(await restoreJson(store, [ids.a, target, '--compare']), { bytesRead: SIZE, slotsWritten: 0 });
  t.equal(cachedBytes(target), 16384, "the last slot's 12345 bytes, 4 pages: the 24 whole slots were read direct");
});

t.test('--compare reads many slots at once: one read failing (EIO) stops it with exit 2 naming the target, nothing written', async (t) => {
  if (!canMount(t)) return;
  const { dir, store, images, ids } = await fixture(t);
  const backing = join(dir, 'backing');
  const served = join(dir, 'served');
  await Promise.all([fs.mkdir(backing), fs.mkdir(served)]);
  await restoreJson(store, [ids.a, join(backing, 'replica.img')]);
  const faulty = await startFaultyFs(backing, served, join(dir, 'rules.json'));
  try {
    const target = join(served, 'replica.img');
    // A target holding a: comparing with a writes nothing, so only the failed read can change anything.
    t.match(await restoreJson(store, [ids.a, target, '--compare']), { bytesRead: SIZE, bytesWritten: 0, slotsWritten: 0 }, 'through the passthrough, faults off');
    await faulty.setRules([{ path: '^/replica\\.img$', ops: ['read'], errno: 'EIO', count: 1 }]);
    // storeState, not treeDigest: the index was opened (LevelDB rewrites its files on every open) before the read failed.
    const storeBefore = await storeState(store);
    const failed = await cli(['restore', '--store', store, ids.a, target, '--compare']);
    t.equal(failed.code, 2, `exit 2 (${failed.stderr.trim()})`);
    t.match(failed.stderr, new RegExp(`^chunkvault: target ${target}: reading or writing failed \\(EIO[^\n]*\\); the restore is incomplete\n$`), 'one line naming the target and the errno');
    t.same(faulty.injected, [`read /replica.img EIO`], 'the fault was met once');
    t.equal(await sha256File(join(backing, 'replica.img')), await sha256File(images.a), 'the target is unchanged');
    t.equal(await storeState(store), storeBefore, 'the store is unchanged');
    await faulty.setRules([]);
    t.match(await restoreJson(store, [ids.b, target, '--compare']), { bytesRead: SIZE, slotsWritten: 4 }, 'faults off: the rerun writes the four slots b differs in');
  } finally {
    await faulty.stop();
  }
  t.equal(await sha256File(join(backing, 'replica.img')), await sha256File(images.b), 'the target is b');
});

t.test('a loop device: --onto writes zeros where a slot became zero, --compare converges, a larger device is fine', async (t) => {
  if (!requireCapability(t, isRoot() && existsSync('/dev/loop-control') && hasCommand('losetup'), 'needs root and loop devices (losetup)')) return;
  const { dir, store, images, ids } = await fixture(t);
  const backing = join(dir, 'device.img');
  await writeImage(backing, [{ kind: 'random', bytes: 32 * MiB, seed: 77 }]);
  const device = losetup(t, backing);
  await restoreJson(store, [ids.a, device]);
  t.equal(await sha256Head(device, SIZE), await sha256File(images.a), 'a in full');

  t.match(await restoreJson(store, [ids.b, device, '--onto', ids.a]), { bytesRead: 0, bytesWritten: 3 * MiB + 12345, bytesPunched: 0, slotsWritten: 4 });
  t.equal(await sha256Head(device, SIZE), await sha256File(images.b), 'b, zeros written on slot 5');
  await writeAt(device, 13 * MiB, Buffer.from('drift'));
  t.match(await restoreJson(store, [ids.a, device, '--compare']), { bytesRead: SIZE, bytesWritten: 4 * MiB + 12345, bytesPunched: 0, slotsWritten: 5 }, "b's four slots and the drifted one");
  t.equal(await sha256Head(device, SIZE), await sha256File(images.a), 'back to a by comparing');
  const beyond = (await fs.readFile(device)).subarray(SIZE);
  t.ok(beyond.equals(seededBytes(77, 32 * MiB).subarray(SIZE)), 'the device past the disk is untouched');
});

t.test('a file on a filesystem that cannot punch holes (ramfs) gets zeros written instead', async (t) => {
  if (!requireCapability(t, isRoot(), 'needs root to mount ramfs')) return;
  const { dir, store, images, ids } = await fixture(t);
  const target = join(mounted(t, dir, 'ramfs'), 'replica.img');
  await restoreJson(store, [ids.a, target]);
  t.match(await restoreJson(store, [ids.b, target, '--onto', ids.a]), { bytesRead: 0, bytesWritten: 3 * MiB + 12345, bytesPunched: 0, slotsWritten: 4 });
  t.equal(await sha256File(target), await sha256File(images.b), 'the target is b');
});

/** A refusal: the exit code, one line matching `message`, the target and the store unchanged. */
async function refuses(t: Test, store: string, args: string[], target: string, code: number, message: RegExp): Promise<void> {
  const before = existsSync(target) ? await sha256File(target) : null;
  const storeBefore = await treeDigest(store);
  const result = await cli(['restore', '--store', store, ...args]);
  t.equal(result.code, code, `${args.join(' ')}: exit ${code}`);
  t.match(result.stderr, new RegExp(`^chunkvault: ${message.source}[^\n]*\n$`), `${args.join(' ')}: one line`);
  t.equal(existsSync(target) ? await sha256File(target) : null, before, 'the target is unchanged');
  t.equal(await treeDigest(store), storeBefore, 'the store is unchanged');
}

t.test('bad input is refused before anything is written', async (t) => {
  const { dir, store, images, ids } = await fixture(t);
  const target = join(dir, 'replica.img');
  await restoreJson(store, [ids.a, target]);
  const grown = join(dir, 'grown.img');
  await writeImage(grown, [{ kind: 'random', bytes: SIZE + MiB, seed: 1 }]);
  const shrunk = join(dir, 'shrunk.img');
  await writeImage(shrunk, [{ kind: 'random', bytes: SIZE - MiB, seed: 1 }]);
  const ofGrown = (await cliJson<{ id: string }>(['backup', '--store', store, '--name', 'vm', `disk=${grown}`])).id;
  const ofShrunk = (await cliJson<{ id: string }>(['backup', '--store', store, '--name', 'vm', `disk=${shrunk}`])).id;
  const ofOther = (await cliJson<{ id: string }>(['backup', '--store', store, '--name', 'db', `disk=${images.a}`])).id;
  const ofData = (await cliJson<{ id: string }>(['backup', '--store', store, '--name', 'vm', `data=${images.a}`])).id;

  await refuses(t, store, [ids.b, target, '--onto', ofOther], target, 2, new RegExp(`--onto ${ofOther}: restore point ${ofOther} is of 'db', ${ids.b} of 'vm'; restore in full instead, or use --compare \\(nothing was written\\)`));
  await refuses(t, store, [ids.b, target, '--onto', ofData], target, 2, new RegExp(`--onto ${ofData}: restore point ${ofData} has no disk 'disk' \\(it has data\\)`));
  await refuses(t, store, [ids.b, target, '--onto', ofGrown], target, 2, new RegExp(`--onto ${ofGrown}: disk 'disk' has ${SIZE + MiB} bytes in ${ofGrown} and ${SIZE} in ${ids.b}; a resized disk cannot be restored onto`));
  await refuses(t, store, [ids.b, target, '--onto', ofShrunk], target, 2, new RegExp(`--onto ${ofShrunk}: disk 'disk' has ${SIZE - MiB} bytes`));
  await refuses(t, store, [ids.b, target, '--onto', 'ffff'], target, 2, /no restore point 'ffff'/);
  await refuses(t, store, [ids.b, target, '--onto', ids.a, '--compare'], target, 2, /--onto and --compare are two ways of restoring onto a disk the target holds; give one of them/);
  await refuses(t, store, [ids.b, target, '--onto', ids.a, '--partial'], target, 2, /--partial is for a full restore, not with --onto/);
  await refuses(t, store, [ids.b, target, '--compare', '--partial'], target, 2, /--partial is for a full restore, not with --compare/);
  await refuses(t, store, [ids.b, target, '--changed', images.a], target, 2, /--changed needs --onto KNOWN_REF/);
  const cbt = join(dir, 'past-the-end.json');
  await fs.writeFile(cbt, JSON.stringify({ changed: [{ offset: SIZE - 1, length: 2 }] }));
  await refuses(t, store, [ids.b, target, '--onto', ids.a, '--changed', cbt], target, 2, new RegExp(`${cbt}: changed\\[0\\] \\(bytes ${SIZE - 1}-${SIZE}\\) ends past the disk`));
  await refuses(t, store, [ids.b, target, '--onto', ids.a, '--changed', `sdb=${cbt}`], target, 2, /--changed sdb=.*: this restore writes disk 'disk', not 'sdb'/);

  for (const flags of [['--onto', ids.a], ['--compare']]) {
    const missing = join(dir, 'missing.img');
    await refuses(t, store, [ids.b, missing, ...flags], missing, 2, new RegExp(`target ${missing} does not exist; ${flags[0]} writes onto a disk restored before: restore in full to create it`));
    t.notOk(existsSync(missing), 'not created');
    for (const [name, bytes] of [['small.img', SIZE - 1], ['large.img', SIZE + 4096]] as const) {
      const other = join(dir, name);
      await writeImage(other, [{ kind: 'random', bytes, seed: 3 }]);
      await refuses(t, store, [ids.b, other, ...flags], other, 2, new RegExp(`target ${other} has ${bytes} bytes and the disk ${SIZE}; ${flags[0]} writes onto a file of the disk's exact size and never truncates it`));
    }
  }
});
