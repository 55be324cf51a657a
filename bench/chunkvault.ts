/** chunkvault itself as a benchmarked tool: the real CLI in a child process, like every peer. */
import { join } from 'node:path';
import { packageRoot } from '../engine/package-root.js';
import { measureCommand, type CommandRun } from './measure.js';
import type { Tool } from './peers.js';

/** The command a user runs (package.json "bin"): bin/chunkvault.js, executed, so its first line starts node. */
export const CLI = join(packageRoot(import.meta.url), 'bin', 'chunkvault.js');
/** What the bench recompresses the store with: zstd's default level, as a nightly gc would. */
export const RECOMPRESS = 'zstd:3';

export interface ChunkvaultOptions {
  chunkSize?: string;
  threads?: number;
  /** Extra node flags for every run (through NODE_OPTIONS), e.g. --cpu-prof --cpu-prof-dir=DIR to see where time goes. */
  nodeArgs?: string[];
}

export function runCli(args: string[], nodeArgs: string[] = []): Promise<CommandRun> {
  return measureCommand(CLI, args, nodeArgs.length > 0 ? { env: { NODE_OPTIONS: nodeArgs.join(' ') } } : {});
}

/** Runs a --json command and parses its output. */
export async function cliJson<T>(args: string[], nodeArgs: string[] = []): Promise<{ run: CommandRun; value: T }> {
  const run = await runCli([...args, '--json'], nodeArgs);
  return { run, value: JSON.parse(run.stdout) as T };
}

export function chunkvaultTool(options: ChunkvaultOptions = {}): Tool {
  const threads = options.threads === undefined ? [] : ['--threads', String(options.threads)];
  const node = options.nodeArgs ?? [];
  // Every tag is a restore point of one name, as a VM's daily backups are: the newest is
  // the next one's default parent. Tags are kept here to restore the right one.
  const points = new Map<string, string>();
  return {
    name: 'chunkvault',
    version: `chunkvault (node ${process.version})`,
    settings: `fixed ${options.chunkSize ?? '1M'} chunks, BLAKE3, LZ4 (then gc --recompress ${RECOMPRESS}), no encryption, ${options.threads ?? 'one per core'} workers; one name for every backup (the newest is the default parent); restore keeps holes; verify --read-data`,
    async init(repo) {
      await runCli(['init', '--store', repo, ...(options.chunkSize ? ['--chunk-size', options.chunkSize] : [])]);
    },
    async backup(repo, image, tag) {
      const run = await runCli(['backup', '--store', repo, '--name', 'disk', `disk=${image}`, ...threads, '--json'], node);
      points.set(`${repo}\0${tag}`, (JSON.parse(run.stdout) as { id: string }).id);
      return run;
    },
    async restore(repo, tag, into) {
      const path = join(into, 'disk.img');
      const id = points.get(`${repo}\0${tag}`) ?? `${tag}@latest`;
      return { run: await runCli(['restore', '--store', repo, id, path, ...threads, '--json'], node), path };
    },
    verify: (repo) => runCli(['verify', '--store', repo, '--read-data', ...threads, '--json'], node),
    recompress: (repo) => runCli(['gc', '--store', repo, '--recompress', RECOMPRESS, '--older-than', '0', '--json'], node),
  };
}
