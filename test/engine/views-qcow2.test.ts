/**
 * The qcow2 views, written out from their layouts and read by the real qemu-img: check clean,
 * holes exactly where the zero chunks are, differences exactly the changed slots, same bytes.
 */
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { Qcow2Layout, SLOT_DATA, SLOT_UNALLOCATED, SLOT_ZERO } from '../../engine/views/qcow2.js';
import { diffStates, fullStates } from '../../engine/views/slots.js';
import { ID_BYTES } from '../../store/chunk-id.js';
import { MiB, requireCapability, seededBytes, tempDir } from '../helpers/index.js';
import { checkProblems, hasQemuImg, mapRanges, qemuImg, qemuIo, qemuMap, slotRanges, virtualSize, writeView } from '../helpers/views.js';

/** A map of the disk as a backup writes it: the zero id for all-zero chunks, a content hash otherwise. */
function mapOf(disk: Buffer, chunkSize: number): Buffer {
  const slots = Math.ceil(disk.byteLength / chunkSize);
  const map = Buffer.alloc(slots * ID_BYTES);
  for (let slot = 0; slot < slots; slot++) {
    const chunk = disk.subarray(slot * chunkSize, (slot + 1) * chunkSize);
    if (chunk.some((b) => b !== 0)) createHash('sha256').update(chunk).digest().copy(map, slot * ID_BYTES);
  }
  return map;
}

/** Chunks of seeded data, with every slot whose (seeded) pick is below `zeroShare` left zero. */
function sparseDisk(size: number, chunkSize: number, seed: number, zeroShare = 0.5): Buffer {
  const disk = seededBytes(seed, size);
  const picks = seededBytes(seed + 1000, Math.ceil(size / chunkSize));
  for (let slot = 0; slot < picks.length; slot++) if (picks[slot] < zeroShare * 256) disk.fill(0, slot * chunkSize, Math.min(size, (slot + 1) * chunkSize));
  return disk;
}

function isZeroChunk(disk: Buffer, chunkSize: number, slot: number): boolean {
  return disk.subarray(slot * chunkSize, (slot + 1) * chunkSize).every((b) => b === 0);
}

const skipWithoutQemu = (t: Test): boolean => !requireCapability(t, hasQemuImg(), 'needs qemu-img (qemu-utils)');

t.test('header of a difference: version 3, cluster bits, size, backing file and its format', async (t) => {
  const layout = new Qcow2Layout({ diskSize: 5 * MiB + 1000, chunkSize: MiB, states: new Uint8Array(6), backing: { file: '../../0123456789abcdef/disk.img', format: 'raw' } });
  const header = Buffer.concat(layout.pieces(0, 4096).map((p) => (p.kind === 'bytes' ? p.data : Buffer.alloc(0))));
  t.equal(header.readUInt32BE(0), 0x514649fb, 'magic');
  t.equal(header.readUInt32BE(4), 3, 'version');
  t.equal(header.readUInt32BE(20), 20, 'cluster bits: 1 MiB clusters for 1 MiB chunks');
  t.equal(header.readBigUInt64BE(24), BigInt(5 * MiB + 1024), 'virtual size: padded to the next sector');
  t.equal(header.readUInt32BE(100), 104, 'header length');
  t.equal(header.readUInt32BE(104), 0xe2792aca, 'backing format extension');
  t.equal(header.toString('latin1', 112, 112 + header.readUInt32BE(108)), 'raw');
  const nameAt = Number(header.readBigUInt64BE(8));
  t.equal(header.toString('latin1', nameAt, nameAt + header.readUInt32BE(16)), '../../0123456789abcdef/disk.img', 'backing file name');
  t.equal(layout.size, 4 * MiB, 'header, L1, refcount table and block; no L2 table and no data: nothing is mapped');
});

t.test('slot states from maps', async (t) => {
  const zero = Buffer.alloc(ID_BYTES);
  const a = Buffer.alloc(ID_BYTES, 1);
  const b = Buffer.alloc(ID_BYTES, 2);
  t.same([...fullStates(Buffer.concat([zero, a, b]))], [SLOT_UNALLOCATED, SLOT_DATA, SLOT_DATA]);
  t.same([...diffStates(Buffer.concat([zero, a, a, a, zero]), Buffer.concat([zero, a, b, zero, b]))], [SLOT_UNALLOCATED, SLOT_UNALLOCATED, SLOT_DATA, SLOT_ZERO, SLOT_DATA]);
});

for (const [chunkSize, size] of [
  [64 * 1024, 300 * 64 * 1024 + 1000],
  [MiB, 40 * MiB + 512],
  [4 * MiB, 20 * 4 * MiB + 3 * MiB],
]) {
  t.test(`${chunkSize / 1024} KiB chunks, a ${size}-byte disk: check clean, holes at the zero chunks, same bytes`, async (t) => {
    if (skipWithoutQemu(t)) return;
    const dir = await tempDir(t);
    const disk = sparseDisk(size, chunkSize, chunkSize);
    const raw = join(dir, 'disk.raw');
    const view = join(dir, 'disk.qcow2');
    await fs.writeFile(raw, disk);
    const layout = new Qcow2Layout({ diskSize: size, chunkSize, states: fullStates(mapOf(disk, chunkSize)) });
    t.equal(layout.clusterSize, Math.min(chunkSize, 2 * MiB));
    await writeView(view, layout, disk);
    t.same(await checkProblems(view), {}, 'qemu-img check: no corruption, leak or error');
    t.equal(await virtualSize(view, 'qcow2'), Math.ceil(size / 512) * 512);
    const slots = Math.ceil(size / chunkSize);
    const expected = slotRanges(slots, chunkSize, Math.ceil(size / 512) * 512, (slot) => !isZeroChunk(disk, chunkSize, slot));
    t.ok(expected.length >= 3, 'the disk has several data runs');
    t.same(mapRanges(await qemuMap(view), (e) => e.data), expected, 'qemu-img map: data exactly at the non-zero slots');
    t.match(await qemuImg(['compare', '-f', 'raw', '-F', 'qcow2', raw, view]), /Images are identical/);
  });
}

t.test('a difference: allocated exactly at the changed slots, zero clusters where chunks became zero', async (t) => {
  if (skipWithoutQemu(t)) return;
  const dir = await tempDir(t);
  const chunkSize = 64 * 1024;
  const size = 200 * chunkSize + 4096;
  const older = sparseDisk(size, chunkSize, 7);
  const newer = Buffer.from(older);
  const rewritten = [3, 4, 5, 90, 200];
  for (const slot of rewritten) seededBytes(slot, chunkSize).copy(newer, slot * chunkSize);
  const zeroed = [...Array(200).keys()].filter((slot) => !isZeroChunk(older, chunkSize, slot)).slice(10, 13);
  for (const slot of zeroed) newer.fill(0, slot * chunkSize, Math.min(size, (slot + 1) * chunkSize));
  await fs.writeFile(join(dir, 'older.raw'), older);
  await fs.writeFile(join(dir, 'newer.raw'), newer);
  const view = join(dir, 'diff.qcow2');
  const layout = new Qcow2Layout({ diskSize: size, chunkSize, states: diffStates(mapOf(older, chunkSize), mapOf(newer, chunkSize)), backing: { file: 'older.raw', format: 'raw' } });
  await writeView(view, layout, newer);
  t.same(await checkProblems(view), {});
  const entries = await qemuMap(view);
  const changed = new Set([...rewritten, ...zeroed]);
  t.same(mapRanges(entries, (e) => e.depth === 0), slotRanges(201, chunkSize, size, (slot) => changed.has(slot)), 'the overlay holds exactly the changed slots');
  t.same(mapRanges(entries, (e) => e.depth === 0 && e.zero && !e.data), slotRanges(201, chunkSize, size, (slot) => zeroed.includes(slot)), 'zero clusters where chunks became zero');
  t.equal(layout.dataClusters, rewritten.length, 'data clusters only for rewritten slots');
  t.match(await qemuImg(['compare', '-f', 'raw', '-F', 'qcow2', join(dir, 'newer.raw'), view]), /Images are identical/);
});

t.test('a 16 TiB disk: small metadata, computed per read, and still clean', async (t) => {
  if (skipWithoutQemu(t)) return;
  const chunkSize = MiB;
  const size = 16 * 2 ** 40;
  const states = new Uint8Array(size / chunkSize);
  const dataSlots = [0, 1, 131071, 131072, 5_000_000, states.length - 1];
  for (const slot of dataSlots) states[slot] = SLOT_DATA;
  const layout = new Qcow2Layout({ diskSize: size, chunkSize, states });
  // header, 1 L1 cluster (128 entries), 4 L2 tables (of 128), refcount table, 1 block, 6 data clusters
  t.equal(layout.size, (1 + 1 + 4 + 1 + 1 + 6) * MiB);
  const dir = await tempDir(t);
  const view = join(dir, 'big.qcow2');
  await writeView(view, layout, (at, length) => Buffer.alloc(length, (at / chunkSize) % 251 || 1));
  t.same(await checkProblems(view), {});
  t.equal(await virtualSize(view, 'qcow2'), size);
  t.same(mapRanges(await qemuMap(view), (e) => e.data), slotRanges(states.length, chunkSize, size, (slot) => dataSlots.includes(slot)));
  for (const slot of [5_000_000, states.length - 1]) {
    const pattern = `0x${((slot % 251) || 1).toString(16)}`;
    const read = await qemuIo(view, `read -P ${pattern} ${slot * chunkSize} ${chunkSize}`);
    t.match(read, `read ${chunkSize}/${chunkSize} bytes`, `qemu reads slot ${slot}'s bytes where they belong`);
    t.notMatch(read, /Pattern verification failed/);
  }
});
