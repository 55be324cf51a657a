/**
 * An encrypted store through the real CLI, with CHUNKVAULT_PASSWORD: every command works as on
 * a plain store (sha256 round trips), a sealed record that is damaged or swapped is damage named
 * with restore point, disk and range, and the store's files hold nothing of a known chunk.
 */
import t, { type Test } from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { MiB, cli, cliJson, compressibleText, ext4Image, seededBytes, sha256File, tempDir, writeImage, writeSynced } from '../helpers/index.js';
import { chunkLocation, corruptChunk, packFile } from '../helpers/corrupt.js';
import { Store } from '../../store/store.js';
import { RECORD_HEADER_BYTES } from '../../store/pack.js';
import { canMount, startMount } from '../fuse/mounting.js';
import { sessionEnv } from '../fuse/recovering.js';

const PASSWORD = 'correct horse battery staple';
// Every CLI child (the mount's too) opens the store with it.
process.env.CHUNKVAULT_PASSWORD = PASSWORD;
const OPEN = { password: async () => PASSWORD };

interface BackupJson {
  id: string;
  chunksNew: number;
  bytesNew: number;
}
interface Range {
  offset: number;
  length: number;
  problem: string;
}
interface VerifyJson {
  clean: boolean;
  damagedCatalog: string[];
  damaged: { restorePoint: string; disk: string; ranges: Range[] }[];
}

/** A new encrypted store (1 MiB chunks) and an image of random, text and zero MiBs. */
async function encryptedBackup(t: Test): Promise<{ dir: string; store: string; image: string; id: string }> {
  const dir = await tempDir(t);
  const image = join(dir, 'disk.img');
  await writeImage(image, [
    { kind: 'random', bytes: 6 * MiB, seed: 31 },
    { kind: 'text', bytes: 3 * MiB },
    { kind: 'zero', bytes: 2 * MiB },
    { kind: 'random', bytes: MiB + 4321, seed: 32 },
  ]);
  const store = join(dir, 'store');
  await cliJson(['init', '--store', store, '--encryption', 'chacha20-poly1305']);
  const { id } = await cliJson<BackupJson>(['backup', '--store', store, image]);
  return { dir, store, image, id };
}

async function restoresAs(t: Test, store: string, ref: string, out: string, sha: string, extra: string[] = []): Promise<void> {
  await cliJson(['restore', '--store', store, ref, out, ...extra]);
  t.equal(await sha256File(out), sha, `restore ${ref} ${extra.join(' ')} gives the image back`);
}

async function verifyJson(t: Test, store: string, exitCode: number): Promise<VerifyJson> {
  const result = await cli(['verify', '--store', store, '--read-data', '--json']);
  t.equal(result.code, exitCode, `verify --read-data exits ${exitCode}: ${result.stderr}`);
  return JSON.parse(result.stdout) as VerifyJson;
}

t.test('every command on an encrypted store, as on a plain one', async (t) => {
  const { dir, store, image, id } = await encryptedBackup(t);
  const sha = await sha256File(image);
  const out = join(dir, 'out.img');
  await restoresAs(t, store, id, out, sha);

  const again = await cliJson<BackupJson>(['backup', '--store', store, image]);
  t.match(again, { chunksNew: 0, bytesNew: 0 }, 'a second identical backup stores nothing new: keyed ids still dedup');

  const changedAt = 4 * MiB + 100;
  const edited = seededBytes(77, 5000);
  const handle = await fs.open(image, 'r+');
  await handle.write(edited, 0, edited.byteLength, changedAt);
  await handle.close();
  const cbt = join(dir, 'changed.json');
  await fs.writeFile(cbt, JSON.stringify({ changed: [{ offset: changedAt, length: edited.byteLength }] }));
  const incremental = await cliJson<BackupJson>(['backup', '--store', store, image, '--parent', again.id, '--changed', cbt]);
  t.equal(incremental.chunksNew, 1, 'the CBT backup stores the one changed chunk');
  const shaEdited = await sha256File(image);
  await restoresAs(t, store, incremental.id, out, shaEdited, ['--onto', id]);
  await restoresAs(t, store, id, out, sha, ['--compare']);

  t.same((await verifyJson(t, store, 0)).damaged, [], 'verify --read-data opens and checks every record');

  if (canMount(t)) {
    const mnt = join(dir, 'mnt');
    await fs.mkdir(mnt);
    const mount = await startMount(t, store, mnt);
    t.equal(await sha256File(join(mnt, incremental.id, 'disk.img')), shaEdited, 'a disk read through the mount');
    mount.child.kill('SIGTERM');
    await mount.exited;
  }

  await cliJson(['prune', '--store', store, '--keep-last', '1']);
  await cliJson(['gc', '--store', store, '--max-unused', '0']);
  await cliJson(['gc', '--store', store, '--recompress', 'zstd', '--older-than', '0']);
  await restoresAs(t, store, incremental.id, out, shaEdited);
  t.same((await verifyJson(t, store, 0)).damaged, [], 'clean after compaction and recompression');

  await fs.rm(join(store, 'index'), { recursive: true, force: true });
  await fs.rm(join(store, 'segments'), { recursive: true, force: true });
  t.match(await cliJson(['repair', '--store', store]), { damagedRanges: [], duplicates: 0 }, 'repair opens every record of the packs');
  await restoresAs(t, store, incremental.id, out, shaEdited);
});

t.test('files inside an image, a recovery session and the backup of it, on an encrypted store', async (t) => {
  const dir = await tempDir(t);
  const tree = join(dir, 'tree');
  await fs.mkdir(join(tree, 'etc'), { recursive: true });
  const conf = compressibleText(70_000, 3);
  await fs.writeFile(join(tree, 'etc', 'app.conf'), conf);
  const image = join(dir, 'root.img');
  ext4Image(image, 16, tree);
  const store = join(dir, 'store');
  await cliJson(['init', '--store', store, '--encryption', 'aes-256-gcm']);
  const { id } = await cliJson<BackupJson>(['backup', '--store', store, image]);

  const listing = await cliJson<{ entries: { name: string; size: number }[] }>(['files', '--store', store, id, '/etc']);
  t.same(listing.entries.map((e) => [e.name, e.size]), [['app.conf', conf.byteLength]], 'files lists a directory inside the image');
  const got = join(dir, 'got');
  await cliJson(['files', '--store', store, id, '--get', '/etc/app.conf', '--to', got]);
  t.same(await fs.readFile(join(got, 'app.conf')), conf, 'files --get extracts it');

  if (!canMount(t)) return;
  const sessions = await sessionEnv(t);
  const mnt = join(dir, 'mnt');
  await fs.mkdir(mnt);
  const session = await sessions.start(['--store', store, id, '--disk', 'root', mnt], mnt);
  t.equal(await sha256File(session.image), await sha256File(image), 'the session serves the disk');
  const written = seededBytes(5, 300_001);
  const expected = join(dir, 'expected.img');
  await fs.copyFile(image, expected);
  for (const target of [session.image, expected]) await writeSynced(target, written, 5 * MiB - 1234);
  const stop = await sessions.run(['recover', '--stop', mnt]);
  t.equal(stop.code, 0, stop.stderr);
  await session.exited;
  const backedUp = JSON.parse((await sessions.run(['backup', '--store', store, '--from-session', mnt, '--json'])).stdout) as BackupJson & { parent: string };
  t.equal(backedUp.parent, id);
  await restoresAs(t, store, backedUp.id, join(dir, 'out.img'), await sha256File(expected));
  await restoresAs(t, store, id, join(dir, 'out.img'), await sha256File(image));
  t.equal((await sessions.run(['recover', '--discard', mnt])).code, 0);
});

t.test('a flipped bit in a sealed record: verify names the range, restore refuses, the mount gives EIO there only', async (t) => {
  const { dir, store, id } = await encryptedBackup(t);
  await corruptChunk(store, id, 'disk', 1, OPEN);
  const report = await verifyJson(t, store, 1);
  t.same(report.damaged, [{ restorePoint: id, name: 'disk', disk: 'disk', ranges: [{ offset: MiB, length: MiB, problem: 'seal' }] }]);
  const restore = await cli(['restore', '--store', store, id, join(dir, 'out.img')]);
  t.equal(restore.code, 1);
  t.equal(restore.stderr, `chunkvault: restore point ${id} disk disk at offset ${MiB}: seal\n`);

  if (!canMount(t)) return;
  const mnt = join(dir, 'mnt');
  await fs.mkdir(mnt);
  await startMount(t, store, mnt);
  const file = await fs.open(join(mnt, id, 'disk.img'), 'r');
  const bytes = Buffer.alloc(4096);
  await t.rejects(file.read(bytes, 0, 4096, MiB + 8192), { code: 'EIO' }, 'EIO inside the damaged chunk');
  t.equal((await file.read(bytes, 0, 4096, MiB - 4096)).bytesRead, 4096, 'the bytes before it read');
  t.equal((await file.read(bytes, 0, 4096, 2 * MiB)).bytesRead, 4096, 'the bytes after it read');
  await file.close();
});

t.test('two sealed payloads of equal length swapped in a pack: both are damage', async (t) => {
  const { store, id } = await encryptedBackup(t);
  // One after the other: each opens the index, which one process at a time may hold.
  const a = await chunkLocation(store, id, 'disk', 2, OPEN);
  const b = await chunkLocation(store, id, 'disk', 3, OPEN);
  t.equal(a.pack, b.pack);
  t.equal(a.storedLength, b.storedLength, 'two raw random chunks seal to the same length');
  const path = packFile(await Store.open(store, OPEN), a.pack);
  const pack = await fs.readFile(path);
  const payloadOf = (l: typeof a): Buffer => Buffer.from(pack.subarray(l.offset + RECORD_HEADER_BYTES, l.offset + RECORD_HEADER_BYTES + l.storedLength));
  const [pa, pb] = [payloadOf(a), payloadOf(b)];
  pb.copy(pack, a.offset + RECORD_HEADER_BYTES);
  pa.copy(pack, b.offset + RECORD_HEADER_BYTES);
  await fs.writeFile(path, pack);
  const report = await verifyJson(t, store, 1);
  t.same(report.damaged[0].ranges, [{ offset: 2 * MiB, length: 2 * MiB, problem: 'seal' }], 'each payload is bound to its own chunk id');
});

t.test('catalog entries are sealed: a flipped bit, or an entry copied over another, is a damaged entry', async (t) => {
  const { dir, store, image, id } = await encryptedBackup(t);
  const { id: second } = await cliJson<BackupJson>(['backup', '--store', store, image]);
  const entry = (point: string): string => join(store, 'catalog', `${point}.json`);
  t.equal((await fs.readFile(entry(id))).indexOf('"disks"'), -1, 'no JSON in the clear');
  const bytes = await fs.readFile(entry(id));
  bytes[bytes.byteLength >> 1] ^= 1;
  await fs.writeFile(entry(id), bytes);
  t.same((await verifyJson(t, store, 1)).damagedCatalog, [id], 'a flipped bit');
  t.match((await cli(['verify', '--store', store])).stdout, `DAMAGED catalog entry ${id}: sealed entry does not open`);
  const restore = await cli(['restore', '--store', store, id, join(dir, 'out.img')]);
  t.equal(restore.code, 1);
  t.match(restore.stderr, `restore point ${id}: its catalog entry is damaged`);
  await fs.copyFile(entry(second), entry(id));
  t.same((await verifyJson(t, store, 1)).damagedCatalog, [id], "another point's entry in its place");
});

t.test('chunk maps are sealed: a flipped bit, or a map copied over another, is damage of that disk', async (t) => {
  const { store, image, id } = await encryptedBackup(t);
  const { id: second } = await cliJson<BackupJson>(['backup', '--store', store, image]);
  const map = (point: string): string => join(store, 'maps', point, 'disk.map');
  const size = (await fs.stat(image)).size;
  const bytes = await fs.readFile(map(id));
  t.equal(bytes.byteLength, Math.ceil(size / MiB) * 32 + 28, 'the slots and the seal');
  bytes[bytes.byteLength >> 1] ^= 1;
  await fs.writeFile(map(id), bytes);
  const whole = [{ offset: 0, length: size, problem: 'sealed chunk map does not open' }];
  t.same((await verifyJson(t, store, 1)).damaged, [{ restorePoint: id, name: 'disk', disk: 'disk', ranges: whole }], 'a flipped bit');
  await fs.copyFile(map(second), map(id));
  t.same((await verifyJson(t, store, 1)).damaged, [{ restorePoint: id, name: 'disk', disk: 'disk', ranges: whole }], "another point's map in its place");
});

t.test('index segments are sealed: a flipped bit stops a command that needs it, and repair rebuilds from the packs', async (t) => {
  const { dir, store, image, id } = await encryptedBackup(t);
  const [segment] = await fs.readdir(join(store, 'segments'));
  const path = join(store, 'segments', segment);
  const bytes = await fs.readFile(path);
  t.equal(bytes.indexOf('CVS1'), -1, 'no segment header in the clear');
  bytes[bytes.byteLength >> 1] ^= 1;
  await fs.writeFile(path, bytes);
  // A host without the cache reads every segment.
  await fs.rm(join(store, 'index'), { recursive: true });
  const restore = await cli(['restore', '--store', store, id, join(dir, 'out.img')]);
  t.not(restore.code, 0);
  t.match(restore.stderr, /^chunkvault: index segment \S+ is damaged \(sealed segment does not open\); run 'chunkvault repair'\n$/);
  t.equal((await cli(['repair', '--store', store])).code, 0, 'repair rebuilds the index from the packs');
  await restoresAs(t, store, id, join(dir, 'again.img'), await sha256File(image));
});

t.test('the store holds nothing of a known chunk: not its bytes, not their start, not its unkeyed id', async (t) => {
  const { dir, store, image } = await encryptedBackup(t);
  const known = (await fs.readFile(image)).subarray(0, MiB);
  const require = createRequire(import.meta.url);
  const blake3 = require('blake3') as typeof import('blake3');
  await blake3.load();
  const id = blake3.hash(known) as Buffer;
  const needles = { chunk: known, 'first 64 bytes': known.subarray(0, 64), 'unkeyed id': id, 'unkeyed id in hex': Buffer.from(id.toString('hex')) };
  const plain = join(dir, 'plain');
  await cliJson(['init', '--store', plain]);
  await cliJson(['backup', '--store', plain, image]);
  const inPlain = await occurrences(plain, needles);
  t.ok(inPlain.chunk > 0 && inPlain['unkeyed id'] > 0, `the search finds them in a plain store: ${JSON.stringify(inPlain)}`);
  t.same(await occurrences(store, needles), { chunk: 0, 'first 64 bytes': 0, 'unkeyed id': 0, 'unkeyed id in hex': 0 });
});

/**
 * How often each needle occurs in the files below `dir`. Searched here rather than with
 * `grep -c -f`: grep splits a pattern file at newlines, and short lines of random bytes
 * would match by chance.
 */
async function occurrences(dir: string, needles: Record<string, Buffer>): Promise<Record<string, number>> {
  const counts = Object.fromEntries(Object.keys(needles).map((k) => [k, 0]));
  for (const entry of await fs.readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const bytes = await fs.readFile(join(entry.parentPath, entry.name));
    for (const [what, needle] of Object.entries(needles)) {
      for (let at = bytes.indexOf(needle); at >= 0; at = bytes.indexOf(needle, at + 1)) counts[what]++;
    }
  }
  return counts;
}
