/** The VMDK view: a monolithicFlat descriptor naming the raw image beside it. */
import t from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { vmdkDescriptor, VmdkLayout } from '../../engine/views/vmdk.js';
import { MiB, requireCapability, seededBytes, tempDir } from '../helpers/index.js';
import { checkProblems, hasQemuImg, materialize, qemuImg, virtualSize } from '../helpers/views.js';

t.test('descriptor: one flat extent of the disk in sectors, rounded up', async (t) => {
  const text = vmdkDescriptor(8 * MiB + 1000, 'disk.img', 0xabc);
  t.match(text, /^# Disk DescriptorFile\n/);
  t.match(text, '\nCID=00000abc\n');
  t.match(text, '\ncreateType="monolithicFlat"\n');
  t.match(text, `\nRW ${8 * 2048 + 2} FLAT "disk.img" 0\n`);
  t.match(text, '\nddb.geometry.sectors = "17"\n');
  const layout = new VmdkLayout(8 * MiB + 1000, 'disk.img', 0xabc);
  t.equal(layout.size, Buffer.byteLength(text));
  t.equal(materialize(layout, Buffer.alloc(0)).toString(), text);
  t.same(layout.pieces(layout.size, 1), []);
});

for (const size of [8 * MiB, 8 * MiB + 1000]) {
  t.test(`qemu-img: a ${size}-byte disk through the descriptor, exact size, same bytes, check clean`, async (t) => {
    if (!requireCapability(t, hasQemuImg(), 'needs qemu-img (qemu-utils)')) return;
    const dir = await tempDir(t);
    const raw = join(dir, 'disk.img');
    const vmdk = join(dir, 'disk.vmdk');
    await fs.writeFile(raw, seededBytes(3, size));
    await fs.writeFile(vmdk, vmdkDescriptor(size, 'disk.img', 1));
    t.equal(await virtualSize(vmdk, 'vmdk'), Math.ceil(size / 512) * 512);
    t.same(await checkProblems(vmdk, 'vmdk'), {});
    t.match(await qemuImg(['compare', '-f', 'raw', '-F', 'vmdk', raw, vmdk]), /Images are identical/);
  });
}
