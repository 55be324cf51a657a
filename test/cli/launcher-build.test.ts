/**
 * After `npm ci` the command works: `prepare` builds dist/, and a package whose dist/ is
 * missing anyway says so in one line instead of a module-not-found stack trace.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { ROOT, collect, tempDir } from '../helpers/index.js';

t.test('a package without dist/: one line saying how to build it, exit 2', async (t) => {
  const pkg = join(await tempDir(t), 'chunkvault');
  await fs.mkdir(pkg);
  await fs.cp(join(ROOT, 'bin'), join(pkg, 'bin'), { recursive: true });
  await fs.copyFile(join(ROOT, 'package.json'), join(pkg, 'package.json'));
  for (const args of [['--help'], ['list', '--store', '/nonexistent']]) {
    const run = await collect(spawn(process.execPath, [join(pkg, 'bin', 'chunkvault.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
    t.equal(run.code, 2, args.join(' '));
    t.equal(run.stdout, '');
    t.equal(run.stderr, `chunkvault is not built: run 'npm run build' in ${pkg}\n`);
  }
});

t.test('npm ci builds: the prepare script runs the build', async (t) => {
  const { scripts } = JSON.parse(await fs.readFile(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  t.equal(scripts.prepare, 'npm run build');
  t.match(scripts.build, /^tsc -p tsconfig\.json && esbuild dist\/cli\/main\.js dist\/engine\/worker\.js /, 'the build makes the bundle the launcher requires');
});
