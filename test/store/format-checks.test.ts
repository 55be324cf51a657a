/**
 * chunkvault.json, checked: every field exactly, and a format file that is not a regular,
 * readable file is a one-line error naming it, never a raw errno and never a hang.
 */
import t from 'tap';
import { spawn, execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { decodeFormat, encodeFormat, newFormat, readFormat } from '../../store/format.js';
import { FsBackend } from '../../store/backend/fs.js';
import { DEFAULT_COMPRESSION } from '../../store/compression.js';
import { CLI, cli, collect, hasCommand, isRoot, requireCapability, tempDir } from '../helpers/index.js';
import { canServeFuse, eioFile } from '../helpers/one-file-fs.js';

const HINT = 'check the store path, or restore this file from a copy of the store';
const good = { format: 'chunkvault', version: 1, chunkSize: 1048576, created: '2026-01-01T00:00:00.000Z' };

t.test('fields: version a whole number from 1, only a larger one is newer; chunk size a power of two within the limits', async (t) => {
  const file = '/s/chunkvault.json';
  const fresh = newFormat(65536, new Date(0), DEFAULT_COMPRESSION);
  t.match(fresh.id, /^[0-9a-f]{32}$/, 'a new store gets a random id');
  t.not(newFormat(65536, new Date(0), DEFAULT_COMPRESSION).id, fresh.id);
  t.same(decodeFormat(encodeFormat(fresh), '/s'), { format: 'chunkvault', version: 3, chunkSize: 65536, created: '1970-01-01T00:00:00.000Z', compression: { codec: 'lz4', level: 0 }, recompress: null, id: fresh.id });
  const cases: [string, unknown, string, string][] = [
    ['version -1', { ...good, version: -1 }, 'CV_UNSUPPORTED_FORMAT', `${file}: invalid version -1 (a version is a whole number, 1 or more); ${HINT}`],
    ['version 0', { ...good, version: 0 }, 'CV_UNSUPPORTED_FORMAT', `${file}: invalid version 0 (a version is a whole number, 1 or more); ${HINT}`],
    ['version 0.5', { ...good, version: 0.5 }, 'CV_UNSUPPORTED_FORMAT', `${file}: invalid version 0.5 (a version is a whole number, 1 or more); ${HINT}`],
    ['id not hex', { ...good, id: 'x'.repeat(32) }, 'CV_UNSUPPORTED_FORMAT', `${file}: invalid id "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" (32 hex digits); ${HINT}`],
    ['version 1.5', { ...good, version: 1.5 }, 'CV_UNSUPPORTED_FORMAT', `${file}: invalid version 1.5 (a version is a whole number, 1 or more); ${HINT}`],
    ['version "1"', { ...good, version: '1' }, 'CV_UNSUPPORTED_FORMAT', `${file}: invalid version "1" (a version is a whole number, 1 or more); ${HINT}`],
    ['no version', { ...good, version: undefined }, 'CV_UNSUPPORTED_FORMAT', `${file}: invalid version nothing (a version is a whole number, 1 or more); ${HINT}`],
    ['version 5', { ...good, version: 5 }, 'CV_UNSUPPORTED_FORMAT', `${file}: store format version 5 is newer than this chunkvault supports (4); upgrade chunkvault`],
    ['version 4 without a cipher', { ...good, version: 4 }, 'CV_UNSUPPORTED_FORMAT', `${file}: version 4 without a valid encryption cipher (nothing); ${HINT}`],
    ['version 4, unknown cipher', { ...good, version: 4, encryption: { cipher: 'rot13' } }, 'CV_UNSUPPORTED_FORMAT', `${file}: version 4 without a valid encryption cipher ({"cipher":"rot13"}); ${HINT}`],
    ['a cipher in version 3', { ...good, version: 3, encryption: { cipher: 'aes-256-gcm' } }, 'CV_UNSUPPORTED_FORMAT', `${file}: encryption in a version 3 store; ${HINT}`],
    ['chunk size 100000', { ...good, chunkSize: 100000 }, 'CV_UNSUPPORTED_FORMAT', `${file}: invalid chunk size 100000 (expected a power of two from 65536 to 8388608 bytes); ${HINT}`],
    ['chunk size 32768', { ...good, chunkSize: 32768 }, 'CV_UNSUPPORTED_FORMAT', `${file}: invalid chunk size 32768 (expected a power of two from 65536 to 8388608 bytes); ${HINT}`],
    ['chunk size 16M', { ...good, chunkSize: 16777216 }, 'CV_UNSUPPORTED_FORMAT', `${file}: invalid chunk size 16777216 (expected a power of two from 65536 to 8388608 bytes); ${HINT}`],
    ['chunk size "1M"', { ...good, chunkSize: '1M' }, 'CV_UNSUPPORTED_FORMAT', `${file}: invalid chunk size "1M" (expected a power of two from 65536 to 8388608 bytes); ${HINT}`],
    ['format "Chunkvault"', { ...good, format: 'Chunkvault' }, 'CV_UNSUPPORTED_FORMAT', `${file}: unknown store format "Chunkvault" (expected "chunkvault"); ${HINT}`],
    ['no format', { ...good, format: undefined }, 'CV_UNSUPPORTED_FORMAT', `${file}: unknown store format nothing (expected "chunkvault"); ${HINT}`],
    ['an array', [1, 2], 'CV_NOT_A_STORE', `${file} holds [1,2], not a JSON object; ${HINT}`],
    ['null', null, 'CV_NOT_A_STORE', `${file} holds null, not a JSON object; ${HINT}`],
  ];
  for (const [what, value, code, message] of cases) t.throws(() => decodeFormat(JSON.stringify(value), '/s'), { code, message }, what);
  t.throws(() => decodeFormat('{"format": "chunkvault", ', '/s'), { code: 'CV_NOT_A_STORE', message: `${file} is not valid JSON; ${HINT}` });
  const long = { ...good, version: 'x'.repeat(100_000) };
  t.throws(() => decodeFormat(JSON.stringify(long), '/s'), { message: /invalid version "x{79}\.\.\. \(100002 characters\)/ }, 'a huge value is cut short');
});

t.test('a format file that is not a regular file, too large, or in a file: named, and never read', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'chunkvault.json');
  await fs.mkdir(file);
  await t.rejects(readFormat(new FsBackend(dir)), { code: 'CV_NOT_A_STORE', message: `${file} is a directory, not a regular file; ${HINT}` });
  await fs.rmdir(file);
  execFileSync('mkfifo', [file]);
  await t.rejects(readFormat(new FsBackend(dir)), { code: 'CV_NOT_A_STORE', message: `${file} is a FIFO, not a regular file; ${HINT}` }, 'a FIFO with no writer: refused, no hang');
  await fs.rm(file);
  await fs.symlink('/dev/zero', file);
  await t.rejects(readFormat(new FsBackend(dir)), { code: 'CV_NOT_A_STORE', message: `${file} is a character device, not a regular file; ${HINT}` });
  await fs.rm(file);
  await fs.writeFile(file, '');
  await fs.truncate(file, 1 << 20);
  await t.rejects(readFormat(new FsBackend(dir)), { code: 'CV_NOT_A_STORE', message: `${file} has 1048576 bytes, far too many for a format file; ${HINT}` });
  await t.rejects(readFormat(new FsBackend(join(file, 'sub'))), { code: 'CV_NOT_A_STORE', message: `${join(file, 'sub')} is not a chunkvault store (no chunkvault.json; create one with 'chunkvault init')` }, 'ENOTDIR: a path through a file is no store');
});

t.test('through the CLI: one line, exit 2, nothing changed', async (t) => {
  const dir = await tempDir(t);
  const store = join(dir, 's');
  t.equal((await cli(['init', '--store', store])).code, 0);
  const file = join(store, 'chunkvault.json');
  const original = await fs.readFile(file, 'utf8');
  const damaged = JSON.stringify({ ...JSON.parse(original), version: '1' });
  await fs.writeFile(file, damaged);
  const listed = await cli(['list', '--store', store]);
  t.equal(listed.code, 2);
  t.equal(listed.stderr, `chunkvault: ${file}: invalid version "1" (a version is a whole number, 1 or more); ${HINT}\n`);
  t.equal(await fs.readFile(file, 'utf8'), damaged, 'the format file is left as it was');
});

t.test('a format file on a failing disk: EIO, named', async (t) => {
  if (!requireCapability(t, canServeFuse(), 'needs root, /dev/fuse and fusermount')) return;
  const dir = await tempDir(t);
  const file = join(dir, 'chunkvault.json');
  await fs.symlink(await eioFile(t, join(dir, 'mnt'), 200), file);
  await t.rejects(readFormat(new FsBackend(dir)), { code: 'CV_STORE_READ', message: `cannot read ${file} (EIO); stopped, nothing was changed` });
});

t.test('a store its user may not read: EACCES, named, with what to do', async (t) => {
  if (!requireCapability(t, isRoot() && hasCommand('setpriv'), 'needs root and setpriv to run as an unprivileged user')) return;
  const dir = await tempDir(t);
  await fs.chmod(dir, 0o755);
  const store = join(dir, 's');
  t.equal((await cli(['init', '--store', store])).code, 0);
  await fs.chmod(store, 0o700);
  // env -i: the test runner adds its NODE_OPTIONS hooks to every child, and they write into the checkout, which nobody cannot.
  const asNobody = await collect(
    spawn('env', ['-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`, 'setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, CLI, 'list', '--store', store], { stdio: ['ignore', 'pipe', 'pipe'] }),
  );
  t.equal(asNobody.code, 2);
  t.equal(asNobody.stderr, `chunkvault: store ${store} is not readable (EACCES): cannot read ${join(store, 'chunkvault.json')}; run chunkvault as the store's owner\n`);
});
