/**
 * Crash injection for tests and the torture harness: CHUNKVAULT_TEST_CRASH_AT=<step> makes
 * the process SIGKILL itself when it reaches that step, so each durable step of a commit
 * (backup, prune, gc) is proven crash-safe exactly there, not only where a random kill lands.
 */
export const CRASH_ENV = 'CHUNKVAULT_TEST_CRASH_AT';

/** The steps a command passes, by command: what the torture harness injects. */
export const CRASH_STEPS = {
  backup: ['backup-after-packs', 'backup-after-segment', 'backup-after-index', 'backup-after-maps', 'backup-after-catalog'],
  prune: ['prune-after-catalog'],
  gc: ['gc-after-sweep', 'gc-after-consolidation', 'gc-mid-delete', 'gc-after-copy', 'gc-after-segment', 'gc-after-index'],
} as const;

/** Steps only tests inject: a restore killed with some slots written (it touches no store state the torture checks). */
export const TEST_CRASH_STEPS = ['restore-mid-write'] as const;

export type CrashStep = (typeof CRASH_STEPS)[keyof typeof CRASH_STEPS][number] | (typeof TEST_CRASH_STEPS)[number];

export function crashPoint(step: CrashStep): void {
  if (process.env[CRASH_ENV] === step) process.kill(process.pid, 'SIGKILL');
}
