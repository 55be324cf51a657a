/**
 * Storage damage of each kind (issue 6): a flipped byte in a pack, a truncated pack, a
 * deleted pack, a deleted chunk map, a damaged LevelDB index, a damaged catalog entry.
 * For each: verify names exactly the damaged restore points, disks and byte ranges and
 * exits 1; undamaged restore points and disks still restore byte-identical; restoring a
 * damaged disk fails naming where, or with --partial writes the rest and lists the ranges;
 * repair rebuilds the index from the packs. Commands run through the CLI's main() in this
 * process (main-cli.ts); gc and the other direct calls through the real binary.
 */
import t, { type Test } from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { RECORD_HEADER_BYTES } from '../../store/pack.js';
import { cli, cliJson, sha256File } from '../helpers/index.js';
import { runMain } from './main-cli.js';
import { corruptChunk } from '../helpers/corrupt.js';
import { CS, buildFixture, copyStore, dropIndexEntries, packOf, type Fixture } from './fixture.js';

interface Range {
  offset: number;
  length: number;
  problem: string;
}
interface DamagedDisk {
  restorePoint: string;
  name: string;
  disk: string;
  ranges: Range[];
}
interface VerifyJson {
  clean: boolean;
  damaged: DamagedDisk[];
  damagedCatalog: string[];
}
interface RepairJson {
  damagedRanges: { pack: string; offset: number; length: number }[];
  indexRecreated: boolean;
  entriesAdded: number;
  entriesRemoved: number;
  indexEntriesAfter: number;
}

const fixture = await buildFixture(t);
const CHUNKS = 21 + 8 + 2 + 6; // A's sda and sdb, B's two new slots, C

async function verifyJson(t: Test, store: string, readData: boolean, exitCode: number): Promise<VerifyJson> {
  const result = await runMain(['verify', '--store', store, '--json', ...(readData ? ['--read-data'] : [])]);
  t.equal(result.code, exitCode, `verify${readData ? ' --read-data' : ''} exits ${exitCode}`);
  return JSON.parse(result.stdout) as VerifyJson;
}

/** The disk restores byte-identical to its source image. */
async function restores(t: Test, store: string, dir: string, ref: string, disk: string, sha: string): Promise<void> {
  const out = join(dir, `ok-${ref}-${disk}.img`);
  const result = await runMain(['restore', '--store', store, ref, out, '--disk', disk]);
  t.equal(result.code, 0, `${ref} ${disk} restores: ${result.stderr}`);
  t.equal(await sha256File(out), sha, `${ref} ${disk} is byte-identical`);
}

async function restoreFails(t: Test, store: string, dir: string, ref: string, disk: string, message: RegExp): Promise<void> {
  const result = await runMain(['restore', '--store', store, ref, join(dir, `failed-${ref}-${disk}.img`), '--disk', disk]);
  t.equal(result.code, 1, `restoring ${ref} ${disk} fails with exit 1`);
  t.match(result.stderr.trimEnd(), message);
  t.equal(result.stderr.trimEnd().split('\n').length, 1, 'in one line');
}

/** --partial: exit 1, the unrestored ranges listed and left zero, every other byte the source's. */
async function restoresPartially(t: Test, store: string, dir: string, ref: string, disk: string, image: string, expected: Range[]): Promise<void> {
  const out = join(dir, `partial-${ref}-${disk}.img`);
  const result = await runMain(['restore', '--store', store, ref, out, '--disk', disk, '--partial', '--json']);
  t.equal(result.code, 1, '--partial exits 1');
  t.same((JSON.parse(result.stdout) as { unrestored: Range[] }).unrestored, expected, '--partial lists exactly the damaged ranges');
  const restored = await fs.readFile(out);
  const source = await fs.readFile(image);
  t.equal(restored.byteLength, source.byteLength);
  let at = 0;
  for (const range of [...expected, { offset: source.byteLength, length: 0, problem: '' }]) {
    t.ok(restored.subarray(at, range.offset).equals(source.subarray(at, range.offset)), `bytes ${at}-${range.offset - 1} restored`);
    t.ok(restored.subarray(range.offset, range.offset + range.length).every((b) => b === 0), `bytes ${range.offset}-${range.offset + range.length - 1} left zero`);
    at = range.offset + range.length;
  }
}

async function repairJson(t: Test, store: string): Promise<RepairJson> {
  const result = await runMain(['repair', '--store', store, '--json']);
  t.equal(result.code, 0, `repair exits 0: ${result.stderr}`);
  return JSON.parse(result.stdout) as RepairJson;
}

const range = (offset: number, length: number, problem: string): Range => ({ offset, length, problem });
const disk = (f: Fixture, point: 'a' | 'b' | 'c', label: string, ranges: Range[]): DamagedDisk => ({ restorePoint: f[point], name: point === 'c' ? 'db' : 'vm', disk: label, ranges });

t.test('a flipped byte in a pack: the chunk fails its hash wherever it is used', async (t) => {
  const { dir, store } = await copyStore(t, fixture);
  const record = await corruptChunk(store, fixture.a, 'sda', 5);
  t.same((await verifyJson(t, store, false, 0)).damaged, [], 'without --read-data the record still looks whole');
  const report = await verifyJson(t, store, true, 1);
  const damaged = range(5 * CS, CS, 'hash');
  t.same(report.damaged, [disk(fixture, 'b', 'sda', [damaged]), disk(fixture, 'a', 'sda', [damaged])], 'A and B share the chunk at slot 5 of sda');

  await restoreFails(t, store, dir, fixture.a, 'sda', new RegExp(`^chunkvault: restore point ${fixture.a} disk sda at offset ${5 * CS}: hash$`));
  await restoresPartially(t, store, dir, fixture.b, 'sda', fixture.images.sda2, [damaged]);
  await restores(t, store, dir, fixture.a, 'sdb', fixture.sha.sdb);
  await restores(t, store, dir, fixture.c, 'disk', fixture.sha.c);

  const repaired = await repairJson(t, store);
  t.same(repaired.damagedRanges, [{ pack: record.pack, offset: record.offset, length: RECORD_HEADER_BYTES + record.storedLength }], 'repair names the bad record');
  t.match(repaired, { entriesRemoved: 1, indexEntriesAfter: CHUNKS - 1 });
  const after = await verifyJson(t, store, true, 1);
  const missing = range(5 * CS, CS, 'chunk missing from the index');
  t.same(after.damaged, [disk(fixture, 'b', 'sda', [missing]), disk(fixture, 'a', 'sda', [missing])], 'after repair the same range, now as missing');
});

t.test('a truncated pack: the records past the cut are damaged, plain verify sees it', async (t) => {
  const { dir, store } = await copyStore(t, fixture);
  const slot6 = await packOf(store, fixture.a, 'sdb', 6);
  await fs.truncate(slot6.path, slot6.offset + RECORD_HEADER_BYTES + 100);
  const plain = await verifyJson(t, store, false, 1);
  const header = [range(6 * CS, CS, 'length'), range(7 * CS, CS, 'header')];
  t.same(plain.damaged, [disk(fixture, 'b', 'sdb', header), disk(fixture, 'a', 'sdb', header)], 'slot 6 is cut short, slot 7 is gone');
  const truncated = range(6 * CS, 2 * CS, 'pack truncated');
  t.same((await verifyJson(t, store, true, 1)).damaged, [disk(fixture, 'b', 'sdb', [truncated]), disk(fixture, 'a', 'sdb', [truncated])]);

  await restoreFails(t, store, dir, fixture.a, 'sdb', new RegExp(`restore point ${fixture.a} disk sdb at offset ${6 * CS}: pack truncated$`));
  await restoresPartially(t, store, dir, fixture.a, 'sdb', fixture.images.sdb, [truncated]);
  await restores(t, store, dir, fixture.a, 'sda', fixture.sha.sda1);
  await restores(t, store, dir, fixture.b, 'sda', fixture.sha.sda2);

  const repaired = await repairJson(t, store);
  t.same(repaired.damagedRanges, [{ pack: slot6.pack, offset: slot6.offset, length: RECORD_HEADER_BYTES + 100 }], 'the torn tail');
  t.match(repaired, { entriesRemoved: 2, indexEntriesAfter: CHUNKS - 2 });
});

t.test('a deleted pack: every data range of its restore point, and only those', async (t) => {
  const { dir, store } = await copyStore(t, fixture);
  await fs.rm((await packOf(store, fixture.c, 'disk', 0)).path);
  const missing = range(0, 6 * CS, 'pack missing');
  t.same((await verifyJson(t, store, false, 1)).damaged, [disk(fixture, 'c', 'disk', [missing])], 'the zero slots after them are not damaged');
  t.same((await verifyJson(t, store, true, 1)).damaged, [disk(fixture, 'c', 'disk', [missing])]);

  await restoreFails(t, store, dir, fixture.c, 'disk', new RegExp(`restore point ${fixture.c} disk disk at offset 0: pack missing$`));
  await restoresPartially(t, store, dir, fixture.c, 'disk', fixture.images.c, [missing]);
  await restores(t, store, dir, fixture.a, 'sda', fixture.sha.sda1);
  await restores(t, store, dir, fixture.b, 'sdb', fixture.sha.sdb);
  t.match(await repairJson(t, store), { entriesRemoved: 6, indexEntriesAfter: CHUNKS - 6 });
});

t.test('a deleted chunk map: that disk of that restore point, whole', async (t) => {
  const { dir, store } = await copyStore(t, fixture);
  await fs.rm(join(store, 'maps', fixture.b, 'sdb.map'));
  const report = await verifyJson(t, store, true, 1);
  t.same(report.damaged, [disk(fixture, 'b', 'sdb', [range(0, fixture.sizes.sdb, 'chunk map unreadable (ENOENT)')])]);
  await restoreFails(t, store, dir, fixture.b, 'sdb', new RegExp(`^chunkvault: restore point ${fixture.b} disk sdb: chunk map unreadable \\(ENOENT\\)$`));
  const partial = await cli(['restore', '--store', store, fixture.b, join(dir, 'p.img'), '--disk', 'sdb', '--partial']);
  t.equal(partial.code, 1, 'without a map there is nothing --partial could write');
  t.match(partial.stderr, 'chunk map unreadable');
  await restores(t, store, dir, fixture.b, 'sda', fixture.sha.sda2);
  await restores(t, store, dir, fixture.a, 'sdb', fixture.sha.sdb);
  const gc = await cli(['gc', '--store', store]);
  t.equal(gc.code, 1, 'gc refuses: it cannot tell what the lost map referenced');
  t.match(gc.stderr, /chunk map unreadable .*deleted nothing/);
});

t.test('index entries lost (an index restored from an old copy): exactly their ranges; repair brings them back', async (t) => {
  const { dir, store } = await copyStore(t, fixture);
  await dropIndexEntries(store, fixture.a, 'sda', [8, 9]);
  const missing = range(8 * CS, 2 * CS, 'chunk missing from the index');
  t.same((await verifyJson(t, store, false, 1)).damaged, [disk(fixture, 'b', 'sda', [missing]), disk(fixture, 'a', 'sda', [missing])]);
  await restoreFails(t, store, dir, fixture.b, 'sda', new RegExp(`restore point ${fixture.b} disk sda at offset ${8 * CS}: chunk missing from the index$`));
  await restoresPartially(t, store, dir, fixture.a, 'sda', fixture.images.sda1, [missing]);
  await restores(t, store, dir, fixture.b, 'sdb', fixture.sha.sdb);

  t.match(await repairJson(t, store), { damagedRanges: [], indexRecreated: false, entriesAdded: 2, entriesRemoved: 0, indexEntriesAfter: CHUNKS });
  t.match(await verifyJson(t, store, true, 0), { clean: true, damaged: [], damagedCatalog: [] });
  await restores(t, store, dir, fixture.a, 'sda', fixture.sha.sda1);
  await restores(t, store, dir, fixture.b, 'sda', fixture.sha.sda2);
});

t.test('LevelDB files damaged: every command says so and names repair; repair rebuilds the index from the packs', async (t) => {
  for (const how of ['every index file overwritten', 'table bytes flipped']) {
    const { dir, store } = await copyStore(t, fixture);
    const files = (await fs.readdir(join(store, 'index'))).filter((n) => n !== 'LOCK' && !n.startsWith('LOG'));
    const tables = files.filter((n) => n.endsWith('.ldb') || n.endsWith('.log'));
    t.ok(tables.some((n) => n.endsWith('.ldb')), `${how}: the index has a table file`);
    for (const name of how === 'every index file overwritten' ? files : tables.filter((n) => n.endsWith('.ldb'))) {
      const bytes = await fs.readFile(join(store, 'index', name));
      for (let i = 0; i < bytes.byteLength; i += 7) bytes[i] ^= 0x5a;
      await fs.writeFile(join(store, 'index', name), bytes);
    }
    const damaged = new RegExp(`^chunkvault: the chunk index ${join(store, 'index')} is damaged \\(.+\\); run 'chunkvault repair' to rebuild it from the packs\n$`);
    const verify = await cli(['verify', '--store', store]);
    t.equal(verify.code, 1, `${how}: verify exits 1`);
    t.match(verify.stderr, damaged);
    // A's entries are in a table file; C's, the last written, may still be in LevelDB's log.
    const restore = await cli(['restore', '--store', store, fixture.a, join(dir, 'x.img'), '--disk', 'sda']);
    t.equal(restore.code, 1, `${how}: restore exits 1`);
    t.match(restore.stderr, damaged);

    const repaired = await repairJson(t, store);
    t.equal(repaired.indexEntriesAfter, CHUNKS, `${how}: every chunk is indexed again`);
    t.equal(repaired.entriesAdded, CHUNKS);
    t.same((await verifyJson(t, store, true, 0)).damaged, []);
    await restores(t, store, dir, fixture.a, 'sda', fixture.sha.sda1);
  }
});

t.test('a damaged catalog entry: reported by verify, named by restore, the others unaffected, its chunks kept', async (t) => {
  const { dir, store } = await copyStore(t, fixture);
  await fs.writeFile(join(store, 'catalog', `${fixture.b}.json`), '{"id": "' + fixture.b + '", "disks": [');
  const report = await verifyJson(t, store, true, 1);
  t.same(report.damagedCatalog, [fixture.b]);
  t.same(report.damaged, []);
  const human = await cli(['verify', '--store', store]);
  t.match(human.stdout, `DAMAGED catalog entry ${fixture.b}: not valid JSON`);
  await restoreFails(t, store, dir, fixture.b, 'sda', new RegExp(`^chunkvault: restore point ${fixture.b}: its catalog entry is damaged \\(unreadable\\); its maps and chunks are kept$`));
  await restoreFails(t, store, dir, fixture.b.slice(0, 14), 'sda', /its catalog entry is damaged/);
  await restores(t, store, dir, fixture.a, 'sda', fixture.sha.sda1);
  await restores(t, store, dir, fixture.a, 'sdb', fixture.sha.sdb);
  await restores(t, store, dir, 'db@latest', 'disk', fixture.sha.c);
  await cliJson(['gc', '--store', store, '--max-unused', '0']);
  t.same((await cliJson<{ liveChunks: number }>(['gc', '--store', store, '--dry-run'])).liveChunks, CHUNKS, "gc keeps the damaged entry's chunks");
});
