/** Dispatch only: each command lives in commands/<verb>.ts; errors become exit codes here. */
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../engine/package-root.js';
import { reportError } from './output.js';
import { register as init } from './commands/init.js';
import { register as backup } from './commands/backup.js';
import { register as list } from './commands/list.js';
import { register as restore } from './commands/restore.js';
import { register as verify } from './commands/verify.js';
import { register as stats } from './commands/stats.js';
import { register as prune } from './commands/prune.js';
import { register as hold } from './commands/hold.js';
import { register as release } from './commands/release.js';
import { register as gc } from './commands/gc.js';
import { register as extents } from './commands/extents.js';
import { register as mount } from './commands/mount.js';
import { register as umount } from './commands/umount.js';
import { register as bench } from './commands/bench.js';
import { register as repair } from './commands/repair.js';
import { register as config } from './commands/config.js';
import { register as ls } from './commands/ls.js';
import { register as files } from './commands/files.js';
import { register as recover } from './commands/recover.js';
import { register as key } from './commands/key.js';

const COMMANDS = [init, config, backup, list, ls, restore, verify, stats, mount, umount, prune, hold, release, gc, extents, bench, repair, files, recover, key];

function packageVersion(): string {
  return (JSON.parse(readFileSync(join(packageRoot(import.meta.url), 'package.json'), 'utf8')) as { version: string }).version;
}

export function buildProgram(): Command {
  const program = new Command('chunkvault')
    .description('deduplicating block store for VM disks and snapshot extents')
    .version(packageVersion(), '-V, --version', 'print the version')
    .option('--debug', 'print stack traces')
    .exitOverride()
    .showHelpAfterError();
  for (const register of COMMANDS) register(program);
  overrideExits(program.commands);
  return program;
}

/** Commander errors throw instead of exiting, in subcommands (key add...) too: main turns them into exit code 2. */
function overrideExits(commands: readonly Command[]): void {
  for (const command of commands) {
    command.exitOverride();
    overrideExits(command.commands);
  }
}

/** Everything a command creates (store files, LevelDB's, restored disks) is private unless it says otherwise (invariant 7). */
const PRIVATE_UMASK = 0o077;

export async function main(argv: string[]): Promise<number> {
  process.umask(PRIVATE_UMASK);
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    return reportError(err, argv.includes('--debug'));
  }
}
