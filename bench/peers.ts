/**
 * The tools chunkvault is compared with, run on the same image files in the same run:
 * borg (lz4), restic and casync. A peer that is not installed is skipped with a note,
 * never faked. Every tool, chunkvault included, is driven through the same interface.
 */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { measureCommand, type CommandRun } from './measure.js';

export interface Tool {
  name: string;
  version: string;
  /** What the comparison is made with: compression, chunking, encryption, restore mode. */
  settings: string;
  init(repo: string): Promise<void>;
  /** Backs up one image file under `tag`. */
  backup(repo: string, image: string, tag: string): Promise<CommandRun>;
  /** Restores the image backed up under `tag` into the empty directory `into`; returns its path. */
  restore(repo: string, tag: string, into: string): Promise<{ run: CommandRun; path: string }>;
  /** Reads back and checks every stored byte; null when the tool has no such command. */
  verify: ((repo: string) => Promise<CommandRun>) | null;
  /** Rewrites what is stored with a stronger codec (chunkvault's gc --recompress); absent for the peers. */
  recompress?: (repo: string) => Promise<CommandRun>;
}

export interface MissingPeer {
  name: string;
  note: string;
}

export function hasCommand(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

function versionOf(command: string, args: string[]): string {
  return execFileSync(command, args, { stdio: 'pipe' }).toString().trim().split('\n')[0];
}

/** Bytes of every file below dir: a repository's size on disk, the same way for every tool. */
export async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await fs.readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await fs.stat(join(entry.parentPath, entry.name))).size;
  }
  return total;
}

/**
 * borg and restic record the path they were given: each backup reads the image through a
 * hard link named disk.img in a directory of its own, as a VM disk file would be named.
 */
async function stageImage(repo: string, image: string, tag: string): Promise<string> {
  const dir = join(`${repo}.src`, tag);
  await fs.mkdir(dir, { recursive: true });
  const staged = join(dir, 'disk.img');
  await fs.rm(staged, { force: true });
  await fs.link(image, staged);
  return staged;
}

function borg(): Tool {
  const env = (repo: string): Record<string, string> => ({
    BORG_PASSPHRASE: '',
    BORG_BASE_DIR: `${repo}.home`,
    BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes',
    BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes',
  });
  return {
    name: 'borg',
    version: versionOf('borg', ['--version']),
    settings: 'create --compression lz4, encryption none, content-defined chunks; extract --sparse; check --verify-data',
    async init(repo) {
      await measureCommand('borg', ['init', '--encryption=none', repo], { env: env(repo) });
    },
    async backup(repo, image, tag) {
      const staged = await stageImage(repo, image, tag);
      return measureCommand('borg', ['create', '--compression', 'lz4', `${repo}::${tag}`, 'disk.img'], { cwd: dirname(staged), env: env(repo) });
    },
    async restore(repo, tag, into) {
      const run = await measureCommand('borg', ['extract', '--sparse', `${repo}::${tag}`], { cwd: into, env: env(repo) });
      return { run, path: join(into, 'disk.img') };
    },
    verify: (repo) => measureCommand('borg', ['check', '--verify-data', repo], { env: env(repo) }),
  };
}

function restic(): Tool {
  const env = (repo: string): Record<string, string> => ({ RESTIC_PASSWORD: 'bench', RESTIC_CACHE_DIR: `${repo}.cache`, RESTIC_REPOSITORY: repo });
  return {
    name: 'restic',
    version: versionOf('restic', ['version']),
    settings: 'repository v2 (zstd auto, AES-256 always on), content-defined chunks; restore writes every byte (no sparse restore in 0.14); check --read-data',
    async init(repo) {
      await measureCommand('restic', ['init', '-q'], { env: env(repo) });
    },
    async backup(repo, image, tag) {
      const staged = await stageImage(repo, image, tag);
      return measureCommand('restic', ['backup', '-q', '--tag', tag, basename(staged)], { cwd: dirname(staged), env: env(repo) });
    },
    async restore(repo, tag, into) {
      // A relative path given to backup is restored under the target's root.
      const run = await measureCommand('restic', ['restore', '-q', 'latest', '--tag', tag, '--target', into], { env: env(repo) });
      return { run, path: join(into, 'disk.img') };
    },
    verify: (repo) => measureCommand('restic', ['check', '-q', '--read-data'], { env: env(repo) }),
  };
}

function casync(): Tool {
  const index = (repo: string, tag: string): string => join(repo, `${tag}.caibx`);
  return {
    name: 'casync',
    version: versionOf('casync', ['--version']),
    settings: 'blob index (make/extract), zstd (casync has no lz4), content-defined chunks of 64 KiB average, extract punches holes; no verify command',
    async init(repo) {
      await fs.mkdir(join(repo, 'store'), { recursive: true });
    },
    backup: (repo, image, tag) => measureCommand('casync', ['make', `--store=${join(repo, 'store')}`, index(repo, tag), image]),
    async restore(repo, tag, into) {
      const path = join(into, 'disk.img');
      const run = await measureCommand('casync', ['extract', `--store=${join(repo, 'store')}`, index(repo, tag), path]);
      return { run, path };
    },
    verify: null,
  };
}

const PEERS: { name: string; make: () => Tool; install: string }[] = [
  { name: 'borg', make: borg, install: 'apt-get install borgbackup' },
  { name: 'restic', make: restic, install: 'apt-get install restic' },
  { name: 'casync', make: casync, install: 'apt-get install casync' },
];

/** The installed peers, and a note for each one that is not. */
export function findPeers(only?: string[]): { tools: Tool[]; missing: MissingPeer[] } {
  const tools: Tool[] = [];
  const missing: MissingPeer[] = [];
  for (const peer of PEERS) {
    if (only && !only.includes(peer.name)) continue;
    if (hasCommand(peer.name)) tools.push(peer.make());
    else missing.push({ name: peer.name, note: `not installed (${peer.install}); skipped` });
  }
  return { tools, missing };
}

/** Removes a repository and what its tool keeps beside it (staged links, caches). */
export async function removeRepo(repo: string): Promise<void> {
  for (const suffix of ['', '.src', '.home', '.cache']) await fs.rm(repo + suffix, { recursive: true, force: true });
}
