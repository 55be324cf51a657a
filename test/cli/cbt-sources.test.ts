/**
 * Issue 18 point 1 end to end: changed-block files made by the real tools (QEMU dirty
 * bitmaps over NBD, `rbd diff` on a throwaway Ceph, `thin_delta` on metadata built by
 * `thin_restore`), a VMware QueryChangedDiskAreas sample, and text lists drive incremental
 * backups that read exactly the touched 4 KiB blocks, never a discarded one, and restore to the
 * new disk byte for byte. Bad files are refused before the store changes.
 */
import t, { type Test } from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { diffBlocks } from '../../bench/workload.js';
import { CLI, cli, cliJson, collect, hasCommand, requireCapability, restoresIdentically, seededBytes, tempDir, treeDigest, type CliResult } from '../helpers/index.js';
import { hasCeph, startCeph } from '../helpers/ceph.js';

const CS = 64 * 1024;

interface Range {
  offset: number;
  length: number;
}

interface Report {
  id: string;
  kind: string;
  bytesRead: number;
  chunksTotal: number;
  warnings: string[];
}

const tool = (command: string, args: string[], env: Record<string, string> = {}): string => execFileSync(command, args, { encoding: 'utf8', env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });

const BLOCK = 4096;

/**
 * What a CBT backup reads (plan.ts), stated independently: in each slot a changed or discarded
 * range touches, the 4 KiB blocks those ranges touch, less the discarded bytes; or the whole
 * slot less the discarded bytes when that spares less than 1/16 of the slot.
 */
function expectedRead(changed: Range[], discarded: Range[], size: number): number {
  const touched = [...changed, ...discarded];
  const slots = new Set<number>();
  for (const r of touched) for (let s = Math.floor(r.offset / CS); s <= Math.floor((r.offset + r.length - 1) / CS); s++) slots.add(s);
  const overlap = (a: Range, from: number, to: number): number => Math.max(0, Math.min(a.offset + a.length, to) - Math.max(a.offset, from));
  const kept = (from: number, to: number): number => to - from - discarded.reduce((sum, d) => sum + overlap(d, from, to), 0);
  let bytes = 0;
  for (const s of slots) {
    const [from, to] = [s * CS, Math.min((s + 1) * CS, size)];
    const blocks = new Set<number>();
    for (const r of touched) for (let b = Math.floor(Math.max(r.offset, from) / BLOCK); b * BLOCK < Math.min(r.offset + r.length, to); b++) blocks.add(b);
    const partial = [...blocks].reduce((sum, b) => sum + kept(b * BLOCK, Math.min((b + 1) * BLOCK, to)), 0);
    bytes += kept(from, to) - partial < (to - from) / 16 ? kept(from, to) : partial;
  }
  return bytes;
}

/** A fully allocated disk of seeded random bytes (no hole, so every touched slot is read whole). */
async function randomDisk(path: string, size: number, seed: number): Promise<void> {
  await fs.writeFile(path, seededBytes(seed, size));
}

async function overwrite(path: string, writes: [number, Buffer][]): Promise<void> {
  const handle = await fs.open(path, 'r+');
  for (const [at, data] of writes) await handle.write(data, 0, data.length, at);
  await handle.close();
}

/** A store holding a full backup of `disk` as 'vm'; its id. */
async function baseBackup(t: Test, dir: string, disk: string): Promise<{ store: string; base: string }> {
  const store = join(dir, 'store');
  await cliJson(['init', '--store', store, '--chunk-size', '64K']);
  const full = await cliJson<Report>(['backup', '--store', store, `sda=${disk}`, '--name', 'vm', '--time', '2026-12-01T00:00:00Z']);
  t.equal(full.kind, 'full');
  return { store, base: full.id };
}

let day = 2;
/** An incremental of `disk` on `base` from `changed`: the exact bytes read, then a byte-identical restore. */
async function incremental(t: Test, store: string, base: string, disk: string, args: string[], read: number): Promise<Report> {
  const report = await cliJson<Report>(['backup', '--store', store, `sda=${disk}`, '--name', 'vm', '--time', `2026-12-${String(day++).padStart(2, '0')}T00:00:00Z`, '--parent', base, ...args]);
  t.match(report, { kind: 'cbt', warnings: [] }, `${args.join(' ')}: a CBT backup without warnings`);
  t.equal(report.bytesRead, read, `${args.join(' ')}: reads exactly ${read} bytes`);
  await restoresIdentically(t, store, report.id, disk, join(store, '..', `restored-${report.id}.img`));
  return report;
}

/** A refused backup: exit 2, one line matching `message`, the store's files unchanged. */
async function refused(t: Test, store: string, args: string[], message: RegExp): Promise<void> {
  const before = await treeDigest(store);
  const result = await cli(['backup', '--store', store, '--name', 'vm', ...args]);
  t.equal(result.code, 2, `${message}: exit 2`);
  t.match(result.stderr, /^chunkvault: [^\n]+\n$/, 'one line');
  t.match(result.stderr, message);
  t.equal(await treeDigest(store), before, 'the store is unchanged');
}

/** The CLI with `input` on its standard input. */
function cliWithStdin(args: string[], input: string, env: Record<string, string> = {}): Promise<CliResult> {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin.end(input);
  return collect(child);
}

const QEMU = ['qemu-img', 'qemu-io', 'qemu-nbd', 'nbdinfo'];

t.test('QEMU dirty bitmap: nbdinfo --map (text and JSON) and qemu-img map of the bitmap', async (t) => {
  if (!requireCapability(t, QEMU.every(hasCommand), `needs ${QEMU.join(', ')} (qemu-utils, libnbd-bin)`)) return;
  const dir = await tempDir(t);
  const size = 8 * 1024 * 1024;
  const day1 = join(dir, 'day1.raw');
  await randomDisk(day1, size, 1);
  const qcow2 = join(dir, 'vm.qcow2');
  tool('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', day1, qcow2]);
  tool('qemu-img', ['bitmap', '--add', qcow2, 'b0']);
  // qcow2's 64 KiB clusters make the bitmap's granularity 64 KiB, the store's chunk size.
  const writes: Range[] = [
    { offset: 65536, length: 4096 },
    { offset: 1024 * 1024, length: 200 * 1024 },
    { offset: 5_000_000, length: 1000 },
  ];
  tool('qemu-io', ['-f', 'qcow2', ...writes.flatMap((w, i) => ['-c', `write -P 0x${(0x21 + i).toString(16)} ${w.offset} ${w.length}`]), qcow2]);
  const day2 = join(dir, 'day2.raw');
  tool('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', '-S', '0', qcow2, day2]);

  const socket = join(dir, 'nbd.sock');
  const pidFile = join(dir, 'qemu-nbd.pid');
  tool('qemu-nbd', ['-r', '-f', 'qcow2', '-B', 'b0', '--socket', socket, '--persistent', '--fork', '--pid-file', pidFile, qcow2]);
  t.teardown(async () => process.kill(Number(await fs.readFile(pidFile, 'utf8')), 'SIGTERM'));
  const uri = `nbd+unix:///?socket=${socket}`;
  const files = {
    'nbdinfo.map': tool('nbdinfo', ['--map=qemu:dirty-bitmap:b0', uri]),
    'nbdinfo.json': tool('nbdinfo', ['--json', '--map=qemu:dirty-bitmap:b0', uri]),
    'qemu-img-map.json': tool('qemu-img', ['map', '--output=json', '--image-opts', `driver=nbd,server.type=unix,server.path=${socket},x-dirty-bitmap=qemu:dirty-bitmap:b0`]),
  };
  t.match(files['nbdinfo.map'], /^\s+65536\s+65536\s+1\s+dirty$/m, 'nbdinfo prints the dirty granule');
  for (const [name, text] of Object.entries(files)) await fs.writeFile(join(dir, name), text);

  const { store, base } = await baseBackup(t, dir, day1);
  // The bitmap marks whole 64 KiB granules dirty: whole slots are changed and read.
  const granules = writes.map((w) => ({ offset: w.offset - (w.offset % CS), length: Math.ceil((w.offset + w.length) / CS) * CS - (w.offset - (w.offset % CS)) }));
  const read = expectedRead(granules, [], size);
  t.equal(read, 6 * CS, 'the writes touch 6 slots');
  await incremental(t, store, base, day2, ['--changed', join(dir, 'nbdinfo.map')], read);
  await incremental(t, store, base, day2, ['--changed', join(dir, 'nbdinfo.json'), '--changed-format', 'nbdinfo'], read);
  await incremental(t, store, base, day2, ['--changed', `sda=${join(dir, 'qemu-img-map.json')}`], read);

  await refused(t, store, [`sda=${day2}`, '--parent', base, '--changed', join(dir, 'nbdinfo.map'), '--changed-format', 'rbd'], /nbdinfo\.map: --changed-format rbd expects `rbd diff --format json` output, but this looks like `nbdinfo --map` output of a dirty bitmap; pass --changed-format nbdinfo \(or auto\)/);
  const allocation = join(dir, 'allocation.map');
  await fs.writeFile(allocation, tool('nbdinfo', ['--map', uri]));
  await refused(t, store, [`sda=${day2}`, '--parent', base, '--changed', allocation], /allocation\.map: line 1: type 0 "data" is not a dirty-bitmap state \(0 clean or 1 dirty\); is this map of another context \(base:allocation\)\?/);
  // The usual slip: the map of an image, not of its bitmap. Unallocated clusters give it away.
  const sparseImage = join(dir, 'sparse.qcow2');
  tool('qemu-img', ['create', '-f', 'qcow2', sparseImage, String(size)]);
  tool('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x55 0 1M', sparseImage]);
  const imageMap = join(dir, 'image-map.json');
  await fs.writeFile(imageMap, tool('qemu-img', ['map', '--output=json', '-f', 'qcow2', sparseImage]));
  await refused(t, store, [`sda=${day2}`, '--parent', base, '--changed', imageMap], /image-map\.json: \[1\] has "zero": true, which a dirty-bitmap map never has: map the bitmap with qemu-img map --image-opts driver=nbd,\.\.\.,x-dirty-bitmap=qemu:dirty-bitmap:NAME/);
  const small = join(dir, 'small.raw');
  await randomDisk(small, size / 2, 3);
  await refused(t, store, [`sda=${small}`, '--parent', base, '--changed', join(dir, 'qemu-img-map.json')], /qemu-img-map\.json: the map describes 8388608 bytes, but the disk has 4194304; is it the map of another disk\?/);
});

t.test('thin_delta of metadata from thin_restore: different and right_only blocks read, left_only blocks zero and unread', async (t) => {
  const tools = ['thin_restore', 'thin_delta'];
  if (!requireCapability(t, tools.every(hasCommand), 'needs thin_restore and thin_delta (thin-provisioning-tools)')) return;
  const dir = await tempDir(t);
  const block = 128 * 512;
  const blocks = 32;
  const size = blocks * block;
  // Device 1 is the parent's snapshot, device 2 the volume now. 4 is rewritten (a new data
  // block), 12, 13 and 31 newly written, 7 and 25 discarded; the rest shared or unmapped.
  const mappedBefore = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 20, 25];
  const rewritten = [4, 12, 13, 31];
  const discarded = [7, 25];
  const xml = `<superblock uuid="" time="1" transaction="2" version="2" data_block_size="128" nr_data_blocks="64">
  <device dev_id="1" mapped_blocks="12" transaction="0" creation_time="0" snap_time="1">
    <range_mapping origin_begin="0" data_begin="0" length="10" time="0"/>
    <single_mapping origin_block="20" data_block="20" time="0"/>
    <single_mapping origin_block="25" data_block="25" time="0"/>
  </device>
  <device dev_id="2" mapped_blocks="14" transaction="1" creation_time="1" snap_time="1">
    <range_mapping origin_begin="0" data_begin="0" length="4" time="0"/>
    <single_mapping origin_block="4" data_block="40" time="1"/>
    <range_mapping origin_begin="5" data_begin="5" length="2" time="0"/>
    <range_mapping origin_begin="8" data_begin="8" length="2" time="0"/>
    <range_mapping origin_begin="12" data_begin="41" length="2" time="1"/>
    <single_mapping origin_block="20" data_block="20" time="0"/>
    <single_mapping origin_block="31" data_block="43" time="1"/>
  </device>
</superblock>
`;
  await fs.writeFile(join(dir, 'meta.xml'), xml);
  const meta = join(dir, 'meta.bin');
  await fs.writeFile(meta, Buffer.alloc(4 * 1024 * 1024));
  tool('thin_restore', ['-i', join(dir, 'meta.xml'), '-o', meta]);
  await fs.writeFile(join(dir, 'delta.xml'), tool('thin_delta', ['--snap1', '1', '--snap2', '2', meta]));
  await fs.writeFile(join(dir, 'delta-verbose.xml'), tool('thin_delta', ['--verbose', '--snap1', '1', '--snap2', '2', meta]));
  t.match(await fs.readFile(join(dir, 'delta.xml'), 'utf8'), /<left_only begin="7" length="1"\/>/, 'thin_delta reports the discarded block');

  // The disks the two devices read as: unmapped blocks are zeros.
  const day1 = join(dir, 'day1.raw');
  await fs.writeFile(day1, Buffer.alloc(size));
  await overwrite(day1, mappedBefore.map((b) => [b * block, seededBytes(100 + b, block)]));
  const day2 = join(dir, 'day2.raw');
  await fs.copyFile(day1, day2);
  await overwrite(day2, [...rewritten.map((b): [number, Buffer] => [b * block, seededBytes(200 + b, block)]), ...discarded.map((b): [number, Buffer] => [b * block, Buffer.alloc(block)])]);

  const { store, base } = await baseBackup(t, dir, day1);
  const asRanges = (list: number[]): Range[] => list.map((b) => ({ offset: b * block, length: block }));
  const read = expectedRead(asRanges(rewritten), asRanges(discarded), size);
  t.equal(read, 4 * CS, 'the 4 rewritten blocks; the 2 discarded ones are not read');
  await incremental(t, store, base, day2, ['--changed', join(dir, 'delta.xml')], read);
  await incremental(t, store, base, day2, ['--changed', join(dir, 'delta-verbose.xml'), '--changed-format', 'thin'], read);

  const smaller = join(dir, 'smaller.raw');
  await fs.writeFile(smaller, (await fs.readFile(day2)).subarray(0, 16 * block));
  await refused(t, store, [`sda=${smaller}`, '--parent', base, '--changed', join(dir, 'delta.xml')], /delta\.xml: <right_only begin="31" length="1"\/> \(bytes 2031616-2097151\) ends past the disk, which has 1048576 bytes; is it thin_delta of another thin device, or of one of another size\?/);
  await refused(t, store, [`sda=${day2}`, '--parent', base, '--changed', join(dir, 'delta.xml'), '--changed-format', 'vmware'], /--changed-format vmware expects VMware QueryChangedDiskAreas JSON, but this looks like `thin_delta` XML; pass --changed-format thin/);
});

t.test('rbd diff on a one-OSD Ceph: written extents read, a trimmed range ("exists": "false") zero and unread, the list on stdin', async (t) => {
  if (!requireCapability(t, hasCeph() && hasCommand('rbd'), 'needs ceph-mon, ceph-osd, ceph, monmaptool and rbd (ceph-mon ceph-osd ceph-common)')) return;
  const dir = await tempDir(t);
  const ceph = await startCeph(join(dir, 'ceph'));
  t.teardown(ceph.stop);
  const rbd = (...args: string[]): string => tool('rbd', args, ceph.env);
  tool('ceph', ['osd', 'pool', 'create', 'rbd', '8', '8'], ceph.env);
  tool('ceph', ['osd', 'pool', 'application', 'enable', 'rbd', 'rbd'], ceph.env);
  rbd('pool', 'init', 'rbd');

  const size = 8 * 1024 * 1024;
  const day1 = join(dir, 'day1.raw');
  await randomDisk(day1, size, 1);
  rbd('import', '--object-size', '1M', day1, 'rbd/vm');
  rbd('snap', 'create', 'rbd/vm@s1');
  rbd('bench', '--io-type', 'write', '--io-size', '4096', '--io-total', '256K', '--io-pattern', 'rand', 'rbd/vm');
  // A shrink trims the objects past the new end; grown back, those bytes read as zeros and
  // `rbd diff` reports them "exists": "false", as it does for a discard.
  rbd('resize', '--allow-shrink', '--size', '6M', 'rbd/vm');
  rbd('resize', '--size', '8M', 'rbd/vm');
  rbd('snap', 'create', 'rbd/vm@s2');
  const diff = rbd('diff', '--from-snap', 's1', 'rbd/vm@s2', '--format', 'json');
  const trimmed = { offset: 6 * 1024 * 1024, length: 2 * 1024 * 1024 };
  const gone = (JSON.parse(diff) as (Range & { exists: string })[]).filter((r) => r.exists === 'false');
  t.same(gone.map((r) => [r.offset, r.length]), [[6 * 1024 * 1024, 1024 * 1024], [7 * 1024 * 1024, 1024 * 1024]], 'rbd diff reports the trimmed objects "exists": "false"');
  const exported = join(dir, 'exported.raw');
  rbd('export', 'rbd/vm@s2', exported);
  const day2 = join(dir, 'day2.raw');
  tool('cp', ['--sparse=never', exported, day2]);

  const { store, base } = await baseBackup(t, dir, day1);
  const written = (await diffBlocks(day1, day2, 4096)).filter((r) => r.offset < trimmed.offset);
  t.ok(written.length > 0, `rbd bench changed ${written.length} blocks before the trimmed range`);
  const read = expectedRead(written, [trimmed], size);
  const viaStdin = await cliWithStdin(['backup', '--store', store, `sda=${day2}`, '--name', 'vm', '--time', '2026-12-20T00:00:00Z', '--parent', base, '--changed', '-', '--json'], diff);
  t.equal(viaStdin.code, 0, viaStdin.stderr);
  const report = JSON.parse(viaStdin.stdout) as Report;
  t.match(report, { kind: 'cbt', warnings: [] });
  t.equal(report.bytesRead, read, `reads exactly the ${read} bytes of the 4 KiB blocks rbd bench wrote, nothing of the trimmed 2 MiB`);
  await restoresIdentically(t, store, report.id, day2, join(dir, 'restored-stdin.img'));
  await fs.writeFile(join(dir, 'diff.json'), diff);
  await incremental(t, store, base, day2, ['--changed', join(dir, 'diff.json'), '--changed-format', 'rbd'], read);

  await refused(t, store, [`sda=${day2}`, '--parent', base, '--changed', join(dir, 'diff.json'), '--changed-format', 'qemu-map'], /diff\.json: --changed-format qemu-map expects `qemu-img map --output=json` of a dirty bitmap, but this looks like `rbd diff --format json` output; pass --changed-format rbd/);
  const half = join(dir, 'half.raw');
  await fs.writeFile(half, (await fs.readFile(day2)).subarray(0, size / 2));
  await refused(t, store, [`sda=${half}`, '--parent', base, '--changed', join(dir, 'diff.json')], /diff\.json: \[\d+\] \(bytes \d+-\d+\) ends past the disk, which has 4194304 bytes; is it the diff of another image, or of a snapshot of another size\?/);
});

t.test('VMware QueryChangedDiskAreas (a sample of the documented DiskChangeInfo shape: no vSphere here), text lists, chunkvault JSON with a warning', async (t) => {
  const dir = await tempDir(t);
  const size = 4 * 1024 * 1024 + 12345;
  const day1 = join(dir, 'day1.raw');
  await randomDisk(day1, size, 1);
  const day2 = join(dir, 'day2.raw');
  await fs.copyFile(day1, day2);
  const changes: Range[] = [
    { offset: 0, length: 512 },
    { offset: 3 * CS + 100, length: 2 * CS },
    { offset: size - 10, length: 10 },
  ];
  await overwrite(day2, changes.map((c, i) => [c.offset, seededBytes(50 + i, c.length)]));
  const { store, base } = await baseBackup(t, dir, day1);
  const read = expectedRead(changes, [], size);
  t.equal(read, BLOCK + 2 * CS + BLOCK + 57, 'the first 4 KiB of slots 0 and 5, slots 3-4 whole, the last 57 bytes of the short last slot (its last block)');

  // Two calls: the first answered up to 2 MiB, the second from there to the disk's end.
  const split = 2 * 1024 * 1024;
  const vmware = [
    { startOffset: 0, length: split, changedArea: changes.filter((c) => c.offset < split).map((c) => ({ start: c.offset, length: c.length })) },
    { startOffset: split, length: size - split, changedArea: changes.filter((c) => c.offset >= split).map((c) => ({ start: c.offset, length: c.length })) },
  ];
  await fs.writeFile(join(dir, 'vmware.json'), JSON.stringify(vmware, null, 2));
  await incremental(t, store, base, day2, ['--changed', join(dir, 'vmware.json')], read);

  await fs.writeFile(join(dir, 'changes.txt'), `# offset length, from a script\n${changes.map((c, i) => (i === 1 ? `0x${c.offset.toString(16)}\t0x${c.length.toString(16)}` : `${c.offset} ${c.length}`)).reverse().join('\n')}\n\n`);
  await incremental(t, store, base, day2, ['--changed', join(dir, 'changes.txt')], read);

  const noted = join(dir, 'noted.json');
  await fs.writeFile(noted, JSON.stringify({ source: 'vddk 8.0', changed: changes }));
  const result = await cli(['backup', '--store', store, `sda=${day2}`, '--name', 'vm', '--time', '2026-12-30T00:00:00Z', '--parent', base, '--changed', noted, '--json']);
  t.equal(result.code, 0, result.stderr);
  const warning = `${noted}: ignored the unknown top-level key "source" (a chunkvault CBT list is read from "changed" only)`;
  t.equal(result.stderr, `warning: ${warning}\n`, 'one warning line on stderr');
  t.match(JSON.parse(result.stdout), { kind: 'cbt', bytesRead: read, warnings: [warning] }, 'and in the report');

  const bad = join(dir, 'bad.txt');
  const cases: [string, string, RegExp][] = [
    ['offset=0 length=512\n', 'auto', /bad\.txt: cannot tell which changed-block format this is \(it starts with "offset=0 length=512\\n"\); name it with --changed-format/],
    [`0 1\n${size - 10} 11\n`, 'auto', new RegExp(`bad\\.txt: line 2 \\(bytes ${size - 10}-${size}\\) ends past the disk, which has ${size} bytes`)],
    ['-512 512\n', 'auto', /bad\.txt: line 1 offset: "-512" is not a whole number \(decimal, or hex with 0x\), 0 or more/],
    ['0 1.5\n', 'text', /bad\.txt: line 1 length: "1\.5" is not a whole number/],
    [JSON.stringify([vmware[1]]), 'auto', /bad\.txt: no DiskChangeInfo covers bytes 0-2097151; give the result of every QueryChangedDiskAreas call/],
    ['0 512\n', 'cbt', /--changed-format cbt: unknown format; use one of auto, chunkvault, rbd, thin, nbdinfo, qemu-map, vmware, text/],
  ];
  for (const [content, format, message] of cases) {
    await fs.writeFile(bad, content);
    await refused(t, store, [`sda=${day2}`, '--parent', base, '--changed', bad, '--changed-format', format], message);
  }
  await refused(t, store, [`sda=${day2}`, '--parent', base, '--changed-format', 'rbd'], /--changed-format names the format of the --changed files: give --changed too/);
  await refused(t, store, [`a=${day1}`, `b=${day2}`, '--parent', base, '--changed', 'a=-', '--changed', 'b=-'], /--changed -: standard input can feed one disk, not a and b; give the others a file/);
});
