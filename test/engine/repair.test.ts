/** repair rebuilds the index from self-describing packs (issue 6). */
import t from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { backedUpStore, cli, cliJson, sha256File } from '../helpers/index.js';
import { chunkLocation } from '../helpers/corrupt.js';
import { RECORD_HEADER_BYTES } from '../../store/pack.js';
import type { RepairReport } from '../../engine/repair.js';

async function restoresIdentical(store: string, id: string, image: string, dir: string): Promise<boolean> {
  const out = join(dir, `check-${Math.random()}.img`);
  const result = await cli(['restore', '--store', store, id, out]);
  return result.code === 0 && (await sha256File(out)) === (await sha256File(image));
}

t.test('a healthy store: repair finds every chunk and changes nothing', async (t) => {
  const { store } = await backedUpStore(t);
  const report = await cliJson<RepairReport>(['repair', '--store', store]);
  t.match(report, { chunksFound: 9, duplicates: 0, damagedRanges: [], indexEntriesBefore: 9, indexRecreated: false, entriesAdded: 0, entriesReplaced: 0, entriesRemoved: 0, indexEntriesAfter: 9 });
});

t.test('a wiped index is rebuilt; a garbage index is recreated', async (t) => {
  const { dir, store, image, id } = await backedUpStore(t);
  await fs.rm(join(store, 'index'), { recursive: true });
  await fs.rm(join(store, 'segments'), { recursive: true, force: true });
  await fs.mkdir(join(store, 'index'));
  const broken = await cli(['verify', '--store', store]);
  t.equal(broken.code, 1);
  t.match(broken.stdout, /chunk missing from the index/);
  t.match(await cliJson<RepairReport>(['repair', '--store', store]), { indexEntriesBefore: 0, entriesAdded: 9, indexEntriesAfter: 9 });
  t.equal((await cli(['verify', '--store', store, '--read-data'])).code, 0);
  t.ok(await restoresIdentical(store, id, image, dir));

  for (const name of await fs.readdir(join(store, 'index'))) await fs.writeFile(join(store, 'index', name), 'garbage');
  const salvaged = await cliJson<RepairReport>(['repair', '--store', store]);
  t.match(salvaged, { entriesAdded: 9, indexEntriesAfter: 9 }, 'salvaged by LevelDB repair or recreated, then refilled from the packs');
  t.not(salvaged.indexEntriesBefore, 9);
  t.ok(await restoresIdentical(store, id, image, dir));
});

t.test('a damaged record header costs only that record; duplicates and wrong entries are fixed', async (t) => {
  const { dir, store, image, id } = await backedUpStore(t);
  const second = await chunkLocation(store, id, 'disk', 1);
  const packPath = join(store, 'packs', `${second.pack}.pack`);
  const copy = join(store, 'packs', 'ffffffffffffffff.pack');
  await fs.copyFile(packPath, copy);
  const pack = await fs.open(packPath, 'r+');
  await pack.write(Buffer.from('XXXX'), 0, 4, second.offset);
  await pack.close();

  const report = await cliJson<RepairReport>(['repair', '--store', store]);
  t.same(report.damagedRanges, [{ pack: second.pack, offset: second.offset, length: RECORD_HEADER_BYTES + second.storedLength }]);
  t.equal(report.chunksFound, 9, 'the damaged chunk still has its copy in the other pack');
  t.equal(report.duplicates, 8);
  t.equal(report.entriesReplaced, 1, 'the entry of the damaged record now points at the copy');
  t.equal((await cli(['verify', '--store', store, '--read-data'])).code, 0);
  t.ok(await restoresIdentical(store, id, image, dir));

  await fs.rm(copy);
  const lost = await cliJson<RepairReport>(['repair', '--store', store]);
  t.match(lost, { chunksFound: 8, entriesRemoved: 1, indexEntriesAfter: 8 });
  const verify = await cli(['verify', '--store', store]);
  t.equal(verify.code, 1);
  t.match(verify.stdout, new RegExp(`DAMAGED ${id} \\(disk\\) disk disk: bytes 1048576-2097151: chunk missing from the index`));
});
