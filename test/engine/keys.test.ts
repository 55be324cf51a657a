/** The key management façade by error code: the removal rule, passwd's order, exports bound to their store. */
import t, { type Test } from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { addPassword, addPasswordFromExport, changePassword, exportKey, initStore, listKeys, removeKey } from '../../engine/index.js';
import { tempDir } from '../helpers/index.js';

const FAST = { N: 1024, r: 8, p: 1 };
const as = (password: string) => ({ password: async () => password });
const typed = (password: string) => async () => password;

async function encrypted(t: Test, name = 'store'): Promise<{ dir: string; store: string }> {
  const dir = await tempDir(t);
  const store = join(dir, name);
  await initStore(store, '64K', undefined, as('one'), 'chacha20-poly1305');
  return { dir, store };
}

t.test('remove refuses the only key, the key in use, an unknown id, by code', async (t) => {
  const { store } = await encrypted(t);
  const [first] = await listKeys(store, as('one'));
  await t.rejects(removeKey(store, as('one'), first.id), { code: 'CV_LAST_KEY' });
  await t.rejects(removeKey(store, as('one'), 'feedfacefeedface'), { code: 'CV_KEY_UNKNOWN' });
  const second = await addPassword(store, as('one'), typed('two'), FAST);
  await t.rejects(removeKey(store, as('one'), first.id), { code: 'CV_KEY_IN_USE' });
  await t.rejects(removeKey(store, as('three'), second), { code: 'CV_WRONG_PASSWORD' });
  await t.rejects(removeKey(store, {}, second), { code: 'CV_PASSWORD_REQUIRED' });
  await removeKey(store, as('two'), first.id);
  t.same((await listKeys(store, as('two'))).map((k) => [k.id, k.current, k.kdf]), [[second, true, { name: 'scrypt', ...FAST }]]);
});

t.test('passwd writes nothing before the new passphrase is known, then adds the new key and removes only the old one', async (t) => {
  const { store } = await encrypted(t);
  const [first] = await listKeys(store, as('one'));
  let keysWhileAsked: string[] = [];
  const change = await changePassword(store, as('one'), async () => {
    keysWhileAsked = (await listKeys(store, as('one'))).map((k) => k.id);
    return 'two';
  }, FAST);
  t.same(keysWhileAsked, [first.id], 'nothing is written before the new passphrase is known');
  t.equal(change.removed, first.id);
  t.same((await listKeys(store, as('two'))).map((k) => k.id), [change.added]);
  await t.rejects(listKeys(store, as('one')), { code: 'CV_WRONG_PASSWORD' });
});

t.test('an export opens only its own store, and never overwrites a file', async (t) => {
  const { dir, store } = await encrypted(t);
  const other = (await encrypted(t, 'other')).store;
  const paper = join(dir, 'paper.json');
  await exportKey(store, as('one'), paper);
  await t.rejects(exportKey(store, as('one'), paper), { code: 'CV_INVALID_INPUT' });
  await t.rejects(addPasswordFromExport(other, {}, paper, typed('x'), FAST), { code: 'CV_INVALID_INPUT', message: /is the key of store [0-9a-f]{32}, not of / });
  await t.rejects(addPasswordFromExport(store, {}, paper, typed(''), FAST), { code: 'CV_INVALID_INPUT', message: 'the passphrase is empty' });
  const id = await addPasswordFromExport(store, {}, paper, typed('from paper'), FAST);
  t.same((await listKeys(store, as('from paper'))).filter((k) => k.current).map((k) => k.id), [id]);
  t.equal((await fs.stat(paper)).mode & 0o777, 0o600);
});

t.test('key commands on a plain store say it has no keys', async (t) => {
  const store = join(await tempDir(t), 'plain');
  await initStore(store);
  await t.rejects(listKeys(store, as('one')), { code: 'CV_INVALID_INPUT', message: `${store} is not encrypted: it has no keys` });
});
