/**
 * init --encryption and the passphrase prompt, on a real pseudo-terminal: typed twice for a new
 * store, never echoed, never in the process's argv or environment; a mismatch or an empty
 * passphrase creates nothing.
 */
import t from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { cli, cliJson, tempDir } from '../helpers/index.js';
import { cliOnPty } from '../helpers/pty.js';

const SECRET = 'tty-s3cret-phrase';
/** No passphrase from the environment: the prompt is the only source. */
const NO_ENV = { CHUNKVAULT_PASSWORD: undefined, CHUNKVAULT_NEW_PASSWORD: undefined };

t.test('init on a terminal asks twice, echoes nothing, keeps the passphrase out of argv and environ; it then opens the store', async (t) => {
  const store = join(await tempDir(t), 'store');
  const run = await cliOnPty(['init', '--store', store, '--encryption', 'chacha20-poly1305'], [SECRET, SECRET], NO_ENV);
  t.equal(run.code, 0, run.screen);
  t.match(run.screen, /^passphrase: \r?\nrepeat passphrase: \r?\ninitialized store /);
  t.notMatch(run.screen, SECRET, 'not echoed');
  t.notMatch(run.cmdline, SECRET, 'not in argv');
  t.notMatch(run.environ, SECRET, 'not in the environment');
  t.same(await cliJson(['list', '--store', store], { CHUNKVAULT_PASSWORD: SECRET }), [], 'the typed passphrase opens the store');
  const open = await cliOnPty(['list', '--store', store], [SECRET], NO_ENV);
  t.equal(open.code, 0, open.screen);
  t.match(open.screen, /^passphrase: \r?\nno restore points/, 'an open asks once');
  const wrong = await cliOnPty(['list', '--store', store], ['not it'], NO_ENV);
  t.equal(wrong.code, 2);
  t.match(wrong.screen, /chunkvault: wrong passphrase: it does not open the store's key/);
});

t.test('two different passphrases typed, or an empty one, create no store', async (t) => {
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  const mismatch = await cliOnPty(['init', '--store', store, '--encryption', 'aes-256-gcm'], [SECRET, `${SECRET}x`], NO_ENV);
  t.equal(mismatch.code, 2);
  t.match(mismatch.screen, /\nchunkvault: the two passphrases typed differ: nothing was changed\r?\n$/);
  const empty = await cliOnPty(['init', '--store', store, '--encryption', 'aes-256-gcm'], ['', ''], NO_ENV);
  t.equal(empty.code, 2);
  t.match(empty.screen, /\nchunkvault: the passphrase is empty\r?\n$/);
  const fromEnv = await cli(['init', '--store', store, '--encryption', 'aes-256-gcm'], { CHUNKVAULT_PASSWORD: '' });
  t.same([fromEnv.code, fromEnv.stderr], [2, 'chunkvault: the passphrase is empty\n']);
  t.same(await fs.readdir(dir), [], 'nothing was created');
});

t.test('without a terminal and without a passphrase, init of an encrypted store is refused before anything is written', async (t) => {
  const dir = await tempDir(t);
  const none = await cli(['init', '--store', join(dir, 'store'), '--encryption', 'aes-256-gcm'], {});
  t.equal(none.code, 2);
  t.match(none.stderr, /^chunkvault: init of an encrypted store .* needs a passphrase \(CHUNKVAULT_PASSWORD, --password-file, or a terminal\)\n$/);
  t.same(await fs.readdir(dir), []);
});

t.test('key passwd on a terminal asks for the old passphrase once and the new one twice', async (t) => {
  const store = join(await tempDir(t), 'store');
  await cliJson(['init', '--store', store, '--encryption', 'aes-256-gcm'], { CHUNKVAULT_PASSWORD: SECRET });
  const run = await cliOnPty(['key', 'passwd', '--store', store], [SECRET, 'new one', 'new one'], NO_ENV);
  t.equal(run.code, 0, run.screen);
  t.match(run.screen, /^passphrase: \r?\nnew passphrase: \r?\nrepeat new passphrase: \r?\nadded key [0-9a-f]{16}, removed key [0-9a-f]{16}/);
  t.notMatch(run.screen, /new one|tty-s3cret/);
  t.equal((await cli(['list', '--store', store], { CHUNKVAULT_PASSWORD: 'new one' })).code, 0);
  t.equal((await cli(['list', '--store', store], { CHUNKVAULT_PASSWORD: SECRET })).code, 2, 'the old passphrase no longer opens it');
});

t.test('--encryption alone means chacha20-poly1305; without the flag a store is plain; an unknown cipher is refused', async (t) => {
  const dir = await tempDir(t);
  const env = { CHUNKVAULT_PASSWORD: SECRET };
  t.match(await cliJson(['init', '--store', join(dir, 'default'), '--encryption'], env), { encryption: 'chacha20-poly1305' });
  t.match(JSON.parse(await fs.readFile(join(dir, 'default', 'chunkvault.json'), 'utf8')), { version: 4, encryption: { cipher: 'chacha20-poly1305' } });
  t.match(await cliJson(['init', '--store', join(dir, 'plain')], env), { encryption: 'none' });
  t.same(await cli(['init', '--store', join(dir, 'bad'), '--encryption', 'rot13'], env), { code: 2, stdout: '', stderr: "chunkvault: --encryption: 'rot13' is not one of aes-256-gcm, chacha20-poly1305, none\n" });
  t.same((await fs.readdir(dir)).sort(), ['default', 'plain']);
});
