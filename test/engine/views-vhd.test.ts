/** The fixed VHD view: the spec's geometry, the footer's fields and checksum, and what qemu's vpc driver makes of it. */
import t from 'tap';
import { join } from 'node:path';
import { promises as fs } from 'node:fs';
import { derivedUuid, footerChecksum, footerGeometry, vhdFooter, vhdGeometry, VhdLayout, FOOTER_BYTES } from '../../engine/views/vhd.js';
import { MiB, requireCapability, seededBytes, tempDir } from '../helpers/index.js';
import { hasQemuImg, materialize, qemuImg, virtualSize } from '../helpers/views.js';

t.test('CHS geometry as the VHD specification computes it', async (t) => {
  t.same(vhdGeometry((1000 * MiB) / 512), { cylinders: 2031, heads: 16, sectorsPerTrack: 63 }, '1000 MiB: 63 sectors, 16 heads');
  t.same(vhdGeometry((8 * MiB) / 512), { cylinders: 240, heads: 4, sectorsPerTrack: 17 }, '8 MiB: 17 sectors, 4 heads');
  t.same(vhdGeometry((200 * MiB) / 512), { cylinders: 825, heads: 16, sectorsPerTrack: 31 }, '200 MiB: 31 sectors');
  t.same(vhdGeometry(65535 * 16 * 63 + 1), { cylinders: 16191, heads: 16, sectorsPerTrack: 255 }, 'past 65535/16/63: 255 sectors');
  t.same(vhdGeometry(2 ** 40 / 512), { cylinders: 65535, heads: 16, sectorsPerTrack: 255 }, '1 TiB: capped at the largest');
});

t.test('the footer carries the spec geometry only when it covers the disk exactly', async (t) => {
  t.same(footerGeometry(240 * 4 * 17), { cylinders: 240, heads: 4, sectorsPerTrack: 17 });
  t.same(footerGeometry((8 * MiB) / 512), { cylinders: 65535, heads: 16, sectorsPerTrack: 255 });
});

t.test('footer fields, big-endian, and its checksum', async (t) => {
  const uuid = derivedUuid('chunkvault vhd', '0123456789abcdef', 'disk');
  const footer = vhdFooter(8 * MiB + 1000, new Date('2000-01-02T00:00:10Z'), uuid);
  t.equal(footer.byteLength, FOOTER_BYTES);
  t.equal(footer.toString('latin1', 0, 8), 'conectix');
  t.equal(footer.readUInt32BE(8), 2, 'features');
  t.equal(footer.readUInt32BE(12), 0x00010000, 'version');
  t.equal(footer.readBigUInt64BE(16), 0xffffffffffffffffn, 'data offset: none');
  t.equal(footer.readUInt32BE(24), 86410, 'timestamp: seconds since 2000-01-01');
  t.equal(footer.toString('latin1', 28, 32), 'cvlt', 'creator application');
  t.equal(footer.readBigUInt64BE(40), BigInt(8 * MiB + 1024), 'original size: padded to the next sector');
  t.equal(footer.readBigUInt64BE(48), BigInt(8 * MiB + 1024), 'current size');
  t.same([footer.readUInt16BE(56), footer[58], footer[59]], [65535, 16, 255], 'geometry: the maximum, as the size is not a CHS product');
  t.equal(footer.readUInt32BE(60), 2, 'disk type: fixed');
  t.ok(uuid.equals(footer.subarray(68, 84)), 'unique id');
  t.equal(footer.readUInt32BE(64), footerChecksum(footer));
  let sum = 0;
  for (let i = 0; i < FOOTER_BYTES; i++) if (i < 64 || i >= 68) sum += footer[i];
  t.equal((footer.readUInt32BE(64) + sum) % 2 ** 32, 0xffffffff, "one's complement of the byte sum");
  t.equal(footer.subarray(85).every((b) => b === 0), true, 'reserved bytes are zero');
});

t.test('the unique id is derived: the same for one restore point and disk, different otherwise', async (t) => {
  const a = derivedUuid('chunkvault vhd', '0123456789abcdef', 'disk');
  t.ok(a.equals(derivedUuid('chunkvault vhd', '0123456789abcdef', 'disk')));
  t.notOk(a.equals(derivedUuid('chunkvault vhd', '0123456789abcdef', 'data')));
  t.notOk(a.equals(derivedUuid('chunkvault vhd', '0123456789abcdee', 'disk')));
  t.equal(a[6] >> 4, 5, 'version 5 (name-based)');
  t.equal(a[8] >> 6, 2, 'RFC 4122 variant');
});

t.test('layout: disk bytes, zeros to the next sector, then the footer', async (t) => {
  const layout = new VhdLayout(3000, new Date(0), derivedUuid('x'));
  t.equal(layout.size, 3072 + 512);
  t.same(layout.pieces(2000, 2000).map((p) => [p.kind, p.kind === 'bytes' ? p.data.byteLength : p.length]), [
    ['disk', 1000],
    ['zeros', 72],
    ['bytes', 512],
  ]);
  t.same(layout.pieces(100, 50), [{ kind: 'disk', at: 100, length: 50 }]);
  t.same(layout.pieces(layout.size, 10), [], 'nothing past the end');
});

for (const size of [8 * MiB, 8 * MiB + 1000, 240 * 4 * 17 * 512]) {
  t.test(`qemu-img reads a ${size}-byte disk at its exact size and bytes`, async (t) => {
    if (!requireCapability(t, hasQemuImg(), 'needs qemu-img (qemu-utils)')) return;
    const dir = await tempDir(t);
    const disk = seededBytes(size, size);
    const raw = join(dir, 'disk.raw');
    const vhd = join(dir, 'disk.vhd');
    await fs.writeFile(raw, disk);
    await fs.writeFile(vhd, materialize(new VhdLayout(size, new Date(), derivedUuid('t', String(size))), disk));
    t.equal(await virtualSize(vhd, 'vpc'), Math.ceil(size / 512) * 512, 'virtual size: the disk, to the next sector');
    t.match(await qemuImg(['compare', '-f', 'raw', '-F', 'vpc', raw, vhd]), /Images are identical/);
  });
}
