/**
 * What the benchmark hands to the measurement modules that plug into it (bench/mount.ts,
 * bench/incremental.ts, bench/retention.ts): each exported async function is called with
 * this context and returns a plain object (or array of records) of figures for the report.
 */
import type { CommandRun } from './measure.js';
import type { Limits } from './limits.js';
import type { DiskWorkload, Profile } from './workload.js';

export interface BenchContext {
  profile: Profile;
  /** Scratch space for stores, mountpoints and restores; generated workloads live here too. */
  workDir: string;
  /** The VM-like disk (ext4 image, its changed image and CBT file), or the synthetic one without root. */
  workload: DiskWorkload;
  workloads: DiskWorkload[];
  limits: Limits | null;
  /** How many times a plug-in repeats a measurement it reports as a median (--rounds). */
  rounds: number;
  /** Runs the real chunkvault CLI with measurement (wall, CPU, peak RSS); throws on a non-zero exit. */
  cli(args: string[]): Promise<CommandRun>;
  log(message: string): void;
}

export const PLUGIN_MODULES = ['mount', 'incremental', 'retention', 'rollback', 'files', 'views', 'recover', 'encryption'] as const;
