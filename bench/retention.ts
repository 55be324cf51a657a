/**
 * Issue 5's performance goals, as a plug-in of `npm run bench` (see context.ts):
 * - pruneDecisions: retention decisions for 10,000 restore points of one name (goal:
 *   under a second), and `prune --dry-run` through the CLI over a real catalog.
 * - markRate: the gc mark phase over chunk maps (goal: >= 1 million chunk references
 *   per second), next to a Set of hex ids measured on the same maps in the same run.
 * - gcAfterPrune: 20 restore points of a disk (3 GiB; 128 MiB in the quick profile), 5% of
 *   its 1 MiB regions rewritten between points; prune half (--keep-last 10), then gc,
 *   reported as MB/s of pack data rewritten; compared with `borg prune --keep-last 10` +
 *   `borg compact` on the same history when borg is installed.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { BenchContext } from './context.js';
import { measureCommand, readWarm, type CommandRun } from './measure.js';
import { dirBytes, findPeers, removeRepo } from './peers.js';
import { GiB, MiB, UNIT, random, seededBytes, unitData, type ProfileName, type SyntheticSpec } from './workload.js';
import { applyRetention, type RetentionPoint, type RetentionPolicy } from '../engine/retention.js';
import { LiveSet } from '../engine/live-set.js';
import { initStore } from '../engine/index.js';
import type { RestorePoint } from '../store/catalog.js';

const SIZES: Record<ProfileName, { disk: number; catalogPoints: number; mapSlots: number }> = {
  quick: { disk: 128 * MiB, catalogPoints: 1000, mapSlots: 256 * 1024 },
  default: { disk: 3 * GiB, catalogPoints: 10_000, mapSlots: 1024 * 1024 },
  full: { disk: 3 * GiB, catalogPoints: 10_000, mapSlots: 1024 * 1024 },
};
const DECISION_POINTS = 10_000;
const CATALOG_PUTS_IN_FLIGHT = 64;
const POINTS = 20;
const KEEP = 10;
const CHANGE_SHARE = 0.05;
const POLICY: RetentionPolicy = { last: 24, hourly: 48, daily: 31, weekly: 52, monthly: 120, yearly: 30, within: '30d' };
const POLICY_FLAGS = Object.entries(POLICY).flatMap(([rule, value]) => [`--keep-${rule}`, String(value)]);

/** Restore points every ~3 hours, newest now, like an hourly job with gaps: ~3.4 years for 10,000. */
function calendar(count: number): RetentionPoint[] {
  const draw = random(5);
  const points: RetentionPoint[] = [];
  let ms = Date.UTC(2026, 10, 20, 23);
  for (let i = 0; i < count; i++) {
    points.push({ id: ms.toString(16).padStart(12, '0') + (i % 65536).toString(16).padStart(4, '0'), name: 'vm', time: new Date(ms).toISOString(), held: draw() < 0.001 });
    ms -= Math.round((1 + 4 * draw()) * 3_600_000);
  }
  return points;
}

function catalogEntry(point: RetentionPoint, chunkSize: number): RestorePoint {
  const stats = { bytesRead: 0, bytesNew: 0, chunksTotal: 0, chunksNew: 0, chunksZero: 0, seconds: 0 };
  return { id: point.id, name: point.name, time: point.time, created: point.time, chunkSize, kind: 'full', parent: null, disks: [{ label: 'disk', size: 0 }], hold: null, stats };
}

export async function pruneDecisions(context: BenchContext): Promise<Record<string, unknown>> {
  const points = calendar(DECISION_POINTS);
  applyRetention(points.slice(0, 100), POLICY); // warm up the JIT and Intl
  const started = performance.now();
  const decisions = applyRetention(points, POLICY);
  const seconds = (performance.now() - started) / 1000;

  const count = SIZES[context.profile.name].catalogPoints;
  const dir = join(context.workDir, 'repos', 'retention-catalog');
  await removeRepo(dir);
  const store = await initStore(dir, '64K');
  context.log(`retention: a catalog of ${count} restore points`);
  const entries = points.slice(0, count).map((point) => catalogEntry(point, store.chunkSize));
  // Each put is two fsyncs: many in flight let the filesystem commit them together.
  for (let i = 0; i < entries.length; i += CATALOG_PUTS_IN_FLIGHT) await Promise.all(entries.slice(i, i + CATALOG_PUTS_IN_FLIGHT).map((entry) => store.catalog.commit(entry)));
  const dryRun = await context.cli(['prune', '--store', dir, ...POLICY_FLAGS, '--dry-run', '--json']);
  const cliPlan = JSON.parse(dryRun.stdout) as { kept: number; removed: number };
  await removeRepo(dir);
  return {
    points: DECISION_POINTS,
    policy: POLICY,
    decisionSeconds: seconds,
    kept: decisions.filter((d) => d.action === 'keep').length,
    goals: { decisionsUnderOneSecond: seconds < 1 },
    cliDryRun: { catalogPoints: count, kept: cliPlan.kept, removed: cliPlan.removed, wallSeconds: dryRun.wallSeconds, cpuSeconds: dryRun.cpuSeconds },
  };
}

/** 20 maps of one disk, 5% of slots new in each: what gc reads when marking. */
function historyMaps(slots: number): Buffer[] {
  const draw = random(9);
  const maps = [seededBytes('retention-map-0', slots * 32)];
  for (let v = 1; v < POINTS; v++) {
    const map = Buffer.from(maps[v - 1]);
    const fresh = seededBytes(`retention-map-${v}`, slots * 32);
    for (let n = 0; n < slots * CHANGE_SHARE; n++) {
      const slot = Math.floor(draw() * slots);
      fresh.copy(map, slot * 32, slot * 32, slot * 32 + 32);
    }
    maps.push(map);
  }
  return maps;
}

export async function markRate(context: BenchContext): Promise<Record<string, unknown>> {
  const slots = SIZES[context.profile.name].mapSlots;
  const maps = historyMaps(slots);
  const refs = maps.length * slots;
  const time = (mark: () => number): { seconds: number; liveChunks: number; refsPerSecond: number } => {
    const started = performance.now();
    const liveChunks = mark();
    const seconds = (performance.now() - started) / 1000;
    return { seconds, liveChunks, refsPerSecond: refs / seconds };
  };
  const hexSet = time(() => {
    const set = new Set<string>();
    for (const map of maps) for (let at = 0; at < map.byteLength; at += 32) set.add(map.toString('hex', at, at + 32));
    return set.size;
  });
  const alone = time(() => {
    const live = new LiveSet();
    for (const map of maps) live.addMap(map);
    return live.size;
  });
  const chained = time(() => {
    const live = new LiveSet();
    maps.forEach((map, i) => live.addMap(map, i > 0 ? maps[i - 1] : null));
    return live.size;
  });
  return {
    maps: maps.length,
    slotsPerMap: slots,
    refs,
    baselineHexSet: hexSet,
    liveSet: alone,
    liveSetWithNeighbours: chained,
    speedupVsHexSet: hexSet.seconds / chained.seconds,
    goals: { atLeastOneMillionRefsPerSecond: chained.refsPerSecond >= 1e6 },
  };
}

/** Rewrites CHANGE_SHARE of the disk's 1 MiB regions with data of this version. */
async function writeVersion(image: string, size: number, version: number, spec: SyntheticSpec): Promise<void> {
  const handle = await fs.open(image, version === 0 ? 'w' : 'r+');
  try {
    const regions = Math.ceil(size / UNIT);
    const draw = random(1000 + version);
    for (let region = 0; region < regions; region++) {
      if (version > 0 && draw() >= CHANGE_SHARE) continue;
      const length = Math.min(UNIT, size - region * UNIT);
      await handle.write(unitData(spec, `${region}:${version}`, length), 0, length, region * UNIT);
    }
  } finally {
    await handle.close();
  }
}

/** The same borg environment as the peers module uses for a repository. */
function borgEnv(repo: string): Record<string, string> {
  return { BORG_PASSPHRASE: '', BORG_BASE_DIR: `${repo}.home`, BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes', BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes' };
}

interface GcJson {
  seconds: number;
  bytesRewritten: number;
  bytesFreed: number;
  packsDeleted: number;
  packsRewritten: number;
  chunksFreed: number;
  refsMarked: number;
  markSeconds: number;
  storeBytesBefore: number;
  storeBytesAfter: number;
}

export async function gcAfterPrune(context: BenchContext): Promise<Record<string, unknown>> {
  const size = SIZES[context.profile.name].disk;
  const spec: SyntheticSpec = { kind: 'synthetic', name: 'retention', size, seed: 53, allocatedShare: 1, duplicateShare: 0, compressibility: 0.5, changeRate: CHANGE_SHARE };
  const repos = join(context.workDir, 'repos');
  const store = join(repos, 'retention-store');
  const borgRepo = join(repos, 'retention-borg');
  const image = join(context.workDir, 'retention-disk.img');
  await fs.mkdir(repos, { recursive: true });
  await removeRepo(store);
  await removeRepo(borgRepo);
  const [borg] = findPeers(['borg']).tools;
  try {
    await context.cli(['init', '--store', store]);
    if (borg) await borg.init(borgRepo);
    for (let v = 0; v < POINTS; v++) {
      context.log(`retention: restore point ${v + 1} of ${POINTS} (${size / MiB} MiB disk)`);
      await writeVersion(image, size, v, spec);
      const time = new Date(Date.UTC(2026, 10, 1 + v)).toISOString();
      await context.cli(['backup', '--store', store, '--name', 'vm', `disk=${image}`, '--time', time, '--json']);
      if (borg) await borg.backup(borgRepo, image, `v${String(v).padStart(2, '0')}`);
    }
    context.log('retention: chunkvault prune + gc');
    readWarm(store);
    const prune = await context.cli(['prune', '--store', store, '--keep-last', String(KEEP), '--json']);
    const gcRun = await context.cli(['gc', '--store', store, '--json']);
    const gc = JSON.parse(gcRun.stdout) as GcJson;
    const chunkvault = {
      pruneWallSeconds: prune.wallSeconds,
      gcWallSeconds: gcRun.wallSeconds,
      gcEngineSeconds: gc.seconds,
      bytesRewritten: gc.bytesRewritten,
      rewriteMBps: gc.bytesRewritten / 1e6 / gc.seconds,
      bytesFreed: gc.bytesFreed,
      packsDeleted: gc.packsDeleted,
      packsRewritten: gc.packsRewritten,
      chunksFreed: gc.chunksFreed,
      // The whole mark phase (catalog listing and map reads included) over this small history.
      refsMarked: gc.refsMarked,
      markRefsPerSecond: gc.refsMarked / gc.markSeconds,
      storeBytesBefore: gc.storeBytesBefore,
      storeBytesAfter: gc.storeBytesAfter,
      peakRssBytes: gcRun.peakRssBytes,
    };
    const peer = borg ? await borgPruneCompact(context, borgRepo) : null;
    const ours = prune.wallSeconds + gcRun.wallSeconds;
    return {
      diskBytes: size,
      restorePoints: POINTS,
      kept: KEEP,
      changeShare: CHANGE_SHARE,
      chunkvault,
      borg: peer,
      speedupVsBorg: peer ? (peer.pruneWallSeconds + peer.compactWallSeconds) / ours : null,
      notes: borg ? [] : ['borg is not installed (apt-get install borgbackup): no comparison'],
    };
  } finally {
    await removeRepo(store);
    await removeRepo(borgRepo);
    await fs.rm(image, { force: true });
  }
}

async function borgPruneCompact(context: BenchContext, repo: string): Promise<{ pruneWallSeconds: number; compactWallSeconds: number; repoBytesBefore: number; repoBytesAfter: number; compactCpuSeconds: number }> {
  context.log('retention: borg prune + compact');
  const env = borgEnv(repo);
  const repoBytesBefore = await dirBytes(repo);
  readWarm(repo);
  const prune: CommandRun = await measureCommand('borg', ['prune', '--keep-last', String(KEEP), repo], { env });
  const compact: CommandRun = await measureCommand('borg', ['compact', repo], { env });
  return { pruneWallSeconds: prune.wallSeconds, compactWallSeconds: compact.wallSeconds, compactCpuSeconds: compact.cpuSeconds, repoBytesBefore, repoBytesAfter: await dirBytes(repo) };
}
