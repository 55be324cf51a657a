/**
 * `chunkvault key ...` through the real CLI: several passphrases for one master key, the removal
 * rule, passwd, the export round trip back into a store whose every passphrase is lost, and the
 * refusals, each one line, exit 2, with every file of the store unchanged.
 */
import t, { type Test } from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { FsBackend } from '../../store/backend/fs.js';
import { acquireLock } from '../../store/lock.js';
import { cli, cliJson, mixedImage, sha256File, tempDir, treeDigest } from '../helpers/index.js';

const OLD = { CHUNKVAULT_PASSWORD: 'first phrase' };
type KeyRow = { id: string; current: boolean; host?: string; user?: string; kdf?: { name: string; N: number; r: number; p: number }; problem?: string };

async function encryptedStore(t: Test): Promise<{ dir: string; store: string }> {
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  await cliJson(['init', '--store', store, '--encryption', 'aes-256-gcm'], OLD);
  return { dir, store };
}

function keys(store: string, env: Record<string, string> = OLD): Promise<KeyRow[]> {
  return cliJson<KeyRow[]>(['key', 'list', '--store', store], env);
}

async function addKey(store: string, password: string, env: Record<string, string> = OLD): Promise<string> {
  return (await cliJson<{ added: string }>(['key', 'add', '--store', store], { ...env, CHUNKVAULT_NEW_PASSWORD: password })).added;
}

t.test('key list shows each key with who added it and its kdf; key add makes a second passphrase open the store', async (t) => {
  const { dir, store } = await encryptedStore(t);
  const [first] = await keys(store);
  t.match(first, { current: true, host: /./, user: /./, kdf: { name: 'scrypt', N: 32768, r: 8, p: 1 } });
  const file = join(dir, 'second');
  await fs.writeFile(file, 'second phrase\nignored line\n');
  const added = (await cliJson<{ added: string }>(['key', 'add', '--store', store, '--new-password-file', file], OLD)).added;
  t.same((await keys(store)).map((k) => [k.id, k.current]).sort(), [[first.id, true], [added, false]].sort());
  t.same((await keys(store, { CHUNKVAULT_PASSWORD: 'second phrase' })).find((k) => k.current)?.id, added, 'the file\'s first line is the passphrase');
  const human = await cli(['key', 'list', '--store', store], OLD);
  t.match(human.stdout, new RegExp(`^ID +CREATED +HOST +USER +KDF\n${first.id} \\* .* scrypt N=32768 r=8 p=1\n${added}  `));
});

t.test('key remove: the rule is that the passphrase given opens another key; never the only key', async (t) => {
  const { store } = await encryptedStore(t);
  const [first] = await keys(store);
  t.same(await cli(['key', 'remove', '--store', store, first.id], OLD), { code: 2, stdout: '', stderr: `chunkvault: key ${first.id} is the store's only key: without it nothing opens the store (key add another first)\n` });
  const second = await addKey(store, 'second phrase');
  t.same(await cli(['key', 'remove', '--store', store, first.id], OLD), { code: 2, stdout: '', stderr: `chunkvault: key ${first.id} is the one this passphrase opens: give the passphrase of another key to remove it, or use key passwd\n` });
  const twin = await addKey(store, 'first phrase');
  t.same(await cliJson(['key', 'remove', '--store', store, first.id], OLD), { removed: first.id }, 'the same passphrase still opens its twin key');
  t.same(await cliJson(['key', 'remove', '--store', store, twin], { CHUNKVAULT_PASSWORD: 'second phrase' }), { removed: twin });
  t.same((await keys(store, { CHUNKVAULT_PASSWORD: 'second phrase' })).map((k) => k.id), [second]);
  t.equal((await cli(['list', '--store', store], OLD)).code, 2, 'the removed passphrase opens nothing');
});

t.test('key passwd adds the new key, then removes the one the old passphrase opened; other keys stay', async (t) => {
  const { store } = await encryptedStore(t);
  const [first] = await keys(store);
  const other = await addKey(store, 'other phrase');
  const started = process.hrtime.bigint();
  const change = await cliJson<{ added: string; removed: string }>(['key', 'passwd', '--store', store], { ...OLD, CHUNKVAULT_NEW_PASSWORD: 'new phrase' });
  t.comment(`key passwd took ${(Number(process.hrtime.bigint() - started) / 1e9).toFixed(2)} s (a shared machine; reported, not asserted)`);
  t.equal(change.removed, first.id);
  t.same((await keys(store, { CHUNKVAULT_PASSWORD: 'new phrase' })).map((k) => k.id).sort(), [other, change.added].sort());
  t.same(await cli(['list', '--store', store], OLD), { code: 2, stdout: '', stderr: "chunkvault: wrong passphrase: it opens none of the store's 2 keys\n" });
});

t.test('a key change refuses while another runs (two removals could leave no key); backups and gc run beside it', async (t) => {
  const { dir, store } = await encryptedStore(t);
  const second = await addKey(store, 'second phrase');
  const other = await acquireLock(new FsBackend(store), 'key remove 0123456789abcdef', { kind: 'keys' });
  t.teardown(() => other.release());
  const before = await treeDigest(join(store, 'keys'));
  for (const [args, env, command] of [
    [['key', 'remove', second], OLD, `key remove ${second}`],
    [['key', 'add'], { ...OLD, CHUNKVAULT_NEW_PASSWORD: 'third phrase' }, 'key add'],
    [['key', 'passwd'], { ...OLD, CHUNKVAULT_NEW_PASSWORD: 'third phrase' }, 'key passwd'],
  ] as const) {
    const run = await cli([...args, '--store', store], env);
    t.same([run.code, run.stdout], [3, ''], command);
    t.match(run.stderr, new RegExp(`^chunkvault: '${command}' cannot run while 'key remove 0123456789abcdef' \\(pid ${process.pid} on .*\\) changes the store's keys; run it when that has finished\n$`), command);
  }
  t.equal(await treeDigest(join(store, 'keys')), before, 'no key was added or removed');
  const image = join(dir, 'disk.img');
  await mixedImage(image);
  await cliJson(['backup', '--store', store, image], OLD);
  t.equal((await cli(['gc', '--store', store], OLD)).code, 0, 'gc runs beside a key change');
  await other.release();
  t.same(await cliJson(['key', 'remove', '--store', store, second], OLD), { removed: second }, 'once it has finished, the change runs');
});

t.test('export, lose every key, get back in from the export with a new passphrase: the backup restores identically', async (t) => {
  const { dir, store } = await encryptedStore(t);
  const image = join(dir, 'disk.img');
  await mixedImage(image);
  const { id } = await cliJson<{ id: string }>(['backup', '--store', store, image], OLD);
  const paper = join(dir, 'paper.json');
  t.same(await cliJson(['key', 'export', '--store', store, '--to', paper], OLD), { exported: paper });
  t.equal((await fs.stat(paper)).mode & 0o777, 0o600);
  // The first passphrase is changed, then the second key is lost: no passphrase opens the store any more.
  await cliJson(['key', 'passwd', '--store', store], { ...OLD, CHUNKVAULT_NEW_PASSWORD: 'second phrase' });
  await fs.rm(join(store, 'keys'), { recursive: true });
  await fs.mkdir(join(store, 'keys'));
  const locked = await cli(['list', '--store', store], { CHUNKVAULT_PASSWORD: 'second phrase' });
  t.same([locked.code, locked.stderr], [2, `chunkvault: ${join(store, 'keys')} holds no key: the store cannot be opened\n`]);
  const back = await cliJson<{ added: string }>(['key', 'add', '--store', store, '--from-export', paper], { CHUNKVAULT_NEW_PASSWORD: 'found again' });
  t.same((await keys(store, { CHUNKVAULT_PASSWORD: 'found again' })).map((k) => k.id), [back.added]);
  const restored = join(dir, 'restored.img');
  await cliJson(['restore', '--store', store, id, restored], { CHUNKVAULT_PASSWORD: 'found again' });
  t.equal(await sha256File(restored), await sha256File(image), 'the backup restores byte-identical');
  const verify = await cli(['verify', '--store', store, '--read-data'], { CHUNKVAULT_PASSWORD: 'found again' });
  t.equal(verify.code, 0, verify.stderr);
});

t.test('refusals print one line, exit 2, and leave every file of the store as it was', async (t) => {
  const { dir, store } = await encryptedStore(t);
  const [first] = await keys(store);
  const second = await addKey(store, 'second phrase');
  const paper = join(dir, 'paper.json');
  await cliJson(['key', 'export', '--store', store, '--to', paper], OLD);
  const otherStore = join(dir, 'other');
  await cliJson(['init', '--store', otherStore, '--encryption', 'aes-256-gcm'], OLD);
  const otherPaper = join(dir, 'other.json');
  await cliJson(['key', 'export', '--store', otherStore, '--to', otherPaper], OLD);
  const typo = join(dir, 'typo.json');
  const exported = JSON.parse(await fs.readFile(paper, 'utf8')) as { master: string; check: string };
  await fs.writeFile(typo, (await fs.readFile(paper, 'utf8')).replace(exported.master, `${exported.master[1]}${exported.master[0]}${exported.master.slice(2)}`));
  const wrong = { CHUNKVAULT_PASSWORD: 'not it' };
  const refusals: [string, string[], Record<string, string | undefined>, string][] = [
    ['wrong passphrase: list', ['list'], wrong, "wrong passphrase: it opens none of the store's 2 keys"],
    ['wrong passphrase: key list', ['key', 'list'], wrong, "wrong passphrase: it opens none of the store's 2 keys"],
    ['wrong passphrase: key add', ['key', 'add'], { ...wrong, CHUNKVAULT_NEW_PASSWORD: 'x' }, "wrong passphrase: it opens none of the store's 2 keys"],
    ['wrong passphrase: key remove', ['key', 'remove', second], wrong, "wrong passphrase: it opens none of the store's 2 keys"],
    ['wrong passphrase: key passwd', ['key', 'passwd'], { ...wrong, CHUNKVAULT_NEW_PASSWORD: 'x' }, "wrong passphrase: it opens none of the store's 2 keys"],
    ['wrong passphrase: key export', ['key', 'export', '--to', join(dir, 'never')], wrong, "wrong passphrase: it opens none of the store's 2 keys"],
    ['missing passphrase', ['key', 'list'], {}, `${store} is encrypted: give its passphrase (CHUNKVAULT_PASSWORD, --password-file, or a terminal)`],
    ['missing passphrase file', ['list', '--password-file', join(dir, 'absent')], {}, `--password-file: cannot read ${join(dir, 'absent')} (ENOENT)`],
    ['empty passphrase', ['key', 'list'], { CHUNKVAULT_PASSWORD: '' }, 'the passphrase is empty'],
    ['empty new passphrase', ['key', 'add'], { ...OLD, CHUNKVAULT_NEW_PASSWORD: '' }, 'the passphrase is empty'],
    ['empty new passphrase: passwd', ['key', 'passwd'], { ...OLD, CHUNKVAULT_NEW_PASSWORD: '' }, 'the passphrase is empty'],
    ['no new passphrase', ['key', 'add'], OLD, 'a new passphrase is needed: --new-password-file, CHUNKVAULT_NEW_PASSWORD, or a terminal'],
    ['unknown key id', ['key', 'remove', 'feedfacefeedface'], OLD, `no key feedfacefeedface in ${store} (key list shows its keys)`],
    ['a key id that is a path', ['key', 'remove', '../chunkvault'], OLD, `no key ../chunkvault in ${store} (key list shows its keys)`],
    ['the key in use', ['key', 'remove', first.id], OLD, `key ${first.id} is the one this passphrase opens: give the passphrase of another key to remove it, or use key passwd`],
    ['export over a file', ['key', 'export', '--to', paper], OLD, `--to ${paper}: it exists, and an export never overwrites a file`],
    ["another store's export", ['key', 'add', '--from-export', otherPaper], { CHUNKVAULT_NEW_PASSWORD: 'x' }, `${otherPaper} is the key of store ${JSON.parse(await fs.readFile(otherPaper, 'utf8')).store}, not of ${store} (${JSON.parse(await fs.readFile(join(store, 'chunkvault.json'), 'utf8')).id})`],
    ['an export copied wrong', ['key', 'add', '--from-export', typo], { CHUNKVAULT_NEW_PASSWORD: 'x' }, `${typo}: the master key does not match its check value '${exported.check}': it was copied wrong`],
    ['not an export', ['key', 'add', '--from-export', join(store, 'chunkvault.json')], { CHUNKVAULT_NEW_PASSWORD: 'x' }, `${join(store, 'chunkvault.json')} is not a chunkvault key export`],
  ];
  const paperBefore = await fs.readFile(paper, 'utf8');
  for (const [what, args, env, message] of refusals) {
    const before = await treeDigest(store);
    const run = await cli([...args, '--store', store], { CHUNKVAULT_PASSWORD: undefined, CHUNKVAULT_NEW_PASSWORD: undefined, ...env });
    t.same(run, { code: 2, stdout: '', stderr: `chunkvault: ${message}\n` }, what);
    t.equal(await treeDigest(store), before, `${what}: the store is unchanged`);
  }
  t.equal(await fs.readFile(paper, 'utf8'), paperBefore, 'the existing export was not overwritten');
  await t.rejects(fs.stat(join(dir, 'never')), { code: 'ENOENT' }, 'a refused export writes no file');

  const damagedStore = (await encryptedStore(t)).store;
  const [only] = await keys(damagedStore);
  await fs.writeFile(join(damagedStore, 'keys', `${only.id}.json`), '{"version":1');
  const before = await treeDigest(damagedStore);
  for (const args of [['list'], ['key', 'list'], ['key', 'passwd']]) {
    const run = await cli([...args, '--store', damagedStore], { ...OLD, CHUNKVAULT_NEW_PASSWORD: 'x' });
    t.same(run, { code: 2, stdout: '', stderr: `chunkvault: ${join(damagedStore, 'keys', `${only.id}.json`)} is not valid JSON: the key is damaged\n` }, `damaged key: ${args.join(' ')}`);
  }
  t.equal(await treeDigest(damagedStore), before, 'damaged key: the store is unchanged');
});

