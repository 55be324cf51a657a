/**
 * Backup inputs that used to hang, run at full speed or say "undefined": extent and CBT files
 * that are not regular files or are too large, and throttle limits past their bounds. Each is
 * one line naming the option and what to do, exit 2, and the store unchanged.
 */
import t from 'tap';
import { spawn, execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { CLI, backedUpStore, collect, treeDigest, type CliResult } from '../helpers/index.js';

/** The CLI, killed after 60 s: a read that blocks fails the test instead of hanging it. */
function cliWithin(args: string[]): Promise<CliResult> {
  return collect(spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 }));
}

t.test('extent and CBT files: regular files only, at most 256 MiB, errors named', async (t) => {
  const { dir, store, image, id } = await backedUpStore(t);
  const fifo = join(dir, 'list.fifo');
  execFileSync('mkfifo', [fifo]);
  const socket = join(dir, 'list.sock');
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const huge = join(dir, 'huge.json');
  await fs.writeFile(huge, '');
  await fs.truncate(huge, 256 * 1024 * 1024 + 1);
  const backup = (...args: string[]): string[] => ['backup', '--store', store, `disk=${image}`, ...args];
  const notRegular = (flag: string, file: string, kind: string, errno = ''): string =>
    `chunkvault: ${flag} ${file}: cannot read it${errno}: it is ${kind}, not a regular file; give the path of a JSON file\n`;
  const cases: [string, string[], string][] = [
    ['--extents /dev/zero', backup('--extents', '/dev/zero'), notRegular('--extents', '/dev/zero', 'a character device')],
    ['--extents a FIFO with no writer', backup('--extents', fifo), notRegular('--extents', fifo, 'a FIFO')],
    ['--changed a FIFO with no writer', backup('--parent', id, '--changed', fifo), notRegular('--changed', fifo, 'a FIFO')],
    ['--extents a socket', backup('--extents', socket), notRegular('--extents', socket, 'a socket')],
    ['--changed a directory', backup('--parent', id, '--changed', dir), notRegular('--changed', dir, 'a directory', ' (EISDIR)')],
    ['--extents too large', backup('--extents', huge), `chunkvault: --extents ${huge}: too large (268435457 bytes; a list may have at most 256 MiB)\n`],
    ['--max-rate 1e-300', backup('--max-rate', '1e-300'), 'chunkvault: --max-rate must be at least 0.01 MB/s, got 1e-300\n'],
    ['--max-rate 0.009', backup('--max-rate', '0.009'), 'chunkvault: --max-rate must be at least 0.01 MB/s, got 0.009\n'],
    ['--max-latency 1e-300', backup('--max-latency', '1e-300'), 'chunkvault: --max-latency must be from 0.01 to 60000 milliseconds, got 1e-300\n'],
    ['--max-latency 1e300', backup('--max-latency', '1e300'), 'chunkvault: --max-latency must be from 0.01 to 60000 milliseconds, got 1e+300\n'],
  ];
  const before = await treeDigest(store);
  for (const [what, args, stderr] of cases) {
    const result = await cliWithin(args);
    t.equal(result.code, 2, `${what}: exit 2`);
    t.equal(result.stderr, stderr, what);
  }
  t.equal(await treeDigest(store), before, 'the store is byte for byte unchanged');
});

t.test('the throttle bounds themselves are accepted', async (t) => {
  const { store, image } = await backedUpStore(t);
  const result = await cliWithin(['backup', '--store', store, `disk=${image}`, '--max-rate', '10000', '--max-latency', '60000', '--json']);
  t.equal(result.code, 0, result.stderr);
});
