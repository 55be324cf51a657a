/**
 * Crash torture (invariants 1, 2 and 5): backups, CBT incremental backups, prunes and gc
 * with compaction (some of them recompressing too, with --recompress zstd:LEVEL --older-than 0)
 * run as real CLI processes and are killed with SIGKILL, either at a random
 * moment of their work or at an injected step between two durable writes (engine/crash.ts).
 * After every kill the store must open, `verify --read-data` must be clean, the catalog must
 * list exactly what was committed, every listed restore point must restore byte-identical,
 * and the dead process's lock must be cleared; after every completed gc nothing must be left
 * for another gc to reclaim (nor to recompress, after a recompressing one).
 *
 * Then, with --faults N (invariant 6), N prunes and gcs run against the store served through
 * bench/faulty-fs, with EIO or EMFILE injected at random into reads of its catalog, maps,
 * locks, packs and index (seeded rules). Each may finish or stop; one that stops must say
 * `cannot read <object> (<ERRNO>); stopped, nothing was changed` (exit 2) and have changed
 * nothing; either way, faults off, the same store checks follow.
 *
 *   npm run torture -- [--kills 200] [--faults 0] [--seed 1] [--image-mib 16] [--dir DIR] [--json]
 *
 * Exits 1 when any check failed; the work directory is then kept for inspection.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { gc, planPrune, restore, verify, Store } from '../engine/index.js';
import { CRASH_ENV, CRASH_STEPS, type CrashStep } from '../engine/crash.js';
import { WorkerPool } from '../engine/pool.js';
import { ChunkFetcher, DiskReader, type ChunkCache } from '../engine/reader.js';
import type { RestorePoint } from '../store/catalog.js';
import { formatCompression } from '../store/compression.js';
import type { RecompressPolicy } from '../store/format.js';
import { formatBytes } from '../store/size.js';
import { CLI } from './chunkvault.js';
import { startFaultyFs, type FaultRule, type FaultyFs } from './faulty-fs.js';
import { MiB, random, seededBytes, type Range } from './workload.js';

export const OPS = ['backup', 'incremental', 'prune', 'gc'] as const;
export type TortureOp = (typeof OPS)[number];
/** How an operation ends: left to finish, killed after a random delay, or killed at a step. */
type Ending = 'finish' | 'random' | CrashStep;

export interface TortureOptions {
  /** Stop once this many operations were killed. */
  kills: number;
  /** Then run this many prunes and gcs through faulty-fs, with read faults injected (needs root and FUSE). */
  faults?: number;
  seed: number;
  /** Size of the disk image backed up. */
  imageMiB?: number;
  /** Work directory (kept); a fresh temporary one (removed unless a check failed) otherwise. */
  dir?: string;
  log?: (line: string) => void;
}

export interface TortureReport {
  seed: number;
  kills: number;
  killsByOp: Record<TortureOp, number>;
  /** Kills at each injected step; a step a run did not reach is not counted. */
  killsByStep: Record<string, number>;
  randomKills: number;
  /** gcs that also recompressed, and how many of them were killed. */
  recompressingGcs: number;
  recompressingGcKills: number;
  operations: number;
  operationsFinished: number;
  /** Full checks: verify --read-data, catalog, restore of every restore point, stale lock. */
  storeChecks: number;
  restorePointsChecked: number;
  bytesCompared: number;
  /** Dry-run gc after each gc that finished: anything it would still reclaim is a failure. */
  leftoverChecks: number;
  /** Prunes and gcs run with read faults injected, those of them that stopped (exit 2), and the faults met. */
  faultedOps: number;
  faultedOpsStopped: number;
  /**
   * Killed by a signal the fault caused: LevelDB reads its tables through mmap, and a page that
   * cannot be read is SIGBUS, as on a failing disk. A crash like any kill: nothing may be lost.
   */
  faultedOpsCrashed: number;
  faultsInjected: number;
  failures: string[];
  seconds: number;
  /** Of which: running the operations (CLI processes), and the store checks after them. */
  secondsOperating: number;
  secondsChecking: number;
  workDir: string | null;
}

const NAME = 'vm';
const CHUNK_SIZE = '64K';
const KEEP_LAST = 3;
const KILL_SHARE = 0.8;
/** The share of gcs that also recompress, and the zstd levels they pick from (seeded). */
const RECOMPRESS_SHARE = 0.4;
const RECOMPRESS_LEVELS = [1, 3, 9];
const LAST_RECOMPRESS_LEVEL = 9;
/** Random kills land within this share of an operation's typical work time, so most land. */
const RANDOM_SPAN = 0.8;
/** Past this many failures the store is too far gone for further checks to say anything new. */
const MAX_FAILURES = 5;
const OP_WEIGHTS: [TortureOp, number][] = [
  ['backup', 0.25],
  ['incremental', 0.35],
  ['prune', 0.15],
  ['gc', 0.25],
];
/**
 * The run opens with every injected step once, in an order that makes each reachable (a
 * dead pack for gc to delete, pruned points for it to compact), then goes on at random.
 * A third element: the zstd level that gc recompresses with (packs of any age).
 */
const OPENING: [TortureOp, Ending, number?][] = [
  ['backup', 'finish'],
  ['incremental', 'finish'],
  ['incremental', 'finish'],
  ['incremental', 'finish'],
  ['backup', 'backup-after-packs'],
  ['incremental', 'backup-after-segment'],
  ['incremental', 'backup-after-index'],
  ['incremental', 'backup-after-maps'],
  ['incremental', 'backup-after-catalog'],
  ['gc', 'gc-after-consolidation'],
  ['gc', 'gc-mid-delete'],
  ['prune', 'prune-after-catalog'],
  ['prune', 'finish'],
  ['gc', 'gc-after-copy', 3],
  ['gc', 'gc-after-segment'],
  ['prune', 'finish'],
  ['gc', 'gc-after-index'],
  ['gc', 'gc-after-sweep'],
];
const STEPS: Record<TortureOp, readonly CrashStep[]> = { backup: CRASH_STEPS.backup, incremental: CRASH_STEPS.backup, prune: CRASH_STEPS.prune, gc: CRASH_STEPS.gc };
const ALL_STEPS: readonly CrashStep[] = Object.values(CRASH_STEPS).flat();
const OP_OF_STEP = Object.fromEntries(Object.entries(CRASH_STEPS).flatMap(([op, steps]) => steps.map((step) => [step, op as TortureOp]))) as Record<CrashStep, TortureOp>;
/** Operations (aimed or preparing) the harness spends on steps the opening and the random phase missed. */
const MISSED_STEP_TRIES = 12;

/** A backup attempt: the image it reads and the time that identifies its restore point. */
interface Attempt {
  time: string;
  image: string;
  sha256: string;
}

interface ChildEnd {
  killed: boolean;
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  pid: number;
  /** From the lock appearing to the exit, for a run that finished (the random kill window). */
  workMs: number | null;
}

/** What the catalog must list after an operation: at least `required`, at most `allowed`. */
interface Expectation {
  required: Set<string>;
  allowed: Set<string>;
}

const recompressAt = (level: number): RecompressPolicy => ({ compression: { codec: 'zstd', level }, olderThanSeconds: 0 });

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/** Where read faults land: an object kind's files (opens and reads) or its listing. */
const FAULT_TARGETS: [string, readonly string[]][] = [
  ['^/catalog/[^/]+\\.json$', ['open', 'read']],
  ['^/maps/.+\\.map$', ['open', 'read']],
  ['^/locks/[^/]+\\.json$', ['open', 'read']],
  ['^/packs/[^/]+$', ['open', 'read']],
  ['^/index/[^/]+$', ['open', 'read']],
  ['^/(catalog|maps|locks|packs|index)$', ['readdir']],
];
/** What a command that met a read fault must say (invariant 6). */
const STOPPED = /^chunkvault: cannot read .+ \([A-Z]+\); stopped, nothing was changed$/m;
/** A gc that met a read error while compacting has already swept: it may not say nothing changed. */
const STOPPED_COMPACTING = /^chunkvault: cannot read .+ \([A-Z]+\); gc stopped while compacting: .* run gc again$/m;

/** Packs, catalog and maps, by name and content: LevelDB rewrites its own files whenever it is opened. */
async function contentDigest(store: string): Promise<string> {
  const hash = createHash('sha256');
  for (const part of ['packs', 'catalog', 'maps']) {
    const walk = async (dir: string): Promise<void> => {
      for (const entry of (await fs.readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) await walk(path);
        else hash.update(`${path}\0${sha256(await fs.readFile(path))}\n`);
      }
    };
    await walk(join(store, part));
  }
  return hash.digest('hex');
}
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

class Torture {
  readonly report: TortureReport;
  private readonly rng: () => number;
  /** Its own stream, so that choosing which gcs recompress leaves the rest of a seed's run as it was. */
  private readonly recompressRng: () => number;
  private readonly store: string;
  /** Backup attempts by time, while their restore point may be listed. */
  private readonly attempts = new Map<string, Attempt>();
  /** Restore points the catalog lists, by time. */
  private listed = new Set<string>();
  /** Restore points written out once by restore (each check reads every one back, on one pool). */
  private readonly restored = new Set<string>();
  private attemptNo = 0;
  /** What the next gc recompresses (packs of any age), or null: see chooseRecompression. */
  private recompress: RecompressPolicy | null = null;
  /** Typical work time of each operation, learnt from runs that finished. */
  private readonly workMs: Record<TortureOp, number> = { backup: 300, incremental: 300, prune: 20, gc: 200 };

  constructor(
    private readonly dir: string,
    private readonly options: TortureOptions,
  ) {
    this.rng = random(options.seed);
    this.recompressRng = random(options.seed ^ 0x5a5a5a5a);
    this.store = join(dir, 'store');
    this.report = {
      seed: options.seed,
      kills: 0,
      killsByOp: { backup: 0, incremental: 0, prune: 0, gc: 0 },
      killsByStep: Object.fromEntries(ALL_STEPS.map((s) => [s, 0])),
      randomKills: 0,
      recompressingGcs: 0,
      recompressingGcKills: 0,
      operations: 0,
      operationsFinished: 0,
      storeChecks: 0,
      restorePointsChecked: 0,
      bytesCompared: 0,
      leftoverChecks: 0,
      faultedOps: 0,
      faultedOpsStopped: 0,
      faultedOpsCrashed: 0,
      faultsInjected: 0,
      failures: [],
      seconds: 0,
      secondsOperating: 0,
      secondsChecking: 0,
      workDir: null,
    };
  }

  private get imageBytes(): number {
    return (this.options.imageMiB ?? 16) * MiB;
  }

  async run(): Promise<void> {
    await fs.mkdir(join(this.dir, 'images'), { recursive: true });
    await this.cli(['init', '--store', this.store, '--chunk-size', CHUNK_SIZE]);
    const limit = this.options.kills * 4 + 20;
    const going = (): boolean => this.report.failures.length < MAX_FAILURES;
    for (const [op, ending, level] of OPENING) {
      this.recompress = level === undefined ? null : recompressAt(level);
      if (going()) await this.operate(op, ending);
    }
    while (going() && this.report.kills < this.options.kills && this.report.operations < limit) {
      const op = this.nextOp();
      this.chooseRecompression(op);
      await this.operate(op, await this.ending(op));
    }
    // Read faults meet gc's compaction only: a recompression worker's read error is reported as damage.
    this.recompress = null;
    if (going()) await this.killAtMissedSteps(going);
    if (going() && (this.options.faults ?? 0) > 0) await this.underFaults(going);
    // The last word: a gc left to finish reclaims whatever the kills left behind, and recompresses.
    this.recompress = recompressAt(LAST_RECOMPRESS_LEVEL);
    if (going()) await this.operate('gc', 'finish');
    if (this.report.kills < this.options.kills) this.fail(`only ${this.report.kills} of ${this.options.kills} kills in ${this.report.operations} operations`);
  }

  /**
   * An empty store gets a backup first (prune refuses a name without restore points); prune
   * runs when it has something to remove, and always at twice KEEP_LAST restore points.
   */
  private nextOp(): TortureOp {
    if (this.listed.size === 0) return 'backup';
    if (this.listed.size >= 2 * KEEP_LAST) return 'prune';
    return this.pick(OP_WEIGHTS.filter(([op]) => op !== 'prune' || this.listed.size > KEEP_LAST));
  }

  /** Some gcs recompress too (seeded), so that kills at random moments and at gc's steps land in recompression. */
  private chooseRecompression(op: TortureOp): void {
    const recompresses = op === 'gc' && this.recompressRng() < RECOMPRESS_SHARE;
    this.recompress = recompresses ? recompressAt(RECOMPRESS_LEVELS[Math.floor(this.recompressRng() * RECOMPRESS_LEVELS.length)]) : null;
  }

  private pick<T>(weighted: [T, number][]): T {
    let x = this.rng() * weighted.reduce((sum, [, w]) => sum + w, 0);
    for (const [value, weight] of weighted) if ((x -= weight) < 0) return value;
    return weighted[weighted.length - 1][0];
  }

  /** Half the kills are injected, at the step (of those the operation will reach) killed least so far. */
  private async ending(op: TortureOp): Promise<Ending> {
    if (this.rng() >= KILL_SHARE) return 'finish';
    if (this.rng() < 0.5) return 'random';
    const steps = op === 'gc' ? await this.gcStepsAhead() : STEPS[op];
    const fewest = Math.min(...steps.map((s) => this.report.killsByStep[s]));
    const candidates = steps.filter((s) => this.report.killsByStep[s] === fewest);
    return candidates[Math.floor(this.rng() * candidates.length)];
  }

  /**
   * Whether a gc reaches its compaction steps depends on what earlier kills left (a killed gc's
   * copies may already have been consolidated), so the opening can miss one: each missed step
   * then gets an operation aimed at it, after finished incremental backups and prunes leave
   * partly dead packs for gc to rewrite. A step still missed after that is a failure.
   */
  private async killAtMissedSteps(going: () => boolean): Promise<void> {
    const missed = (): CrashStep[] => ALL_STEPS.filter((step) => this.report.killsByStep[step] === 0);
    for (let tries = 0; tries < MISSED_STEP_TRIES && going() && missed().length > 0; tries++) {
      const step = missed()[0];
      const op = OP_OF_STEP[step];
      if (op !== 'gc' || (await this.gcStepsAhead()).includes(step)) await this.operate(op, step);
      else await this.operate(this.listed.size > KEEP_LAST ? 'prune' : 'incremental', 'finish');
    }
    if (going() && missed().length > 0) this.fail(`never killed at ${missed().join(', ')} in ${MISSED_STEP_TRIES} tries`);
  }

  /** gc passes the consolidation and deletion steps only when it has something to delete, the compaction steps when it has packs to rewrite (compact or recompress). */
  private async gcStepsAhead(): Promise<CrashStep[]> {
    const plan = await gc(await Store.open(this.store), { dryRun: true, maxUnused: 0, recompress: this.recompress });
    const reached: Record<(typeof CRASH_STEPS.gc)[number], boolean> = {
      'gc-after-sweep': true,
      'gc-after-consolidation': plan.chunksFreed > 0 || plan.packsDeleted > 0,
      'gc-mid-delete': plan.packsDeleted > 0,
      'gc-after-copy': plan.packsRewritten > 0,
      'gc-after-segment': plan.packsRewritten > 0,
      'gc-after-index': plan.packsRewritten > 0,
    };
    return CRASH_STEPS.gc.filter((step) => reached[step]);
  }

  private fail(message: string): void {
    this.report.failures.push(message);
    this.options.log?.(`FAILURE: ${message}`);
  }

  private async operate(op: TortureOp, ending: Ending): Promise<void> {
    const what = `operation ${this.report.operations + 1} (${op}, ${ending})`;
    this.report.operations++;
    const { args, expect, attempt } = await this.prepare(op);
    const started = performance.now();
    const end = await this.runChild(op, args, ending);
    this.report.secondsOperating += (performance.now() - started) / 1000;
    const recompressing = op === 'gc' && this.recompress !== null;
    if (recompressing) this.report.recompressingGcs++;
    if (end.killed) {
      this.report.kills++;
      this.report.killsByOp[op]++;
      if (recompressing) this.report.recompressingGcKills++;
      if (ending === 'random') this.report.randomKills++;
      else this.report.killsByStep[ending]++;
    } else {
      this.report.operationsFinished++;
      if (end.code !== 0) return this.fail(`${what}: exited ${end.code}: ${end.stderr.trim()}`);
      if (end.workMs !== null) this.workMs[op] = 0.7 * this.workMs[op] + 0.3 * end.workMs;
    }
    this.narrow(expect, op, ending, end, attempt);
    const ok = await this.checkCatalog(what, expect);
    if (ok && (end.killed || op === 'gc')) await this.checkStore(what, end.killed ? end.pid : null);
    if (ok && !end.killed && op === 'gc') await this.checkNoLeftovers(what);
    await this.forgetUnlisted();
    this.options.log?.(`${what}: ${end.killed ? 'killed' : 'finished'}; ${this.listed.size} restore points; ${this.report.kills} kills`);
  }

  /** What a kill at an injected step, or a finished run, tells beyond the general bounds. */
  private narrow(expect: Expectation, op: TortureOp, ending: Ending, end: ChildEnd, attempt: Attempt | null): void {
    const finished = !end.killed;
    if (attempt && (finished || ending === 'backup-after-catalog')) expect.required.add(attempt.time);
    if (attempt && end.killed && ending !== 'random' && ending !== 'backup-after-catalog') expect.allowed.delete(attempt.time);
    if (op === 'prune' && finished) expect.allowed = new Set(expect.required);
  }

  /** `via`: the store path the command gets (the store itself, or faulty-fs serving it). */
  private async prepare(op: TortureOp, via = this.store): Promise<{ args: string[]; expect: Expectation; attempt: Attempt | null }> {
    const expect: Expectation = { required: new Set(this.listed), allowed: new Set(this.listed) };
    if (op === 'gc') {
      const recompress = this.recompress ? ['--recompress', formatCompression(this.recompress.compression), '--older-than', '0'] : [];
      return { args: ['gc', '--store', via, '--max-unused', '0', ...recompress], expect, attempt: null };
    }
    if (op === 'prune') {
      const plan = await planPrune(await Store.open(this.store), { last: KEEP_LAST }, { name: NAME });
      for (const decision of plan.points) if (decision.action === 'remove') expect.required.delete(decision.time);
      return { args: ['prune', '--store', via, '--name', NAME, '--keep-last', String(KEEP_LAST)], expect, attempt: null };
    }
    const parent = this.newest();
    const incremental = op === 'incremental' && parent !== null;
    const { attempt, changed } = await this.newImage(parent);
    expect.allowed.add(attempt.time);
    const args = ['backup', '--store', this.store, `disk=${attempt.image}`, '--name', NAME, '--time', attempt.time, '--threads', '1'];
    if (incremental) {
      const cbt = join(this.dir, 'images', `${this.attemptNo}.cbt.json`);
      await fs.writeFile(cbt, JSON.stringify({ changed }));
      args.push('--parent', await this.idOf(parent), '--changed', cbt);
    }
    return { args, expect, attempt };
  }

  /**
   * The fault phase: the store served through faulty-fs at <dir>/faulty; before each faulted
   * prune a backup (no faults) gives it something to remove, and every gc has the leftovers of
   * the prunes to reclaim.
   */
  private async underFaults(going: () => boolean): Promise<void> {
    const mountpoint = join(this.dir, 'faulty');
    await fs.mkdir(mountpoint, { recursive: true });
    const faulty = await startFaultyFs(this.store, mountpoint, join(this.dir, 'fault-rules.json'), this.options.seed);
    try {
      for (let i = 0; i < this.options.faults! && going(); i++) {
        const op: TortureOp = this.rng() < 0.5 ? 'prune' : 'gc';
        if (op === 'prune') await this.operate('backup', 'finish');
        await this.operateFaulted(op, faulty, mountpoint);
      }
    } finally {
      await faulty.stop();
    }
  }

  /** A few read faults at random: EIO or EMFILE, on opens, reads or listings, each with a chance. */
  private faultRules(): FaultRule[] {
    const count = 1 + Math.floor(this.rng() * 2);
    return Array.from({ length: count }, () => {
      const [path, ops] = this.pick(FAULT_TARGETS.map((target) => [target, 1]));
      return { path, ops: [...ops], errno: this.rng() < 0.5 ? 'EIO' : 'EMFILE', probability: 0.05 + this.rng() * 0.45 };
    });
  }

  private async operateFaulted(op: TortureOp, faulty: FaultyFs, via: string): Promise<void> {
    const what = `operation ${this.report.operations + 1} (${op}, read faults)`;
    this.report.operations++;
    this.report.faultedOps++;
    const { args, expect } = await this.prepare(op, via);
    const before = await contentDigest(this.store);
    const rules = this.faultRules();
    await faulty.setRules(rules);
    const started = performance.now();
    const end = await this.runChild(op, args, 'finish');
    this.report.secondsOperating += (performance.now() - started) / 1000;
    const injected = faulty.injected.length;
    this.report.faultsInjected += injected;
    await faulty.setRules([]);
    this.report.operationsFinished++;
    const faults = `${JSON.stringify(rules)}, ${injected} injected`;
    if (end.code === 0) {
      if (op === 'prune') expect.allowed = new Set(expect.required);
    } else if (end.code === 2 && STOPPED.test(end.stderr)) {
      this.report.faultedOpsStopped++;
      if ((await contentDigest(this.store)) !== before) this.fail(`${what}: said nothing was changed, but the store changed (${faults}): ${end.stderr.trim()}`);
      expect.required = new Set(this.listed);
    } else if (op === 'gc' && end.code === 2 && STOPPED_COMPACTING.test(end.stderr)) {
      this.report.faultedOpsStopped++;
      expect.required = new Set(this.listed);
    } else if (end.signal === 'SIGBUS') {
      this.report.faultedOpsCrashed++;
    } else this.fail(`${what}: exited ${end.code} without naming a store read (${faults}): ${end.stderr.trim()}`);
    const ok = await this.checkCatalog(what, expect);
    if (ok) await this.checkStore(what, end.signal === null ? null : end.pid);
    if (ok && end.code === 0 && op === 'gc') await this.checkNoLeftovers(what);
    await this.forgetUnlisted();
    this.options.log?.(`${what}: ${end.code === 0 ? 'finished' : `stopped (exit ${end.code})`}, ${injected} faults injected; ${this.listed.size} restore points`);
  }

  /** The newest listed backup attempt: the parent of the next image. */
  private newest(): Attempt | null {
    const times = Array.from(this.listed).sort();
    return times.length > 0 ? this.attempts.get(times[times.length - 1])! : null;
  }

  private async idOf(attempt: Attempt): Promise<string> {
    const { points } = await (await Store.open(this.store)).catalog.list();
    return points.find((p) => p.time === attempt.time)!.id;
  }

  /** The parent's image with a few ranges rewritten (random bytes or zeros); the ranges are its CBT list. */
  private async newImage(parent: Attempt | null): Promise<{ attempt: Attempt; changed: Range[] }> {
    const n = ++this.attemptNo;
    const image = parent ? await fs.readFile(parent.image) : this.baseImage();
    const changed: Range[] = [];
    const count = 1 + Math.floor(this.rng() * 5);
    for (let i = 0; i < count; i++) {
      const length = 1 + Math.floor(this.rng() * (image.byteLength / 6));
      const offset = Math.floor(this.rng() * (image.byteLength - length));
      const bytes = this.rng() < 0.2 ? Buffer.alloc(length) : seededBytes(`torture-${this.options.seed}-${n}-${i}`, length);
      bytes.copy(image, offset);
      changed.push({ offset, length });
    }
    const path = join(this.dir, 'images', `${n}.img`);
    await fs.writeFile(path, image);
    const time = new Date(Date.UTC(2026, 0, 1) + n * 3_600_000).toISOString();
    const attempt = { time, image: path, sha256: sha256(image) };
    this.attempts.set(time, attempt);
    return { attempt, changed };
  }

  /** Random data, a zero quarter, a compressible quarter. */
  private baseImage(): Buffer {
    const size = this.imageBytes;
    const image = seededBytes(`torture-${this.options.seed}-base`, size);
    image.fill(0, size / 2, (size * 3) / 4);
    Buffer.from('chunkvault torture: compressible text\n'.repeat(size / 128)).copy(image, (size * 3) / 4, 0, size / 4);
    return image;
  }

  private async cli(args: string[]): Promise<void> {
    const end = await this.runChild(null, args, 'finish');
    if (end.code !== 0) throw new Error(`chunkvault ${args.join(' ')} exited ${end.code}: ${end.stderr}`);
  }

  /**
   * Runs the CLI. A random kill comes a random part of the operation's typical work time
   * after its lock file appears, so it lands in the work rather than in Node's startup.
   */
  private runChild(op: TortureOp | null, args: string[], ending: Ending): Promise<ChildEnd> {
    const env = { ...process.env };
    delete env[CRASH_ENV];
    if (ending !== 'finish' && ending !== 'random') env[CRASH_ENV] = ending;
    const child = spawn(CLI, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    let lockSeen: number | null = null;
    let exited = false;
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) =>
      child.on('close', (code, signal) => {
        exited = true;
        done({ code, signal });
      }),
    );
    const watch = async (): Promise<void> => {
      const prefix = `${child.pid}-`;
      while (!exited && lockSeen === null) {
        const names = await fs.readdir(join(this.store, 'locks')).catch(() => [] as string[]);
        if (names.some((n) => n.startsWith(prefix))) lockSeen = performance.now();
        else await sleep(2);
      }
      if (ending !== 'random' || exited || op === null) return;
      await sleep(this.rng() * RANDOM_SPAN * this.workMs[op]);
      if (!exited) child.kill('SIGKILL');
    };
    const watching = watch();
    return exit.then(async ({ code, signal }) => {
      await watching;
      const killed = signal === 'SIGKILL';
      return { killed, code, signal, stderr, pid: child.pid!, workMs: !killed && lockSeen !== null ? performance.now() - lockSeen : null };
    });
  }

  private async listedTimes(): Promise<{ times: Set<string>; damaged: string[] }> {
    const { points, damaged } = await (await Store.open(this.store)).catalog.list();
    return { times: new Set(points.map((p) => p.time)), damaged };
  }

  /** The catalog lists what was committed and nothing else; the model follows it. */
  private async checkCatalog(what: string, expect: Expectation): Promise<boolean> {
    let listed: { times: Set<string>; damaged: string[] };
    try {
      listed = await this.listedTimes();
    } catch (err) {
      this.fail(`${what}: the store does not open: ${(err as Error).message}`);
      return false;
    }
    const missing = [...expect.required].filter((t) => !listed.times.has(t));
    const unexpected = [...listed.times].filter((t) => !expect.allowed.has(t));
    this.listed = listed.times;
    if (listed.damaged.length > 0) this.fail(`${what}: damaged catalog entries ${listed.damaged.join(', ')}`);
    if (missing.length > 0) this.fail(`${what}: restore points of ${missing.join(', ')} are no longer listed`);
    if (unexpected.length > 0) this.fail(`${what}: unexpected restore points of ${unexpected.join(', ')}`);
    return listed.damaged.length === 0 && missing.length === 0 && unexpected.length === 0;
  }

  /** verify --read-data, every restore point byte-identical, the dead process's lock cleared. */
  private async checkStore(what: string, killedPid: number | null): Promise<void> {
    this.report.storeChecks++;
    const started = performance.now();
    try {
      const store = await Store.open(this.store);
      if (killedPid !== null && (await store.locks()).some((l) => l.pid === killedPid)) this.fail(`${what}: the lock of killed pid ${killedPid} was not cleared`);
      const leftLocks = (await fs.readdir(join(this.store, 'locks'))).filter((n) => n.startsWith(`${killedPid}-`));
      if (killedPid !== null && leftLocks.length > 0) this.fail(`${what}: lock files of killed pid ${killedPid} remain: ${leftLocks.join(', ')}`);
      const report = await verify(store, undefined, { readData: true, threads: 1 });
      if (!report.clean) {
        const first = report.damaged[0] ? `${report.damaged[0].restorePoint} disk ${report.damaged[0].disk} ${JSON.stringify(report.damaged[0].ranges[0])}` : '';
        this.fail(`${what}: verify --read-data: ${report.damaged.length} damaged disks (first: ${first}), ${report.damagedCatalog.length} damaged catalog entries`);
      }
      const points = (await store.catalog.list()).points;
      for (const [point, data] of await readPoints(store, points)) this.compare(what, point, data, 'read back');
      for (const point of points.filter((p) => !this.restored.has(p.time))) {
        const out = join(this.dir, 'restored.img');
        await restore(store, point.id, out, { threads: 1 });
        this.compare(what, point, await fs.readFile(out), 'restored');
        this.restored.add(point.time);
      }
    } catch (err) {
      this.fail(`${what}: ${(err as Error).message}`);
    }
    this.report.secondsChecking += (performance.now() - started) / 1000;
  }

  private compare(what: string, point: RestorePoint, data: Buffer, how: string): void {
    this.report.restorePointsChecked++;
    this.report.bytesCompared += data.byteLength;
    if (sha256(data) !== this.attempts.get(point.time)!.sha256) this.fail(`${what}: restore point ${point.id} (${point.time}) ${how} is not byte-identical`);
  }

  /** After a gc that finished, a dry run (recompressing as it did) finds nothing: every leftover of earlier kills is gone. */
  private async checkNoLeftovers(what: string): Promise<void> {
    this.report.leftoverChecks++;
    const plan = await gc(await Store.open(this.store), { dryRun: true, maxUnused: 0, recompress: this.recompress });
    const left = { chunks: plan.chunksFreed, packsToDelete: plan.packsDeleted, packsToRewrite: plan.packsRewritten, orphanMaps: plan.orphanMapsRemoved };
    if (Object.values(left).some((n) => n > 0)) this.fail(`${what}: after gc a dry run still finds leftovers: ${JSON.stringify(left)}`);
  }

  /** Images of attempts that are not listed are never needed again (a restore point never comes back). */
  private async forgetUnlisted(): Promise<void> {
    for (const [time, attempt] of this.attempts) {
      if (this.listed.has(time)) continue;
      this.attempts.delete(time);
      await fs.rm(attempt.image, { force: true });
    }
  }
}

/** Decoded chunks are not kept: every read goes to the packs. */
const NO_CACHE: ChunkCache = { get: () => undefined, has: () => false, set: (_hex, data) => [data] };
const READ_BYTES = 4 * MiB;

/**
 * Every disk byte of each restore point through the engine's read path (map, index, pack,
 * decode, re-hash: what restore and the mount do), on one worker pool for all of them.
 */
async function readPoints(store: Store, points: RestorePoint[]): Promise<[RestorePoint, Buffer][]> {
  const pool = new WorkerPool(store.backend, 1, store.keys);
  const fetcher = new ChunkFetcher(pool, NO_CACHE);
  try {
    const read: [RestorePoint, Buffer][] = [];
    for (const point of points) {
      const reader = await DiskReader.open(store, point, point.disks[0].label, fetcher);
      const data = Buffer.alloc(reader.size);
      for (let at = 0; at < reader.size; at += READ_BYTES) await reader.read(data.subarray(at), Math.min(READ_BYTES, reader.size - at), at);
      read.push([point, data]);
    }
    return read;
  } finally {
    await pool.close();
  }
}

export async function runTorture(options: TortureOptions): Promise<TortureReport> {
  const started = performance.now();
  const dir = options.dir ? resolve(options.dir) : await fs.mkdtemp(join(tmpdir(), 'cv-torture-'));
  const torture = new Torture(dir, options);
  try {
    await torture.run();
  } catch (err) {
    torture.report.failures.push(`harness: ${(err as Error).stack ?? String(err)}`);
  }
  const report = torture.report;
  report.seconds = (performance.now() - started) / 1000;
  const keep = options.dir !== undefined || report.failures.length > 0;
  report.workDir = keep ? dir : null;
  if (!keep) await fs.rm(dir, { recursive: true, force: true });
  return report;
}

export function describeTorture(r: TortureReport): string[] {
  const byOp = OPS.map((op) => `${op} ${r.killsByOp[op]}`).join(', ');
  const bySteps = Object.entries(r.killsByStep).map(([step, n]) => `${step} ${n}`).join(', ');
  return [
    `torture, seed ${r.seed}: ${r.kills} kills (${byOp}) in ${r.operations} operations (${r.operationsFinished} finished), ${r.seconds.toFixed(0)} s (${r.secondsOperating.toFixed(0)} s operating, ${r.secondsChecking.toFixed(0)} s checking)`,
    `  random moments: ${r.randomKills}; injected steps: ${bySteps}`,
    `  gcs recompressing: ${r.recompressingGcs} (${r.recompressingGcKills} killed)`,
    `  store checks ${r.storeChecks}, restore points checked ${r.restorePointsChecked}, bytes compared ${r.bytesCompared} (${formatBytes(r.bytesCompared)}), gc leftover checks ${r.leftoverChecks}`,
    `  under read faults: ${r.faultedOps} prunes and gcs (${r.faultedOpsStopped} stopped on a read error, ${r.faultedOpsCrashed} died of SIGBUS from LevelDB's mmap), ${r.faultsInjected} faults injected`,
    ...r.failures.map((f) => `  FAILURE ${f}`),
    `failures: ${r.failures.length}${r.workDir ? ` (work directory kept: ${r.workDir})` : ''}`,
  ];
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      kills: { type: 'string', default: '200' },
      faults: { type: 'string', default: '0' },
      seed: { type: 'string', default: '1' },
      'image-mib': { type: 'string', default: '16' },
      dir: { type: 'string' },
      json: { type: 'boolean', default: false },
      quiet: { type: 'boolean', default: false },
    },
  });
  const number = (flag: string, text: string, least = 1): number => {
    const n = Number(text);
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < least) throw new Error(`--${flag}: '${text}' is not a ${least === 0 ? 'whole number' : 'positive whole number'}`);
    return n;
  };
  const report = await runTorture({
    kills: number('kills', values.kills!),
    faults: number('faults', values.faults!, 0),
    seed: number('seed', values.seed!),
    imageMiB: number('image-mib', values['image-mib']!),
    dir: values.dir,
    log: values.quiet ? undefined : (line) => process.stderr.write(`[torture] ${line}\n`),
  });
  if (values.json) process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  else process.stdout.write(describeTorture(report).join('\n') + '\n');
  process.exitCode = report.failures.length > 0 ? 1 : 0;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err: Error) => {
    process.stderr.write(`torture: ${err.message}\n`);
    process.exitCode = 2;
  });
}
