/** Bad input: one clear line on stderr, a non-zero exit, and the store exactly as it was. */
import t from 'tap';
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { ROOT, cli, cliJson, mixedImage, tempDir, treeDigest } from '../helpers/index.js';

t.test('every error is one line, a stable exit code, and leaves the store untouched', async (t) => {
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  const image = join(dir, 'disk.img');
  await mixedImage(image);
  await cliJson(['init', '--store', store, '--chunk-size', '256K']);
  await cliJson(['backup', '--store', store, image, '--time', '2026-01-01T00:00:00Z']);
  await fs.mkdir(join(dir, 'adir'));
  const before = await treeDigest(store);

  const cases: [string, string[], number, RegExp][] = [
    ['missing source', ['backup', '--store', store, join(dir, 'nope.img')], 2, /^chunkvault: source .*nope\.img: no such file or device$/m],
    ['directory as source', ['backup', '--store', store, join(dir, 'adir')], 2, /is not a regular file or block device/],
    ['bad label', ['backup', '--store', store, `../x=${image}`], 2, /disk label '\.\.\/x' is invalid/],
    ['bad name', ['backup', '--store', store, image, '--name', 'a/b'], 2, /name 'a\/b' is invalid/],
    ['bad time', ['backup', '--store', store, image, '--time', 'yesterday'], 2, /--time: 'yesterday' is not an ISO 8601/],
    ['bad threads', ['backup', '--store', store, image, '--threads', '0'], 2, /--threads: '0' is not a positive whole number/],
    ['not a store', ['list', '--store', dir], 2, /is not a chunkvault store/],
    ['no store at all', ['list'], 2, /no store given: pass --store DIR or set CHUNKVAULT_STORE/],
    ['bad chunk size', ['init', '--store', join(dir, 'new'), '--chunk-size', '3M'], 2, /--chunk-size: 3M must be a power of two from 64K to 8M/],
    ['store exists', ['init', '--store', store], 2, /is already a chunkvault store/],
    ['unknown ref', ['restore', '--store', store, 'deadbeef', join(dir, 'o.img')], 2, /no restore point 'deadbeef'/],
    ['bad ref', ['restore', '--store', store, 'x/../y', join(dir, 'o.img')], 2, /no restore point 'x\/\.\.\/y'/],
    ['unknown name', ['restore', '--store', store, 'other@latest', join(dir, 'o.img')], 2, /no restore point 'other@latest'/],
    ['unknown disk', ['restore', '--store', store, 'latest', join(dir, 'o.img'), '--disk', 'zz'], 2, /has no disk 'zz' \(it has disk\)/],
    ['target dir missing', ['restore', '--store', store, 'latest', join(dir, 'no', 'o.img')], 2, /directory .* does not exist or is not writable/],
    ['target is a directory', ['restore', '--store', store, 'latest', join(dir, 'adir')], 2, /is not a regular file or block device/],
    ['unknown command', ['frobnicate'], 2, /unknown command/],
    ['unknown option', ['list', '--store', store, '--bogus'], 2, /unknown option/],
  ];
  for (const [what, args, code, message] of cases) {
    const result = await cli(args);
    t.equal(result.code, code, `${what}: exit ${code}`);
    t.match(result.stderr, message, what);
    t.notMatch(result.stderr, /\n\s+at /, `${what}: no stack trace`);
  }
  t.equal(await treeDigest(store), before, 'the store is byte for byte unchanged');
  await t.rejects(fs.access(join(dir, 'o.img')), 'no target was created');
});

t.test('a store in use by another process is a busy error naming the holder', async (t) => {
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  const image = join(dir, 'disk.img');
  await mixedImage(image);
  await cliJson(['init', '--store', store]);
  const holderScript = `
    import { Store } from '${ROOT}/dist/store/store.js';
    const store = await Store.open(${JSON.stringify(store)});
    await store.lock('backup');
    await store.openIndex();
    console.log('ready');
    setInterval(() => {}, 1000);`;
  const holder = spawn(process.execPath, ['--input-type=module', '-e', holderScript], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => holder.kill('SIGKILL'));
  await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
  const before = await treeDigest(store);
  const result = await cli(['backup', '--store', store, image]);
  t.equal(result.code, 3);
  t.match(result.stderr, /^chunkvault: store is busy: 'backup' \(pid \d+ on .*, since .*\)$/m);
  t.equal(await treeDigest(store), before);
  holder.kill('SIGKILL');
  await new Promise((resolve) => holder.once('exit', resolve));
  const after = await cli(['backup', '--store', store, image]);
  t.equal(after.code, 0, 'the lock of a killed holder does not block the next backup');
});
