/**
 * bin/chunkvault.js, the command package.json installs: executed through a symlink as npm
 * links it, its first line starts node without NODE_EXTRA_CA_CERTS, passes every argument
 * through unchanged, and exits with the CLI's code.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { ROOT, cli, collect, tempDir, type CliResult } from '../helpers/index.js';

/** A certificate file that does not exist: node warns on stderr when it tries to load it. */
const MISSING_CA = { NODE_EXTRA_CA_CERTS: '/nonexistent/chunkvault-test-ca.pem' };

/** Runs the command as npm links it (`cli` runs `node bin/chunkvault.js`). */
function runLinked(linked: string, args: string[]): Promise<CliResult> {
  return collect(spawn(linked, args, { env: { ...process.env, ...MISSING_CA }, stdio: ['ignore', 'pipe', 'pipe'] }));
}

t.test('the installed command starts node without NODE_EXTRA_CA_CERTS and passes arguments and exit codes through', async (t) => {
  const dir = await tempDir(t);
  const linked = join(dir, '.bin', 'chunkvault');
  await fs.mkdir(join(dir, '.bin'));
  await fs.symlink(join(ROOT, 'bin', 'chunkvault.js'), linked);
  const store = join(dir, 'a store with spaces');

  const direct = await cli(['init', '--store', store], MISSING_CA);
  t.equal(direct.code, 0);
  t.match(direct.stderr, /Ignoring extra certs from/, 'node itself reads the variable (the control)');

  const listed = await runLinked(linked, ['list', '--store', store, '--json']);
  t.equal(listed.code, 0);
  t.equal(listed.stderr, '', 'no certificate was read');
  t.same(JSON.parse(listed.stdout), [], 'the path with spaces reached the CLI whole');

  const refused = await runLinked(linked, ['list', '--store', join(dir, 'none')]);
  t.equal(refused.code, 2, "the CLI's exit code");
  t.match(refused.stderr, /^chunkvault: .* is not a chunkvault store/m);
});

t.test('--version prints the version of the installed package and exits 0', async (t) => {
  const { version } = JSON.parse(await fs.readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  for (const flag of ['--version', '-V']) {
    const run = await cli([flag]);
    t.equal(run.code, 0, flag);
    t.equal(run.stdout, `${version}\n`, flag);
  }
});
