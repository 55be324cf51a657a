/**
 * Issue 17's files goals, as a plug-in of `npm run bench` (see context.ts):
 * - filesListing: `files` listing `/` of the ext4 on a 1 TiB sparse disk (64 GiB in the quick
 *   profile): seconds, and bytes the process read (every file it read: packs, index, map and
 *   its own code; an upper bound of what it read of the store); goals < 2 s and < 1% of the disk.
 * - filesExtract: `files --get /` of a 1 GiB tree (64 MiB quick) against what one does without
 *   it: `restore` of the whole image, a read-only loop mount and `cp -a`. Both in one run, as a
 *   ratio: the machine is shared. Root only (loop mounts, and the files test's mount needs FUSE).
 */
import { execFileSync, spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { BenchContext } from './context.js';
import { CLI } from './chunkvault.js';
import { GiB, MiB, seededBytes, type ProfileName } from './workload.js';

const SIZES: Record<ProfileName, { disk: number; tree: number }> = {
  quick: { disk: 64 * GiB, tree: 64 * MiB },
  default: { disk: 1024 * GiB, tree: GiB },
  full: { disk: 1024 * GiB, tree: GiB },
};

const FILE_BYTES = 8 * MiB;

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** A tree of `bytes` in 8 MiB files of seeded bytes, over a few directories. */
async function buildTree(dir: string, bytes: number): Promise<void> {
  for (let i = 0; i * FILE_BYTES < bytes; i++) {
    const sub = join(dir, `dir-${i % 8}`);
    await fs.mkdir(sub, { recursive: true });
    await fs.writeFile(join(sub, `file-${i}.bin`), seededBytes(`files-${i}`, Math.min(FILE_BYTES, bytes - i * FILE_BYTES)));
  }
}

/** An ext4 holding `tree`, on a sparse image of `size`. */
function ext4Disk(image: string, size: number, tree: string): void {
  execFileSync('mkfs.ext4', ['-q', '-F', '-d', tree, image, `${size / MiB}M`], { stdio: 'pipe' });
}

interface Run {
  seconds: number;
  /** rchar of /proc/PID/io, last seen before the process ended. */
  bytesRead: number;
}

/** Runs the CLI, polling what it read; throws on a non-zero exit. */
function runReading(args: string[]): Promise<Run> {
  return new Promise((done, fail) => {
    const started = performance.now();
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let bytesRead = 0;
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const poll = setInterval(() => {
      void fs
        .readFile(`/proc/${child.pid}/io`, 'utf8')
        .then((text) => (bytesRead = Math.max(bytesRead, Number(/rchar: (\d+)/.exec(text)?.[1] ?? 0))))
        .catch(() => undefined);
    }, 10);
    child.on('close', (code) => {
      clearInterval(poll);
      if (code === 0) done({ seconds: (performance.now() - started) / 1000, bytesRead });
      else fail(new Error(`chunkvault ${args.join(' ')} exited ${code}: ${stderr}`));
    });
  });
}

async function timed(fn: () => Promise<unknown> | unknown): Promise<number> {
  const started = performance.now();
  await fn();
  return (performance.now() - started) / 1000;
}

async function fresh(dir: string): Promise<string> {
  await fs.rm(dir, { recursive: true, force: true });
  await fs.mkdir(dir, { recursive: true });
  return dir;
}

export async function filesListing(context: BenchContext): Promise<Record<string, unknown>> {
  if (!isRoot()) return { skipped: 'needs root (FUSE mounts)' };
  const { disk } = SIZES[context.profile.name];
  const dir = await fresh(join(context.workDir, 'files-listing'));
  try {
    const tree = join(dir, 'tree');
    await buildTree(tree, 16 * MiB);
    const image = join(dir, 'big.img');
    context.log(`files: ext4 on a ${disk / GiB} GiB sparse disk`);
    ext4Disk(image, disk, tree);
    const store = join(dir, 'store');
    await context.cli(['init', '--store', store]);
    await context.cli(['backup', '--store', store, image]);
    context.log('files: listing /');
    const runs: Run[] = [];
    for (let round = 0; round < context.rounds; round++) runs.push(await runReading(['files', '--store', store, 'latest', '/']));
    const best = runs.reduce((a, b) => (a.seconds <= b.seconds ? a : b));
    return {
      diskBytes: disk,
      seconds: best.seconds,
      bytesRead: best.bytesRead,
      shareOfDisk: best.bytesRead / disk,
      goalUnder2Seconds: best.seconds < 2,
      goalUnder1PercentOfDisk: best.bytesRead / disk < 0.01,
      details: { runs },
    };
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

export async function filesExtract(context: BenchContext): Promise<Record<string, unknown>> {
  if (!isRoot()) return { skipped: 'needs root (FUSE and loop mounts)' };
  const { tree: treeBytes } = SIZES[context.profile.name];
  const dir = await fresh(join(context.workDir, 'files-extract'));
  try {
    const tree = join(dir, 'tree');
    await buildTree(tree, treeBytes);
    const image = join(dir, 'root.img');
    ext4Disk(image, 2 * treeBytes + 256 * MiB, tree);
    const store = join(dir, 'store');
    await context.cli(['init', '--store', store]);
    await context.cli(['backup', '--store', store, image]);

    context.log('files: files --get /');
    const viaFiles = await timed(() => runReading(['files', '--store', store, 'latest', '--get', '/', '--to', join(dir, 'out-files')]));
    context.log('files: restore + loop mount + cp -a');
    const restored = join(dir, 'restored.img');
    const at = await fresh(join(dir, 'loop'));
    const out = await fresh(join(dir, 'out-restore'));
    const viaRestore = await timed(async () => {
      await context.cli(['restore', '--store', store, 'latest', restored]);
      execFileSync('mount', ['-o', 'loop,ro,noload', restored, at]);
      try {
        execFileSync('cp', ['-a', `${at}/.`, out]);
      } finally {
        execFileSync('umount', [at]);
      }
    });
    const same = execFileSync('diff', ['-r', '--no-dereference', join(dir, 'out-files'), out, '--exclude=lost+found'], { encoding: 'utf8' }) === '';
    return {
      treeBytes,
      imageBytes: (await fs.stat(image)).size,
      filesSeconds: viaFiles,
      restoreMountCopySeconds: viaRestore,
      speedupVsRestore: viaRestore / viaFiles,
      sameFiles: same,
    };
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}
