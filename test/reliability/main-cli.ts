/**
 * The CLI's main() in the test's own process, its output captured: the real parsing,
 * dispatch, engine and error reporting, without starting Node (twice as slow under the
 * test runner's hooks) for each of hundreds of cases. bin/chunkvault.js only sets the exit
 * code from main(); the suites still run the real binary for a sample of cases.
 */
import { main } from '../../cli/main.js';
import { CLI, type CliResult } from '../helpers/index.js';

export async function runMain(args: string[]): Promise<CliResult> {
  const out: string[] = [];
  const err: string[] = [];
  const original = { out: process.stdout.write, err: process.stderr.write };
  process.stdout.write = ((chunk: string | Uint8Array) => out.push(String(chunk)) > 0) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => err.push(String(chunk)) > 0) as typeof process.stderr.write;
  process.exitCode = undefined;
  // main() makes everything it creates private (umask 077): the test's own files must not be.
  const umask = process.umask();
  try {
    const code = await main([process.execPath, CLI, ...args]);
    return { code, stdout: out.join(''), stderr: err.join('') };
  } finally {
    process.umask(umask);
    process.stdout.write = original.out;
    process.stderr.write = original.err;
    // A command that sets the exit code (verify finding damage) must not fail the test process.
    process.exitCode = undefined;
  }
}
