/**
 * Issue 17's view figures, as a plug-in of `npm run bench` (see context.ts), on one store
 * holding a sparse disk (64 GiB logical, 1 GiB data; 4 GiB / 64 MiB in the quick profile) and
 * a dense one of the sparse disk's data volume, through one `chunkvault mount`:
 * - sparseConvert: `qemu-img convert -O raw` of the sparse disk's .qcow2 view against the same
 *   convert of its raw .img view (libfuse2 has no SEEK_HOLE, so qemu reads every zero of the
 *   raw view; the qcow2 view tells it where the holes are); goal: >= 20x. Beside them, the
 *   convert of the dense disk's .img: what converting just the data volume costs. Each convert
 *   also counts the CPU seconds of qemu-img and of the mount serving it: on a shared machine
 *   their ratio moves less with others' load than the ratio of wall times.
 * - viewReads: `dd bs=1M` of the dense disk's .img, .vhd and .qcow2 views, each round starting
 *   with another, medians of the rounds; goal: each view within 10% of the raw view's throughput.
 * Only ratios measured in this one run are meant to be compared: the machine is shared.
 */
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { BenchContext } from './context.js';
import { sparseSpec } from './incremental.js';
import { measureCommand, processUsage, readWarm } from './measure.js';
import { withMount } from './mount.js';
import { hasCommand } from './peers.js';
import { median } from './report.js';
import { GiB, MiB, buildWorkload, type ProfileName } from './workload.js';

const SIZES: Record<ProfileName, { logical: number; data: number }> = {
  quick: { logical: 4 * GiB, data: 64 * MiB },
  default: { logical: 64 * GiB, data: GiB },
  full: { logical: 64 * GiB, data: GiB },
};

const VIEWS = ['img', 'vhd', 'qcow2'] as const;

interface Prepared {
  store: string;
  mountpoint: string;
  sparse: { id: string; bytes: number; dataBytes: number; base: string };
  dense: { id: string; bytes: number };
}

async function prepare(context: BenchContext): Promise<Prepared> {
  const { logical, data } = SIZES[context.profile.name];
  const workloads = join(context.workDir, 'workloads');
  const sparse = await buildWorkload(sparseSpec(`sparse-${logical / GiB}g`, logical, data), workloads);
  const dense = await buildWorkload(sparseSpec(`dense-${data / MiB}m`, data, data), workloads);
  const store = join(context.workDir, 'repos', 'views');
  await fs.rm(store, { recursive: true, force: true });
  await fs.mkdir(join(context.workDir, 'repos'), { recursive: true });
  await context.cli(['init', '--store', store]);
  const backup = async (name: string, path: string): Promise<string> => (JSON.parse((await context.cli(['backup', '--store', store, '--name', name, `disk=${path}`, '--json'])).stdout) as { id: string }).id;
  context.log('views: backups of the sparse and the dense disk');
  return {
    store,
    mountpoint: join(context.workDir, 'views-mnt'),
    sparse: { id: await backup('sparse', sparse.base), bytes: sparse.size, dataBytes: sparse.dataBytes, base: sparse.base },
    dense: { id: await backup('dense', dense.base), bytes: dense.size },
  };
}

async function withPrepared<T>(context: BenchContext, use: (prepared: Prepared, mountpoint: string, server: number) => Promise<T>): Promise<T> {
  const prepared = await prepare(context);
  try {
    return await withMount(prepared.store, prepared.mountpoint, '', [], (mountpoint, server) => use(prepared, mountpoint, server));
  } finally {
    await fs.rm(prepared.store, { recursive: true, force: true });
  }
}

interface Convert {
  seconds: number;
  /** qemu-img's own, and what the mount process spent serving its reads. */
  cpuSeconds: number;
  /** Cores the whole machine kept busy meanwhile: others' load shows as more than this convert's CPU. */
  machineBusyCores: number;
}

async function convert(context: BenchContext, file: string, format: string, out: string, server: number): Promise<Convert> {
  context.log(`views: qemu-img convert -f ${format} ${file}`);
  const before = processUsage(server).cpuSeconds;
  const run = await measureCommand('qemu-img', ['convert', '-f', format, '-O', 'raw', file, out]);
  return { seconds: run.wallSeconds, cpuSeconds: run.cpuSeconds + processUsage(server).cpuSeconds - before, machineBusyCores: run.machineBusyCores };
}

/** Medians of each figure over the converts. */
function medians(runs: Convert[]): Convert {
  return { seconds: median(runs.map((r) => r.seconds)), cpuSeconds: median(runs.map((r) => r.cpuSeconds)), machineBusyCores: median(runs.map((r) => r.machineBusyCores)) };
}

export async function sparseConvert(context: BenchContext): Promise<Record<string, unknown>> {
  if (!hasCommand('qemu-img')) return { skipped: 'qemu-img is not installed (apt-get install qemu-utils)' };
  return withPrepared(context, async ({ store, sparse, dense: denseDisk }, mountpoint, server) => {
    const out = join(context.workDir, 'views-converted.raw');
    // Both converts read the same chunks from a warm page cache, the first one included.
    readWarm(store);
    try {
      const view = (suffix: string): string => join(mountpoint, sparse.id, `disk.${suffix}`);
      const qcow2 = medians(await repeat(context.rounds, () => convert(context, view('qcow2'), 'qcow2', out, server)));
      const identical = spawnSync('cmp', ['-s', out, sparse.base]).status === 0;
      const raw = await convert(context, view('img'), 'raw', out, server);
      const denseData = medians(await repeat(context.rounds, () => convert(context, join(mountpoint, denseDisk.id, 'disk.img'), 'raw', out, server)));
      const speedup = raw.seconds / qcow2.seconds;
      return {
        logicalBytes: sparse.bytes,
        dataBytes: sparse.dataBytes,
        qcow2Seconds: qcow2.seconds,
        rawSeconds: raw.seconds,
        // "The time of its data": the same convert of a dense disk of the sparse one's data volume.
        denseDataSeconds: denseData.seconds,
        qcow2VsDenseData: qcow2.seconds / denseData.seconds,
        speedupQcow2VsRaw: speedup,
        goalAtLeast20x: speedup >= 20,
        convertedIdentical: identical,
        cpuSeconds: { qcow2: qcow2.cpuSeconds, raw: raw.cpuSeconds, denseData: denseData.cpuSeconds },
        cpuRatioRawVsQcow2: raw.cpuSeconds / qcow2.cpuSeconds,
        machineBusyCores: { qcow2: qcow2.machineBusyCores, raw: raw.machineBusyCores, denseData: denseData.machineBusyCores },
        notes: [
          `qcow2 and dense: medians of ${context.rounds} converts; raw: one convert (it reads the whole logical size)`,
          'cpuSeconds: qemu-img and the mount process together, per convert',
        ],
      };
    } finally {
      await fs.rm(out, { force: true });
    }
  });
}

async function repeat<T>(times: number, fn: () => Promise<T>): Promise<T[]> {
  const results: T[] = [];
  for (let i = 0; i < times; i++) results.push(await fn());
  return results;
}

export async function viewReads(context: BenchContext): Promise<Record<string, unknown>> {
  return withPrepared(context, async ({ store, dense }, mountpoint) => {
    const file = (view: string): string => join(mountpoint, dense.id, `disk.${view}`);
    // Every view then reads the same chunks from a warm page cache, the first one included.
    readWarm(store);
    const seconds = Object.fromEntries(VIEWS.map((view) => [view, [] as number[]])) as Record<(typeof VIEWS)[number], number[]>;
    for (let round = 1; round <= context.rounds; round++) {
      // Each round starts with another view, so a burst of load elsewhere does not always hit the same one.
      for (const view of [...VIEWS.slice(round % VIEWS.length), ...VIEWS.slice(0, round % VIEWS.length)]) {
        context.log(`views: dd of disk.${view}, round ${round}`);
        seconds[view].push((await measureCommand('dd', [`if=${file(view)}`, 'of=/dev/null', 'bs=1M'])).wallSeconds);
      }
    }
    const MBps: Record<string, number> = {};
    for (const view of VIEWS) MBps[view] = (await fs.stat(file(view))).size / 1e6 / median(seconds[view]);
    const vsRaw = Object.fromEntries(VIEWS.filter((v) => v !== 'img').map((view) => [view, MBps[view] / MBps.img]));
    return {
      diskBytes: dense.bytes,
      MBps,
      throughputVsRaw: vsRaw,
      goalWithin10PercentOfRaw: Object.values(vsRaw).every((ratio) => ratio >= 0.9),
      details: { seconds },
    };
  });
}
