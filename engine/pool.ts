/**
 * The worker pool. Workers load dist/engine/worker-entry.cjs (which requires the worker bundle) by absolute
 * path, also when this module runs from TypeScript source under tests or from the CLI bundle.
 */
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { Piscina } from 'piscina';
import { packageRoot } from './package-root.js';
import type { Backend, BackendSpec, BackendStats } from '../store/backend/backend.js';
import type { StoreKeys } from '../store/crypto.js';
import type {
  BackupResult,
  BackupTask,
  DecodeResult,
  DecodeTask,
  PatchResult,
  PatchTask,
  RecompressResult,
  RecompressTask,
  RestoreResult,
  RestoreTask,
  KeySpec,
  Task,
  VerifyResult,
  VerifyTask,
} from './tasks.js';

function workerPath(): string {
  return join(packageRoot(import.meta.url), 'dist', 'engine', 'worker-entry.cjs');
}

export function defaultThreads(): number {
  return availableParallelism();
}

export class WorkerPool {
  private readonly piscina: Piscina;
  /** One load task per thread, sent as the pool starts; see the constructor. */
  private readonly loaded: Promise<unknown>;

  /** How each thread opens the store's backend for itself to read packs. */
  private readonly backend: BackendSpec;
  /** Where the threads' requests are counted, when the pool was given the backend itself. */
  private readonly counted: Backend | null;

  /** An encrypted store's cipher and master key, from which each thread derives its keys; null for a plain store. */
  private readonly keys: KeySpec | null;

  constructor(backend: Backend | BackendSpec, readonly threads = defaultThreads(), keys: StoreKeys | null = null) {
    this.backend = 'spec' in backend ? backend.spec : backend;
    this.keys = keys && { cipher: keys.cipher, master: keys.master };
    this.counted = 'spec' in backend ? backend : null;
    this.piscina = new Piscina({
      filename: workerPath(),
      minThreads: threads,
      maxThreads: threads,
      // Keep threads for the whole job; the default of 0 would churn them between tasks.
      idleTimeout: 60_000,
      // Not the parent's loaders (tap's TypeScript hooks cost seconds per pool): workers run compiled code.
      execArgv: [],
      // Atomics.wait keeps a busy worker from ever returning to its event loop, and native
      // buffers (lz4-napi's output) are only freed by finalizers that run there: with it,
      // RSS grew by ~0.75 MB per chunk compressed.
      atomics: 'disabled',
    });
    // Each thread loads its code (~50 ms) as the pool starts, not on its first task, while the
    // caller plans the job. close() waits for those loads: a thread terminated while a native
    // addon registers aborts the whole process.
    this.loaded = Promise.allSettled(Array.from({ length: threads }, () => this.run({ op: 'load' })));
  }

  /** Enough tasks in flight to keep every worker busy while the main thread handles results. */
  get window(): number {
    return this.threads * 2;
  }

  private async run<R>(task: Task, transferList?: ArrayBuffer[]): Promise<R> {
    const { result, stats } = (await this.piscina.run({ task, backend: this.backend, keys: this.keys }, { transferList })) as { result: R; stats: BackendStats | null };
    if (stats !== null) this.counted?.addStats?.(stats);
    return result;
  }

  backup(task: BackupTask): Promise<BackupResult> {
    return this.run(task, task.out ? [task.out] : undefined);
  }
  restore(task: RestoreTask): Promise<RestoreResult> {
    return this.run(task);
  }
  patch(task: PatchTask): Promise<PatchResult> {
    return this.run(task);
  }
  verify(task: VerifyTask): Promise<VerifyResult> {
    return this.run(task);
  }
  decode(task: DecodeTask): Promise<DecodeResult> {
    return this.run(task, task.outs.filter((out): out is ArrayBuffer => out !== null));
  }
  recompress(task: RecompressTask): Promise<RecompressResult> {
    return this.run(task, task.out ? [task.out] : undefined);
  }

  async close(): Promise<void> {
    await this.loaded;
    await this.piscina.destroy();
  }
}

/**
 * Runs tasks with at most `window` of those that `occupies` (default: all) in flight and
 * hands their results to `consume` one at a time, in submission order, so consumers never
 * interleave. Tasks that give the pool no work (a run of unchanged slots) must not occupy
 * the window, or they starve the workers of the tasks that do.
 */
export async function pipeline<T, R>(
  tasks: Iterable<T>,
  window: number,
  start: (task: T) => Promise<R>,
  consume: (result: R, task: T) => Promise<void>,
  occupies: (task: T) => boolean = () => true,
): Promise<void> {
  const inFlight: { task: T; result: Promise<R>; occupying: boolean }[] = [];
  let occupied = 0;
  const drainOne = async (): Promise<void> => {
    const next = inFlight.shift()!;
    if (next.occupying) occupied--;
    await consume(await next.result, next.task);
  };
  try {
    for (const task of tasks) {
      const result = start(task);
      result.catch(() => undefined); // observed in drainOne; avoid unhandled rejections meanwhile
      const occupying = occupies(task);
      inFlight.push({ task, result, occupying });
      if (occupying) occupied++;
      while (occupied >= window) await drainOne();
    }
    while (inFlight.length > 0) await drainOne();
  } finally {
    await Promise.allSettled(inFlight.map((f) => f.result));
  }
}
