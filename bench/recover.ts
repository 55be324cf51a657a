/**
 * Recovery sessions (issue 16), a plug-in of `npm run bench` (see context.ts). On a sparse
 * disk of 64 GiB holding 1 GiB of data (8 GiB in the full profile, 4 GiB / 256 MiB quick):
 * - openSeconds: from starting `chunkvault recover` until the image opens and its first 4 KiB
 *   reads, against `restore` of the same disk (goal: <= 2 s whatever the size);
 * - random4k: fio 4 KiB random 50/50 reads and writes on the session image, cold (a new
 *   session, a cache of a few chunks) and warm (the same region again), IOPS each way;
 * - hydration MB/s (bytes of disk made present per second, as restore counts the disk's size)
 *   against restore's MB/s of the same disk, both to a new file on the same filesystem.
 * Ratios are of one run; the machine may be shared, so absolute speeds mean little alone.
 */
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { CLI } from './chunkvault.js';
import type { BenchContext } from './context.js';
import { sparseSpec } from './incremental.js';
import { measureCommand, readWarm } from './measure.js';
import { hasCommand } from './peers.js';
import { GiB, MiB, buildWorkload, type ProfileName } from './workload.js';

const SIZES: Record<ProfileName, { logical: number; data: number }> = {
  quick: { logical: 4 * GiB, data: 256 * MiB },
  default: { logical: 64 * GiB, data: GiB },
  full: { logical: 64 * GiB, data: 8 * GiB },
};
const FIO_SECONDS = 5;
const FIO_JOBS = 4;
const FIO_REGION = 256 * MiB;
const COLD_CACHE = '8M';

interface Session {
  image: string;
  /** JSON lines printed so far. */
  events(): Record<string, unknown>[];
  stop(): Promise<void>;
}

/** `chunkvault recover ... --json` in a child process, ready once it printed its serving line. */
async function startSession(args: string[], mountpoint: string): Promise<Session> {
  await fs.mkdir(mountpoint, { recursive: true });
  const child = spawn(CLI, ['recover', ...args, mountpoint, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const events = (): Record<string, unknown>[] =>
    stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const image = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d) => {
      stdout += d;
      const serving = events().find((e) => e.event === 'serving');
      if (serving) resolve(serving.image as string);
    });
    void exited.then((code) => reject(new Error(`chunkvault recover exited ${code}: ${stderr.trim()}`)));
  });
  return {
    image,
    events,
    async stop() {
      child.kill('SIGTERM');
      const code = await exited;
      if (code !== 0) throw new Error(`chunkvault recover exited ${code} on SIGTERM: ${stderr.trim()}`);
      // Its state is kept on a stop: the next session on the same directory starts anew.
      await measureCommand(CLI, ['recover', '--discard', mountpoint]);
    },
  };
}

/** Until the image opens and its first 4 KiB reads. */
async function firstRead(image: string): Promise<void> {
  const file = await fs.open(image, 'r');
  try {
    await file.read(Buffer.alloc(4096), 0, 4096, 0);
  } finally {
    await file.close();
  }
}

async function until(check: () => boolean, what: string, timeoutMs = 3_600_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface Iops {
  readIops: number;
  writeIops: number;
}

async function fioRandom(image: string): Promise<Iops> {
  const run = await measureCommand('fio', [
    '--name=rand4k',
    `--filename=${image}`,
    '--rw=randrw',
    '--rwmixread=50',
    '--bs=4k',
    '--ioengine=psync',
    `--numjobs=${FIO_JOBS}`,
    '--group_reporting',
    `--size=${FIO_REGION}`,
    '--time_based',
    `--runtime=${FIO_SECONDS}`,
    '--invalidate=0',
    '--randrepeat=1',
    '--output-format=json',
  ]);
  const [job] = (JSON.parse(run.stdout) as { jobs: { read: { iops: number }; write: { iops: number } }[] }).jobs;
  return { readIops: job.read.iops, writeIops: job.write.iops };
}

export async function recoverFigures(context: BenchContext): Promise<Record<string, unknown>> {
  const workDir = join(context.workDir, 'recover');
  await fs.rm(workDir, { recursive: true, force: true });
  await fs.mkdir(workDir, { recursive: true });
  process.env.CHUNKVAULT_SESSIONS = join(workDir, 'sessions');
  try {
    const { logical, data } = SIZES[context.profile.name];
    const workload = await buildWorkload(sparseSpec(`recover-${logical / GiB}g-${data / MiB}m`, logical, data), join(context.workDir, 'workloads'));
    const store = join(workDir, 'store');
    await context.cli(['init', '--store', store]);
    context.log(`recover: backup of a ${logical / GiB} GiB disk with ${data / MiB} MiB of data`);
    const { id } = JSON.parse((await context.cli(['backup', '--store', store, `disk=${workload.base}`, '--json'])).stdout) as { id: string };
    readWarm(store);
    const mnt = join(workDir, 'mnt');

    context.log('recover: restore of the same disk');
    const restoredFile = join(workDir, 'restored.img');
    const restored = await context.cli(['restore', '--store', store, id, restoredFile]);
    await fs.rm(restoredFile, { force: true });

    context.log('recover: time until the session image opens');
    const started = performance.now();
    const opened = await startSession(['--store', store, id], mnt);
    await firstRead(opened.image);
    const openSeconds = (performance.now() - started) / 1000;
    await opened.stop();

    let random4k: Record<string, unknown> = { skipped: 'fio is not installed' };
    if (hasCommand('fio')) {
      context.log('recover: fio 4 KiB random reads and writes, cold then warm');
      const session = await startSession(['--store', store, id, '--cache', COLD_CACHE], mnt);
      const cold = await fioRandom(session.image);
      const warm = await fioRandom(session.image);
      await session.stop();
      random4k = { jobs: FIO_JOBS, seconds: FIO_SECONDS, regionBytes: FIO_REGION, cache: COLD_CACHE, cold, warm };
    }

    context.log('recover: hydration onto a new file');
    const target = join(workDir, 'target.img');
    const hydrating = await startSession(['--store', store, id, '--to', target], mnt);
    await until(() => hydrating.events().some((e) => e.event === 'hydrated'), 'hydration');
    const done = hydrating.events().find((e) => e.event === 'hydrated') as { seconds: number; mbps: number };
    await hydrating.stop();
    await fs.rm(target, { force: true });

    const restoreMBps = logical / 1e6 / restored.wallSeconds;
    return {
      logicalBytes: logical,
      dataBytes: data,
      restoreSeconds: restored.wallSeconds,
      openSeconds,
      openVsRestore: openSeconds / restored.wallSeconds,
      random4k,
      hydrationMBps: done.mbps,
      hydrationSeconds: done.seconds,
      restoreMBps,
      hydrationVsRestore: done.mbps / restoreMBps,
      notes: ['restore and hydration count MB/s of the logical disk (zero chunks are holes in both); restore is timed as a whole process, hydration from the session start'],
    };
  } finally {
    await fs.rm(workDir, { recursive: true, force: true });
  }
}
