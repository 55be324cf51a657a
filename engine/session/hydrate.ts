/**
 * Hydration: copies the restore point's blocks the TARGET lacks into it, in disk order, one
 * chunk's worth per step, a few steps at once so that every worker writes (a worker decodes a
 * whole chunk straight into TARGET, as restore does). Guest I/O goes first: a step starts only
 * while no guest read or write is under way, and `--max-rate` paces the steps (engine/throttle.ts). The bitmap is
 * saved every SYNC_BYTES or SYNC_MS, whichever comes first, so a kill -9 costs at most that
 * much copying again on --resume.
 */
import { performance } from 'node:perf_hooks';
import { setImmediate as yieldToIo } from 'node:timers/promises';
import { Throttle, type ThrottleLimits } from '../throttle.js';
import type { CowDisk } from './cow-disk.js';

const SYNC_BYTES = 64 * 1024 * 1024;
const SYNC_MS = 1000;
/** Blocks of zero slots one step marks at most: a guest write there waits for no longer than a step. */
const ZERO_RUN_BLOCKS = 16 * 1024;

export interface HydrationProgress {
  /** Bytes of disk this run copied (or found zero) into TARGET. */
  bytesHydrated: number;
  /** Bytes of disk TARGET holds now, written by the guest or hydrated, in any run. */
  bytesPresent: number;
  size: number;
  seconds: number;
  complete: boolean;
}

export interface HydrationOptions {
  limits: ThrottleLimits | null;
  /** TARGET reads zero wherever nothing was written (a file the session created): zero blocks need no write. */
  skipZeros: boolean;
  /** Bytes per step: the store's chunk size, so a step decodes one chunk. */
  stepBytes: number;
  /** Steps under way at once: enough to keep the pool's workers busy, few enough that a guest read queues behind little. */
  parallelSteps: number;
  onProgress(progress: HydrationProgress): void;
}

export class Hydration {
  private stopping = false;
  private bytesHydrated = 0;
  private readonly started = performance.now();
  readonly finished: Promise<HydrationProgress>;

  constructor(
    private readonly disk: CowDisk,
    private readonly options: HydrationOptions,
  ) {
    this.finished = this.run();
  }

  /** Stops after the step under way and saves what was copied. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.finished.catch(() => undefined);
  }

  progress(): HydrationProgress {
    const { disk } = this;
    const present = Math.min(disk.size, disk.present.count * disk.blockSize);
    return { bytesHydrated: this.bytesHydrated, bytesPresent: present, size: disk.size, seconds: (performance.now() - this.started) / 1000, complete: disk.present.complete };
  }

  /** The last block of the run of zero steps after the one ending at `last`, at most ZERO_RUN_BLOCKS long. */
  private zeroRunEnd(last: number, stepBlocks: number): number {
    const { disk } = this;
    const limit = Math.min(disk.blocks - 1, last + ZERO_RUN_BLOCKS);
    while (last < limit) {
      const next = Math.min(limit, last + stepBlocks);
      if (!disk.baseIsZero(last + 1, next)) break;
      last = next;
    }
    return last;
  }

  private async run(): Promise<HydrationProgress> {
    const { disk } = this;
    const throttle = this.options.limits ? new Throttle(this.options.limits) : null;
    const stepBlocks = Math.max(1, Math.ceil(this.options.stepBytes / disk.blockSize));
    let unsaved = 0;
    let savedAt = performance.now();
    // One save at a time runs beside the copying: it covers the steps finished before it began.
    let saving: Promise<void> | null = null;
    const copying = new Set<Promise<void>>();
    let failed: { err: unknown } | null = null;
    for (let first = 0, last = -1; first < disk.blocks && !this.stopping && !failed; first = last + 1) {
      last = Math.min(disk.blocks, first + stepBlocks) - 1;
      if (disk.present.hasAll(first, last)) continue;
      // Zero slots onto a file that reads zero are only marked, a run of them in one step: no I/O to pace or to yield for.
      const zeros = this.options.skipZeros && disk.baseIsZero(first, last);
      if (zeros) last = this.zeroRunEnd(last, stepBlocks);
      else {
        await throttle?.admit(disk.bytesOf(first, last));
        // Requests the kernel has queued are dispatched before the next step is looked at.
        await yieldToIo();
        await disk.guestIdle();
      }
      while (copying.size >= this.options.parallelSteps) await Promise.race(copying);
      const step: Promise<void> = disk
        .hydrate(first, last, this.options.skipZeros)
        .then(
          (copied) => {
            this.bytesHydrated += copied;
            unsaved += copied;
          },
          (err: unknown) => {
            failed ??= { err };
          },
        )
        .finally(() => copying.delete(step));
      copying.add(step);
      if (!saving && (unsaved >= SYNC_BYTES || performance.now() - savedAt >= SYNC_MS)) {
        unsaved = 0;
        savedAt = performance.now();
        saving = disk.sync();
        // A failed save is kept: it stops hydration where it is awaited (below, or at the end).
        saving.then(() => (saving = null), () => undefined);
      }
      if (saving && unsaved >= SYNC_BYTES) await saving;
      this.options.onProgress(this.progress());
    }
    await Promise.all(copying);
    await saving;
    if (failed) throw (failed as { err: unknown }).err;
    await disk.sync();
    const done = this.progress();
    this.options.onProgress(done);
    return done;
  }
}
