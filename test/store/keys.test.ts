/**
 * An encrypted store's master key behind its passphrase: init wraps a new one, open unwraps it,
 * a wrong or missing passphrase and a damaged key object are refused with their own codes.
 */
import t, { type Test } from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { Store } from '../../store/store.js';
import { FsBackend } from '../../store/backend/fs.js';
import { hostname } from 'node:os';
import { addKey, listKeyIds, unlockMaster, keyObject, keysOpenedBy, readKeyFile, encodeKeyExport, decodeKeyExport } from '../../store/keys.js';
import { Sealer, storeKeys } from '../../store/crypto.js';
import { SealBrokenError } from '../../store/errors.js';
import { tempDir } from '../helpers/index.js';

const FAST = { N: 1024, r: 8, p: 1 };

async function encryptedStore(t: Test): Promise<string> {
  const dir = join(await tempDir(t), 'store');
  await Store.init(dir, 65536, undefined, { encryption: { cipher: 'chacha20-poly1305', password: 'correct horse', scrypt: FAST } });
  return dir;
}

t.test('init wraps a random master key; open unwraps the same one with the passphrase', async (t) => {
  const dir = await encryptedStore(t);
  const store = await Store.open(dir, { password: async () => 'correct horse' });
  t.equal(store.format.version, 4);
  t.same(store.format.encryption, { cipher: 'chacha20-poly1305' });
  t.equal(store.keys?.cipher, 'chacha20-poly1305');
  const again = await Store.open(dir, { password: async () => 'correct horse' });
  t.ok(again.keys!.master.equals(store.keys!.master), 'the same master key each time');
  t.not(store.keys!.chunkIdKey.toString('hex'), store.keys!.master.toString('hex'), 'chunk ids are keyed with a derived key, not the master key');
  t.equal((await listKeyIds(new FsBackend(dir))).length, 1);
});

t.test('a wrong, missing or damaged key is refused by code', async (t) => {
  const dir = await encryptedStore(t);
  await t.rejects(Store.open(dir, { password: async () => 'wrong' }), { code: 'CV_WRONG_PASSWORD', message: "wrong passphrase: it does not open the store's key" });
  await t.rejects(Store.open(dir), { code: 'CV_PASSWORD_REQUIRED' });
  const [id] = await listKeyIds(new FsBackend(dir));
  await fs.writeFile(join(dir, keyObject(id)), '{"version":1');
  await t.rejects(Store.open(dir, { password: async () => 'correct horse' }), { code: 'CV_KEY_DAMAGED' });
});

t.test('a second passphrase opens the same master key; the first still does', async (t) => {
  const dir = await encryptedStore(t);
  const backend = new FsBackend(dir);
  const { master } = await unlockMaster(backend, 'correct horse');
  await addKey(backend, master, 'battery staple', FAST);
  t.ok((await unlockMaster(backend, 'battery staple')).master.equals(master));
  t.ok((await unlockMaster(backend, 'correct horse')).master.equals(master));
});

t.test('a sealed object opens only under its own associated data and key', async (t) => {
  for (const cipher of ['aes-256-gcm', 'chacha20-poly1305'] as const) {
    const { sealer } = storeKeys(cipher, Buffer.alloc(32, 7));
    const sealed = sealer.seal(Buffer.from('restore point'), Buffer.from('catalog/a'));
    t.equal(sealer.open(sealed, Buffer.from('catalog/a')).toString(), 'restore point', `${cipher}: opens`);
    t.not(sealer.seal(Buffer.from('restore point'), Buffer.from('catalog/a')).toString('hex'), sealed.toString('hex'), `${cipher}: a fresh nonce each seal`);
    t.throws(() => sealer.open(sealed, Buffer.from('catalog/b')), SealBrokenError, `${cipher}: moved elsewhere`);
    const flipped = Buffer.from(sealed);
    flipped[14] ^= 1;
    t.throws(() => sealer.open(flipped, Buffer.from('catalog/a')), { code: 'CV_SEAL_BROKEN' }, `${cipher}: a flipped bit`);
    t.throws(() => new Sealer(cipher, Buffer.alloc(32, 8)).open(sealed, Buffer.from('catalog/a')), { code: 'CV_SEAL_BROKEN' }, `${cipher}: another key`);
  }
});

t.test('keysOpenedBy names every key a passphrase opens; each key records its host and user', async (t) => {
  const dir = await encryptedStore(t);
  const backend = new FsBackend(dir);
  const { master, keyId: first } = await unlockMaster(backend, 'correct horse');
  const twin = await addKey(backend, master, 'correct horse', FAST);
  const other = await addKey(backend, master, 'battery staple', FAST);
  const opened = await keysOpenedBy(backend, 'correct horse');
  t.same(opened.keyIds.sort(), [first, twin].sort());
  t.ok(opened.master.equals(master));
  t.same((await keysOpenedBy(backend, 'battery staple')).keyIds, [other]);
  await t.rejects(keysOpenedBy(backend, 'wrong'), { code: 'CV_WRONG_PASSWORD', message: "wrong passphrase: it opens none of the store's 3 keys" });
  t.match(await readKeyFile(backend, other), { host: hostname(), user: /./ });
});

t.test('a key export decodes to its master key, also typed back with spaces; a wrong digit is caught', async (t) => {
  const master = Buffer.alloc(32, 0xab);
  const text = encodeKeyExport('0'.repeat(32), 'aes-256-gcm', master);
  t.same(decodeKeyExport(text, 'paper'), { store: '0'.repeat(32), cipher: 'aes-256-gcm', master });
  const file = JSON.parse(text) as { master: string };
  const spaced = JSON.stringify({ ...file, master: file.master.toUpperCase().replace(/(.{8})/g, '$1 ') });
  t.ok(decodeKeyExport(spaced, 'paper').master.equals(master));
  const typo = JSON.stringify({ ...file, master: `ac${file.master.slice(2)}` });
  t.throws(() => decodeKeyExport(typo, 'paper'), { code: 'CV_INVALID_INPUT', message: /^paper: the master key does not match its check value '[0-9a-f]{8}': it was copied wrong$/ });
  t.throws(() => decodeKeyExport('{}', 'paper'), { code: 'CV_INVALID_INPUT', message: 'paper is not a chunkvault key export' });
  t.throws(() => decodeKeyExport('nope', 'paper'), { code: 'CV_INVALID_INPUT', message: 'paper is not a chunkvault key export (not JSON)' });
});
