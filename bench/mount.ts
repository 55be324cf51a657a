/**
 * Mount figures for `npm run bench` (a plug-in: bench/run.ts calls the exported function
 * with the bench context). On a store holding one restore point of the workload image:
 * - sequential `dd bs=1M` of the image through `chunkvault mount`, next to `cat` of the
 *   source image and `dd` through `borg mount` of the same image, in the same run;
 * - 4 KiB random reads (fio, else a Node reader in a child process): cold (a fresh mount
 *   with a cache of a few chunks) and warm (a region read once, smaller than the cache).
 * Every mount is the real CLI in a child process, stopped with SIGTERM.
 */
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { CLI } from './chunkvault.js';
import type { BenchContext } from './context.js';
import { measureCommand, processUsage, readWarm } from './measure.js';
import { hasCommand } from './peers.js';
import { MiB } from './workload.js';

const RANDOM_SECONDS = 5;
const RANDOM_JOBS = 4;
const COLD_CACHE = '8M';
const WARM_REGION = 128 * MiB;

interface SequentialRead {
  seconds: number;
  MBps: number;
}

/** What serving a read cost the process behind the mount: its CPU seconds meanwhile, its peak RSS so far. */
interface ServerCost {
  serverCpuSeconds: number;
  serverPeakRssBytes: number;
}

interface RandomReads {
  iops: number;
  /** Bytes of the image the reads were spread over. */
  regionBytes: number;
  cache: string;
}

export interface MountFigures {
  imageBytes: number;
  /** `cat` of the source image, page cache warm: the ceiling of any read path here. */
  cat: SequentialRead;
  /** First read after mounting: every chunk decoded and checked on the pool. */
  sequential: SequentialRead & ServerCost & { vsCat: number };
  random4k: { tool: string; jobs: number; seconds: number; cold: RandomReads; warm: RandomReads };
  borg: (SequentialRead & ServerCost & { version: string }) | { skipped: string };
  /** sequential MB/s through chunkvault mount / through borg mount; the goal is >= 2. */
  mountVsBorg: number | null;
  notes: string[];
}

interface Mounted {
  file: string;
  pid: number;
  stop(): Promise<void>;
}

/** `chunkvault mount` in a child process, ready once it printed `mounted at`. */
async function mountStore(store: string, mountpoint: string, file: string, extra: string[] = []): Promise<Mounted> {
  await fs.mkdir(mountpoint, { recursive: true });
  const child = spawn(CLI, ['mount', '--store', store, mountpoint, ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d) => {
      stdout += d;
      if (stdout.includes('mounted at')) resolve();
    });
    void exited.then((code) => reject(new Error(`chunkvault mount exited ${code}: ${stderr.trim()}`)));
  });
  return {
    file: join(mountpoint, file),
    pid: child.pid!,
    async stop() {
      child.kill('SIGTERM');
      const code = await exited;
      if (code !== 0) throw new Error(`chunkvault mount exited ${code} on SIGTERM: ${stderr.trim()}`);
    },
  };
}

export async function withMount<T>(store: string, mountpoint: string, file: string, extra: string[], use: (file: string, pid: number) => Promise<T>): Promise<T> {
  const mounted = await mountStore(store, mountpoint, file, extra);
  try {
    return await use(mounted.file, mounted.pid);
  } finally {
    await mounted.stop();
  }
}

async function sequentialRead(path: string, bytes: number): Promise<SequentialRead> {
  const run = await measureCommand('dd', [`if=${path}`, 'of=/dev/null', 'bs=1M']);
  return { seconds: run.wallSeconds, MBps: bytes / 1e6 / run.wallSeconds };
}

/** A sequential read through a mount, with what the mount's process spent serving it. */
async function servedRead(path: string, bytes: number, server: number): Promise<SequentialRead & ServerCost> {
  const before = processUsage(server);
  const read = await sequentialRead(path, bytes);
  const after = processUsage(server);
  return { ...read, serverCpuSeconds: after.cpuSeconds - before.cpuSeconds, serverPeakRssBytes: after.peakRssBytes };
}

async function catRead(path: string, bytes: number): Promise<SequentialRead> {
  const run = await measureCommand('sh', ['-c', 'cat "$1" > /dev/null', 'sh', path]);
  return { seconds: run.wallSeconds, MBps: bytes / 1e6 / run.wallSeconds };
}

/** The fallback when fio is missing: one reader, 4 KiB preads at random aligned offsets. */
const NODE_RANDOM_READER = `
const fs = require('node:fs');
const [file, region, seconds] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const fd = fs.openSync(file, 'r');
const buf = Buffer.alloc(4096);
const blocks = Math.floor(region / 4096);
let ios = 0;
const end = Date.now() + seconds * 1000;
while (Date.now() < end) { fs.readSync(fd, buf, 0, 4096, Math.floor(Math.random() * blocks) * 4096); ios++; }
process.stdout.write(JSON.stringify({ iops: ios / seconds }));
`;

async function randomIops(file: string, region: number): Promise<number> {
  if (hasCommand('fio')) {
    const run = await measureCommand('fio', [
      '--name=rand4k',
      `--filename=${file}`,
      '--rw=randread',
      '--bs=4k',
      '--ioengine=psync',
      `--numjobs=${RANDOM_JOBS}`,
      '--group_reporting',
      `--size=${region}`,
      '--time_based',
      `--runtime=${RANDOM_SECONDS}`,
      '--invalidate=0',
      '--output-format=json',
    ]);
    return (JSON.parse(run.stdout) as { jobs: { read: { iops: number } }[] }).jobs[0].read.iops;
  }
  const run = await measureCommand(process.execPath, ['-e', NODE_RANDOM_READER, file, String(region), String(RANDOM_SECONDS)]);
  return (JSON.parse(run.stdout) as { iops: number }).iops;
}

/** The pid of the process whose command line holds every one of `args` (borg mount goes to the background). */
async function processWith(args: string[]): Promise<number | null> {
  for (const entry of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = (await fs.readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (args.every((a) => argv.includes(a))) return Number(entry);
  }
  return null;
}

async function borgMountRead(workDir: string, image: string, bytes: number, log: (m: string) => void): Promise<MountFigures['borg']> {
  if (!hasCommand('borg')) return { skipped: 'borg is not installed (apt-get install borgbackup)' };
  const repo = join(workDir, 'borg');
  const env = { BORG_PASSPHRASE: '', BORG_BASE_DIR: `${repo}.home`, BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes', BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes' };
  const mountpoint = join(workDir, 'borg-mnt');
  await fs.mkdir(mountpoint, { recursive: true });
  const version = (await measureCommand('borg', ['--version'])).stdout.trim();
  await measureCommand('borg', ['init', '--encryption=none', repo], { env });
  log('mount: borg create of the same image (lz4)');
  await measureCommand('borg', ['create', '--compression', 'lz4', `${repo}::disk`, 'disk.img'], { cwd: join(image, '..'), env });
  readWarm(repo);
  await measureCommand('borg', ['mount', `${repo}::disk`, mountpoint], { env });
  try {
    const server = await processWith(['mount', `${repo}::disk`]);
    if (server === null) throw new Error('the borg mount process was not found');
    return { ...(await servedRead(join(mountpoint, 'disk.img'), bytes, server)), version };
  } finally {
    await measureCommand('borg', ['umount', mountpoint], { env });
  }
}

export async function mountReads(context: BenchContext): Promise<MountFigures> {
  const workDir = join(context.workDir, 'mount');
  await fs.rm(workDir, { recursive: true, force: true });
  await fs.mkdir(workDir, { recursive: true });
  try {
    // borg records the path it was given: both tools read the image as disk.img.
    const image = join(workDir, 'disk.img');
    await fs.link(context.workload.base, image).catch(() => fs.copyFile(context.workload.base, image));
    const bytes = context.workload.size;
    const store = join(workDir, 'store');
    await context.cli(['init', '--store', store]);
    const { id } = JSON.parse((await context.cli(['backup', '--store', store, image, '--json'])).stdout) as { id: string };
    readWarm(store);
    const file = join(id, 'disk.img');
    const mountpoint = join(workDir, 'mnt');
    const notes = [
      'mounts use direct_io: every read reaches chunkvault, re-reads are served from its chunk cache, not the kernel page cache',
      'packs and the borg repository are read warm from the page cache: the figures are the read paths, not the disk',
    ];

    const cat = await catRead(image, bytes);
    context.log('mount: sequential dd through chunkvault mount');
    const sequential = await withMount(store, mountpoint, file, [], (path, pid) => servedRead(path, bytes, pid));

    context.log('mount: 4 KiB random reads, cold and warm');
    const cold = await withMount(store, mountpoint, file, ['--cache', COLD_CACHE], (path) => randomIops(path, bytes));
    const region = Math.min(WARM_REGION, bytes);
    const warm = await withMount(store, mountpoint, file, [], async (path) => {
      await measureCommand('dd', [`if=${path}`, 'of=/dev/null', 'bs=1M', `count=${Math.ceil(region / MiB)}`]);
      return randomIops(path, region);
    });

    context.log('mount: sequential dd through borg mount');
    const borg = await borgMountRead(workDir, image, bytes, context.log).catch((err: Error) => ({ skipped: `borg mount failed: ${err.message}` }));
    return {
      imageBytes: bytes,
      cat,
      sequential: { ...sequential, vsCat: sequential.MBps / cat.MBps },
      random4k: {
        tool: hasCommand('fio') ? `fio psync, ${RANDOM_JOBS} jobs` : 'node preads, 1 reader',
        jobs: hasCommand('fio') ? RANDOM_JOBS : 1,
        seconds: RANDOM_SECONDS,
        cold: { iops: cold, regionBytes: bytes, cache: COLD_CACHE },
        warm: { iops: warm, regionBytes: region, cache: 'default' },
      },
      borg,
      mountVsBorg: 'MBps' in borg ? sequential.MBps / borg.MBps : null,
      notes,
    };
  } finally {
    await fs.rm(workDir, { recursive: true, force: true });
  }
}
