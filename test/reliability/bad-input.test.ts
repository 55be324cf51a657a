/**
 * Bad input (invariant 4): fuzzed extent maps and CBT lists, and CLI arguments (sizes, refs,
 * durations, paths with `..`, names with `/` or control characters, huge numbers, empty
 * files). Every case exits non-zero with one line a person can act on, and the store's
 * bytes are unchanged. Also a store that is not writable, a source that shrinks or
 * disappears during a backup, and a restore target that is too small.
 */
import t, { type Test } from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { random } from '../../bench/workload.js';
import { openStore, runBackup, type BackupRequest } from '../../engine/index.js';
import { CLI, MiB, cli, cliJson, collect, hasCommand, isRoot, mounted, requireCapability, seededBytes, sha256File, tempDir, treeDigest, writeImage, type CliResult } from '../helpers/index.js';
import { runMain } from './main-cli.js';

const CS = 64 * 1024;

/** One line on stderr, `chunkvault: ...`, no stack trace, no "this is a bug". */
function oneLineError(t: Test, what: string, result: { code: number; stderr: string }, code: number, message: RegExp): void {
  t.equal(result.code, code, `${what}: exit ${code}`);
  t.match(result.stderr, /^chunkvault: [^\n]+\n$/, `${what}: one line`);
  t.match(result.stderr, message, what);
}

async function storeWithBackup(t: Test): Promise<{ dir: string; store: string; image: string; base: string }> {
  const dir = await tempDir(t);
  const store = join(dir, 'store');
  const image = join(dir, 'sda.img');
  await writeImage(image, [{ kind: 'random', bytes: 16 * CS, seed: 1 }]);
  await cliJson(['init', '--store', store, '--chunk-size', '64K']);
  const { id } = await cliJson<{ id: string }>(['backup', '--store', store, `sda=${image}`, '--name', 'vm', '--time', '2026-11-01T00:00:00Z']);
  return { dir, store, image, base: id };
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Values no byte count, offset, list or entry accepts ([] is left out: an empty list is valid). */
const BAD_VALUES: Json[] = [-1, 0.5, '4096', null, true, {}, 2 ** 53, 1e308, 'x'.repeat(100_000)];

function setAt(doc: Json, path: (string | number)[], value: Json | undefined): Json {
  const copy = structuredClone(doc) as Record<string | number, Json>;
  let at = copy;
  for (const key of path.slice(0, -1)) at = at[key] as Record<string | number, Json>;
  if (value === undefined) delete at[path[path.length - 1]];
  else at[path[path.length - 1]] = value;
  return copy;
}

/** Texts that are no JSON document, or no object: the same for both kinds of list. */
function brokenTexts(valid: string, rng: () => number): string[] {
  const cuts = Array.from({ length: 8 }, () => valid.slice(0, 1 + Math.floor(rng() * (valid.length - 2))));
  const garbage = Array.from({ length: 4 }, (_, i) => seededBytes(100 + i, 64 + Math.floor(rng() * 512)).toString('latin1'));
  return [
    '',
    ' \n\t ',
    '\uFEFF' + valid,
    '[]',
    '"changed"',
    '42',
    'null',
    '1' + '0'.repeat(400),
    '['.repeat(100_000) + ']'.repeat(100_000),
    '{"a":'.repeat(5000) + '1' + '}'.repeat(5000),
    valid.replace(/,/, ',,'),
    ...cuts,
    ...garbage,
  ];
}

function extentCases(rng: () => number): string[] {
  const valid: Json = { size: 16 * CS, extents: [{ offset: 0, length: CS, sourceOffset: 0 }, { offset: 2 * CS, length: CS, sourceOffset: CS }] };
  const docs: Json[] = [];
  const paths: (string | number)[][] = [['size'], ['extents'], ['extents', 0], ['extents', 0, 'offset'], ['extents', 0, 'length'], ['extents', 1, 'sourceOffset']];
  for (const path of paths) for (const value of BAD_VALUES) if (!(path.length === 1 && path[0] === 'extents' && Array.isArray(value))) docs.push(setAt(valid, path, value));
  for (const path of [['size'], ['extents'], ['extents', 0, 'offset'], ['extents', 1, 'length']]) docs.push(setAt(valid, path, undefined));
  docs.push(
    setAt(valid, ['sizee'], 1),
    setAt(valid, ['extents', 0, 'sourceOfset'], 0),
    setAt(valid, ['extents', 1, 'offset'], CS / 2),
    setAt(valid, ['extents', 1, 'offset'], 16 * CS - 10),
    setAt(valid, ['extents', 1, 'sourceOffset'], 16 * CS - 10),
    setAt(valid, ['size'], 0),
    setAt(valid, ['extents', 0, 'length'], 0),
  );
  return [...docs.map((d) => JSON.stringify(d)), ...brokenTexts(JSON.stringify(valid), rng)];
}

function cbtCases(rng: () => number): string[] {
  const valid: Json = { changed: [{ offset: 0, length: 4096 }, { offset: CS, length: 10 }] };
  const docs: Json[] = [];
  for (const path of [['changed'], ['changed', 0], ['changed', 0, 'offset'], ['changed', 1, 'length']]) {
    for (const value of BAD_VALUES) if (!(path.length === 1 && Array.isArray(value))) docs.push(setAt(valid, path, value));
  }
  docs.push(
    setAt(valid, ['changed'], undefined),
    setAt(valid, ['changed', 0, 'length'], undefined),
    setAt(valid, ['changed', 0, 'length'], 0),
    setAt(valid, ['changed', 0, 'size'], 1),
    setAt(valid, ['changed', 1, 'offset'], 16 * CS - 5),
  );
  // `[]` is a valid rbd diff (nothing changed); an unknown top-level key only warns (test/engine/cbt.test.ts).
  return [...docs.map((d) => JSON.stringify(d)), ...brokenTexts(JSON.stringify(valid), rng).filter((text) => text !== '[]')];
}

t.test('fuzzed extent maps and CBT lists are refused with one short line, before anything is written', async (t) => {
  const { dir, store: storeDir, image, base } = await storeWithBackup(t);
  const before = await treeDigest(storeDir);
  const store = await openStore(storeDir);
  const rng = random(66);
  const kinds: [string, string[], (file: string) => BackupRequest][] = [
    ['--extents', extentCases(rng), (file) => ({ sources: [`sda=${image}`], name: 'vm', extents: [file] })],
    ['--changed', cbtCases(rng), (file) => ({ sources: [`sda=${image}`], name: 'vm', parent: base, changed: [file] })],
  ];
  const sample: string[][] = [];
  let cases = 0;
  for (const [flag, texts, request] of kinds) {
    for (const [i, text] of texts.entries()) {
      const file = join(dir, `${flag.slice(2)}-${i}.json`);
      await fs.writeFile(file, text, 'latin1');
      let refused: { code?: string; message?: string } | null = null;
      await runBackup(store, request(file)).catch((err: { code?: string; message?: string }) => (refused = err));
      const err = refused as { code?: string; message?: string } | null;
      const ok = err !== null && err.code === 'CV_INVALID_INPUT' && !/[\n\r]/.test(err.message!) && err.message!.length < 400 && err.message!.includes(file);
      if (!ok) t.fail(`${flag} case ${i} (${JSON.stringify(text.slice(0, 120))}): ${err ? `${err.code}: ${err.message?.slice(0, 500)}` : 'accepted'}`);
      if (i % 17 === 0) sample.push(['backup', '--store', storeDir, `sda=${image}`, '--name', 'vm', ...(flag === '--changed' ? ['--parent', base] : []), flag, file]);
      cases++;
    }
  }
  t.ok(cases > 150, `${cases} lists, every one refused`);
  const said = /not valid JSON|cannot tell which changed-block format|must be|has no|has an unknown key|overlaps|ends past|reads bytes|is 2\^53 or more/;
  for (const [i, args] of sample.entries()) oneLineError(t, `CLI ${args.slice(-2).join(' ')}`, await (i < 3 ? cli(args) : runMain(args)), 2, said);
  t.equal(await treeDigest(storeDir), before, 'the store is byte for byte unchanged');
});

t.test('CLI arguments: sizes, refs, durations, paths with .., names with / or control characters, huge numbers, empty files', async (t) => {
  const { dir, store, image, base } = await storeWithBackup(t);
  const empty = join(dir, 'empty.img');
  await fs.writeFile(empty, '');
  const emptyJson = join(dir, 'empty.json');
  await fs.writeFile(emptyJson, '');
  const backup = (...args: string[]): string[] => ['backup', '--store', store, `sda=${image}`, '--name', 'vm', ...args];
  const restore = (ref: string, ...args: string[]): string[] => ['restore', '--store', store, ref, join(dir, 'out.img'), ...args];
  const before = await treeDigest(store);
  const cases: [string, string[], number, RegExp][] = [
    ['chunk size empty', ['init', '--store', join(dir, 'n1'), '--chunk-size', ''], 2, /--chunk-size/],
    ['chunk size zero', ['init', '--store', join(dir, 'n2'), '--chunk-size', '0'], 2, /--chunk-size/],
    ['chunk size negative', ['init', '--store', join(dir, 'n3'), '--chunk-size', '-64K'], 2, /--chunk-size/],
    ['chunk size exponent', ['init', '--store', join(dir, 'n4'), '--chunk-size', '1e6'], 2, /--chunk-size/],
    ['chunk size huge', ['init', '--store', join(dir, 'n5'), '--chunk-size', '99999999999999999999T'], 2, /--chunk-size: '99999999999999999999T' is too large/],
    ['--max-rate zero', backup('--max-rate', '0'), 2, /--max-rate: '0' is not a positive number/],
    ['--max-rate Infinity', backup('--max-rate', 'Infinity'), 2, /--max-rate: 'Infinity' is not a positive number/],
    ['--max-rate huge', backup('--max-rate', '1e400'), 2, /--max-rate: '1e400' is not a positive number/],
    ['--max-latency text', backup('--max-latency', 'soon'), 2, /--max-latency: 'soon' is not a positive number/],
    ['--max-unused above 100', ['gc', '--store', store, '--max-unused', '101'], 2, /--max-unused: '101' is not a percentage from 0 to 100/],
    ['--max-unused with %', ['gc', '--store', store, '--max-unused', '50%'], 2, /--max-unused: '50%' is not a percentage/],
    ['--cache negative', ['mount', '--store', store, join(dir, 'mnt'), '--cache', '-1'], 2, /--cache: '-1' is not a size/],
    ['ref empty', restore(''), 2, /no restore point '' \(a REF is/],
    ['ref with ..', restore('../etc/passwd'), 2, /no restore point '\.\.\/etc\/passwd'/],
    ['ref too long', restore('0123456789abcdef0'), 2, /no restore point '0123456789abcdef0'/],
    ['ref @latest alone', restore('@latest'), 2, /no restore point '@latest'/],
    ['ref with escape codes', restore('a\x1b[2Jb'), 2, /no restore point 'a\\u001b\[2Jb'/],
    ['hold unknown ref', ['hold', '--store', store, 'ffff'], 2, /no restore point 'ffff'/],
    ['hold reason with newline', ['hold', '--store', store, base, '--reason', 'a\nb'], 2, /--reason: at most 500 characters on one line/],
    ['duration zero', ['prune', '--store', store, '--keep-within', '0d'], 2, /--keep-within: '0d' is not a duration/],
    ['duration negative', ['prune', '--store', store, '--keep-within', '-1d'], 2, /--keep-within: '-1d' is not a duration/],
    ['duration fraction', ['prune', '--store', store, '--keep-within', '1.5d'], 2, /--keep-within: '1\.5d' is not a duration/],
    ['duration unit twice', ['prune', '--store', store, '--keep-within', '1y1y'], 2, /--keep-within: '1y1y' is not a duration/],
    ['duration huge', ['prune', '--store', store, '--keep-within', '99999999999y'], 2, /--keep-within: '99999999999y' reaches back further than any date/],
    ['source path with ..', backup().slice(0, 3).concat([join(dir, '..', 'no-such-dir', '..', 'nope.img')]), 2, /^chunkvault: source .*nope\.img: no such file or device$/m],
    ['store path with ..', ['list', '--store', join(store, '..', 'no-store')], 2, /no-store is not a chunkvault store|no-store/],
    ['target dir with ..', ['restore', '--store', store, base, join(dir, 'nope', '..', 'nope2', 'o.img')], 2, /directory .*nope2 does not exist or is not writable/],
    ['--extents path with ..', backup('--extents', join(dir, '..', 'nope.json')), 2, /--extents .*nope\.json: cannot read it \(no such file\)/],
    ['--changed path with ..', backup('--parent', base, '--changed', join(dir, 'x', '..', '..', 'nope.json')), 2, /--changed .*nope\.json: cannot read it \(no such file\)/],
    ['name with /', backup('--name', 'a/b'), 2, /name 'a\/b' is invalid/],
    ['name ..', backup('--name', '..'), 2, /name '\.\.' is invalid/],
    ['name with newline', backup('--name', 'a\nb'), 2, /name 'a\\nb' is invalid/],
    ['name with bell', backup('--name', '\x07'), 2, /name '\\u0007' is invalid/],
    ['name empty', backup('--name', ''), 2, /name '' is invalid/],
    ['name too long', backup('--name', 'n'.repeat(129)), 2, /name 'n+' is invalid/],
    ['name @latest', backup('--name', 'vm@latest'), 2, /name 'vm@latest' is invalid/],
    ['label with /', ['backup', '--store', store, `a/b=${image}`], 2, /disk label 'a\/b' is invalid/],
    ['label ..', ['backup', '--store', store, `..=${image}`], 2, /disk label '\.\.' is invalid/],
    ['label with tab', ['backup', '--store', store, `a\tb=${image}`], 2, /disk label 'a\\tb' is invalid/],
    ['source path with newline', ['backup', '--store', store, `sda=${dir}/x\ny.img`], 2, /^chunkvault: source .*x\\ny\.img: no such file or device$/m],
    ['--threads huge', backup('--threads', '99999999999999999999'), 2, /--threads: '99999999999999999999' is not a positive whole number/],
    ['--threads above the cap', backup('--threads', '100000'), 2, /--threads: '100000' is more than 256/],
    ['--threads exponent', ['verify', '--store', store, '--read-data', '--threads', '1e3'], 2, /--threads: '1e3' is not a positive whole number/],
    ['--keep-last zero', ['prune', '--store', store, '--keep-last', '0'], 2, /--keep-last: '0' is not a positive whole number/],
    ['--keep-last huge', ['prune', '--store', store, '--keep-last', '99999999999999999999'], 2, /--keep-last: '99999999999999999999' is not a positive whole number/],
    ['--time past year 9999', backup('--time', '+275760-09-13T00:00:00Z'), 2, /--time: '\+275760-09-13T00:00:00Z' is not an ISO 8601/],
    ['--time February 30', backup('--time', '2026-02-30T00:00:00Z'), 2, /--time: '2026-02-30T00:00:00Z' is not an ISO 8601/],
    ['--time epoch number', backup('--time', '9999999999'), 2, /--time: '9999999999' is not an ISO 8601/],
    ['empty source', ['backup', '--store', store, empty], 2, /source .*empty\.img is empty \(0 bytes\): there is no disk to back up/],
    ['character device source', ['backup', '--store', store, 'null=/dev/null'], 2, /source \/dev\/null is not a regular file or block device/],
    ['empty extent map', backup('--extents', emptyJson), 2, /empty\.json: not valid JSON/],
    ['empty CBT list', backup('--parent', base, '--changed', emptyJson), 2, /empty\.json: cannot tell which changed-block format this is \(it is empty\)/],
    ['extent map is a directory', backup('--extents', dir), 2, /--extents .*: cannot read it \(EISDIR\)/],
  ];
  // Every case through the CLI's main(); every seventh also through the real binary.
  for (const [i, [what, args, code, message]] of cases.entries()) oneLineError(t, what, await (i % 7 === 0 ? cli(args) : runMain(args)), code, message);
  t.equal(await treeDigest(store), before, 'the store is byte for byte unchanged');
  for (const n of ['n1', 'n2', 'n3', 'n4', 'n5']) t.notOk(existsSync(join(dir, n)), `no store created by a refused init (${n})`);
  t.notOk(existsSync(join(dir, 'out.img')), 'no target created by a refused restore');
});

t.test('a store others may read but not write: a clear refusal, nothing changed', async (t) => {
  if (!requireCapability(t, isRoot() && hasCommand('setpriv'), 'needs root and setpriv to run as an unprivileged user')) return;
  const { dir, store, image, base } = await storeWithBackup(t);
  await fs.chmod(dir, 0o755);
  // A store is private when made; its owner opened it up for reading by hand.
  execFileSync('chmod', ['-R', 'a+rX', store]);
  const out = join(dir, 'out');
  await fs.mkdir(out, { mode: 0o777 });
  await fs.chmod(out, 0o777);
  const asNobody = (args: string[]): Promise<CliResult> =>
    // env -i: the test runner adds its NODE_OPTIONS hooks to every child, and they write into the checkout, which nobody cannot.
    collect(spawn('env', ['-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`, 'setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
  const before = await treeDigest(store);
  const refused = (command: string): RegExp => new RegExp(`^chunkvault: store ${store} is not writable \\(EACCES\\); '${command}' needs to write to it: run it as the store's owner$`, 'm');
  oneLineError(t, 'backup', await asNobody(['backup', '--store', store, image, '--name', 'vm']), 2, refused('backup'));
  oneLineError(t, 'prune', await asNobody(['prune', '--store', store, '--keep-last', '1']), 2, refused('prune'));
  oneLineError(t, 'gc', await asNobody(['gc', '--store', store]), 2, refused('gc'));
  oneLineError(t, 'repair', await asNobody(['repair', '--store', store]), 2, refused('repair'));
  oneLineError(t, 'restore', await asNobody(['restore', '--store', store, base, join(out, 'o.img')]), 2, refused(`restore ${base}`));
  oneLineError(t, 'hold', await asNobody(['hold', '--store', store, base]), 2, refused(`hold ${base}`));
  const listed = await asNobody(['list', '--store', store, '--json']);
  t.equal(listed.code, 0, 'reading the catalog needs no write');
  t.equal((JSON.parse(listed.stdout) as unknown[]).length, 1);
  t.equal(await treeDigest(store), before, 'the store is byte for byte unchanged');
});

/** Starts a slow backup and waits until it holds the store. */
async function slowBackup(store: string, source: string): Promise<{ done: Promise<{ code: number | null; stderr: string }> }> {
  const child = spawn(process.execPath, [CLI, 'backup', '--store', store, `big=${source}`, '--name', 'big', '--threads', '1', '--max-rate', '16'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const done = new Promise<{ code: number | null; stderr: string }>((resolve) => child.on('close', (code) => resolve({ code, stderr })));
  while (!(await fs.readdir(join(store, 'locks'))).some((n) => n.startsWith(`${child.pid}-`) && n.endsWith('.json'))) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 400));
  return { done };
}

t.test('a source that shrinks or disappears during a backup: a clear SourceError, nothing committed', async (t) => {
  const { dir, store, image, base } = await storeWithBackup(t);
  const packsBefore = await treeDigest(join(store, 'packs'));
  for (const [what, change] of [
    ['truncated', (path: string) => fs.truncate(path, 4 * MiB)],
    ['deleted', (path: string) => fs.rm(path)],
  ] as const) {
    const source = join(dir, `${what}.img`);
    await writeImage(source, [{ kind: 'random', bytes: 48 * MiB, seed: 9 }]);
    const { done } = await slowBackup(store, source);
    await change(source);
    const result = await done;
    oneLineError(t, `source ${what}`, { code: result.code ?? -1, stderr: result.stderr }, 2, /^chunkvault: source .*\.img(: reading failed \(.*\)| shrank from \d+ to \d+ bytes during the backup| disappeared during the backup); the backup was not committed$/m);
    t.same((await cliJson<{ id: string }[]>(['list', '--store', store])).map((p) => p.id), [base], `${what}: nothing committed`);
    t.same(await fs.readdir(join(store, 'maps')), [base], `${what}: no map left behind`);
  }
  t.equal((await cli(['verify', '--store', store, '--read-data'])).code, 0, 'verify --read-data is clean');
  await cliJson(['gc', '--store', store]);
  t.equal(await treeDigest(join(store, 'packs')), packsBefore, 'gc reclaims what the failed backups wrote');
  const out = join(dir, 'restored.img');
  await cliJson(['restore', '--store', store, base, out]);
  t.equal(await sha256File(out), await sha256File(image));
});

t.test('a restore target too small: a device is refused before it is written, a full filesystem stops with a clear message', async (t) => {
  if (!requireCapability(t, isRoot() && hasCommand('losetup') && hasCommand('mount'), 'needs root, losetup and mount')) return;
  const { dir, store, base } = await storeWithBackup(t);
  const backing = join(dir, 'small-device.img');
  const pattern = seededBytes(77, 512 * 1024);
  await fs.writeFile(backing, pattern);
  const device = execFileSync('losetup', ['-f', '--show', backing], { encoding: 'utf8' }).trim();
  t.teardown(() => execFileSync('losetup', ['-d', device]));
  oneLineError(t, 'device', await cli(['restore', '--store', store, base, device]), 2, new RegExp(`^chunkvault: target ${device} holds 524288 bytes, the disk needs ${16 * CS}$`, 'm'));
  const held = Buffer.alloc(pattern.byteLength);
  const handle = await fs.open(device, 'r');
  await handle.read(held, 0, held.byteLength, 0);
  await handle.close();
  t.ok(held.equals(pattern), 'the device is untouched');

  const small = mounted(t, dir, 'tmpfs', ['-o', 'size=512k']);
  oneLineError(t, 'full filesystem', await cli(['restore', '--store', store, base, join(small, 'o.img')]), 2, /^chunkvault: target .*o\.img: writing failed \(ENOSPC: no space left on device, write\); the restore is incomplete$/m);
});
