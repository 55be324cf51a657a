/**
 * Issue 18 point 4's goals, as a plug-in of `npm run bench` (see context.ts), on the VM-like
 * disk (3 GiB in the default profile) and copies of it with 1% and 10% of its 1 MiB slots
 * rewritten:
 * - onto: `restore COPY TARGET --onto BASE` onto a target holding the base disk, against a
 *   full restore of the same copy into a new file; goals at 1%: >= 10x faster, bytes written
 *   <= 1.5% of the disk.
 * - compare: `restore REF TARGET --compare` of a target holding REF's disk already, and of one
 *   1% apart, against `cat TARGET > /dev/null`; both cold (the page cache dropped before each,
 *   where permitted; else both warm); goal: >= 0.8x cat's speed.
 * Times are wall times of whole processes, startup included, for every command. Every timed
 * restore reads the store warm, the full one as the incremental ones.
 */
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { BenchContext } from './context.js';
import { dropPageCache } from './limits.js';
import { measureCommand, readWarm } from './measure.js';
import { removeRepo } from './peers.js';
import { MiB, random, seededBytes } from './workload.js';

/** The store's default chunk size: the slots a share of changes is counted in. */
const SLOT = MiB;
const SHARES = [0.01, 0.1] as const;

interface RestoreJson {
  /** The engine's own time, process startup left out. */
  seconds: number;
  bytesRead: number;
  bytesWritten: number;
  bytesPunched: number;
  slotsWritten: number;
}

/** A copy of `base` with `share` of its slots, drawn by a seeded PRNG, rewritten with random bytes. */
async function rewrittenCopy(base: string, out: string, share: number, size: number): Promise<number> {
  spawnSync('cp', ['--sparse=always', base, out]);
  const slots = Math.ceil(size / SLOT);
  const order = Array.from({ length: slots }, (_, i) => i);
  const next = random(1804 + Math.round(share * 1000));
  for (let i = slots - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const chosen = order.slice(0, Math.round(share * slots));
  const handle = await fs.open(out, 'r+');
  try {
    for (const slot of chosen) {
      const length = Math.min(SLOT, size - slot * SLOT);
      await handle.write(seededBytes(`rollback-${share}-${slot}`, length), 0, length, slot * SLOT);
    }
  } finally {
    await handle.close();
  }
  return chosen.length;
}

const identical = (a: string, b: string): boolean => spawnSync('cmp', ['-s', a, b]).status === 0;

/** A restore with --json: its wall time and what it says it took, read and wrote. */
async function restoreRun(context: BenchContext, store: string, args: string[]): Promise<RestoreJson & { wallSeconds: number }> {
  const run = await context.cli(['restore', '--store', store, ...args, '--json']);
  const { seconds, bytesRead, bytesWritten, bytesPunched, slotsWritten } = JSON.parse(run.stdout) as RestoreJson;
  return { wallSeconds: run.wallSeconds, seconds, bytesRead, bytesWritten, bytesPunched, slotsWritten };
}

/** A restore that reads the store warm, as every timed restore does. */
function warmRestore(context: BenchContext, store: string, args: string[]): Promise<RestoreJson & { wallSeconds: number }> {
  readWarm(store);
  return restoreRun(context, store, args);
}

async function backupId(context: BenchContext, store: string, image: string): Promise<string> {
  return (JSON.parse((await context.cli(['backup', '--store', store, '--name', 'vm', `disk=${image}`, '--json'])).stdout) as { id: string }).id;
}

export async function rollbackRestore(context: BenchContext): Promise<Record<string, unknown>> {
  const { base, size } = context.workload;
  const dir = join(context.workDir, 'rollback');
  const store = join(dir, 'store');
  const target = join(dir, 'target.img');
  await removeRepo(dir);
  await fs.mkdir(dir, { recursive: true });
  try {
    const copies = SHARES.map((share) => ({ share, path: join(dir, `changed-${share * 100}pct.img`) }));
    const changedSlots = [];
    for (const copy of copies) changedSlots.push(await rewrittenCopy(base, copy.path, copy.share, size));
    await context.cli(['init', '--store', store]);
    context.log(`rollback: backups of ${context.workload.spec.name} and its copies with ${SHARES.map((s) => `${s * 100}%`).join(' and ')} of the slots rewritten`);
    const baseId = await backupId(context, store, base);
    const ids = [];
    for (const copy of copies) ids.push(await backupId(context, store, copy.path));
    await context.cli(['restore', '--store', store, baseId, target]);

    const onto = [];
    for (const [i, copy] of copies.entries()) {
      context.log(`rollback: full restore and --onto with ${copy.share * 100}% changed`);
      const fresh = join(dir, 'full.img');
      const full = await warmRestore(context, store, [ids[i], fresh]);
      await fs.rm(fresh, { force: true });
      const { wallSeconds: ontoSeconds, seconds: ontoEngineSeconds, ...incremental } = await warmRestore(context, store, [ids[i], target, '--onto', baseId]);
      const restoredIdentical = identical(target, copy.path);
      await context.cli(['restore', '--store', store, baseId, target, '--onto', ids[i]]);
      const speedup = full.wallSeconds / ontoSeconds;
      const writtenShare = incremental.bytesWritten / size;
      onto.push({
        changedShare: copy.share,
        changedSlots: changedSlots[i],
        fullSeconds: full.wallSeconds,
        ontoSeconds,
        speedup,
        // Startup left out of both (a fixed ~0.3 s of node and module loading, more on a loaded machine).
        fullEngineSeconds: full.seconds,
        ontoEngineSeconds,
        engineSpeedup: full.seconds / ontoEngineSeconds,
        ...incremental,
        writtenShare,
        restoredIdentical,
        goalAtLeast10x: copy.share === 0.01 ? speedup >= 10 : null,
        goalWrittenAtMost1_5Percent: copy.share === 0.01 ? writtenShare <= 0.015 : null,
      });
    }

    context.log('rollback: --compare against cat of the target, cold');
    const cacheDropped = await dropPageCache();
    const cat = await measureCommand('sh', ['-c', 'cat "$1" > /dev/null', 'sh', target]);
    await dropPageCache();
    const same = await restoreRun(context, store, [baseId, target, '--compare']);
    await dropPageCache();
    const apart = await restoreRun(context, store, [ids[0], target, '--compare']);
    const compareIdentical = identical(target, copies[0].path);
    const speedOfCat = (seconds: number): number => cat.wallSeconds / seconds;
    return {
      workload: context.workload.spec.name,
      diskBytes: size,
      onto,
      compare: {
        cold: cacheDropped,
        catSeconds: cat.wallSeconds,
        unchanged: { ...same, speedOfCat: speedOfCat(same.wallSeconds) },
        onePercentApart: { ...apart, speedOfCat: speedOfCat(apart.wallSeconds) },
        restoredIdentical: compareIdentical,
        goalAtLeast0_8xCat: speedOfCat(same.wallSeconds) >= 0.8,
      },
      notes: cacheDropped ? [] : ['the page cache could not be dropped: cat and --compare both read the target warm'],
    };
  } finally {
    await removeRepo(dir);
  }
}
