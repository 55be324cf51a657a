/**
 * Issue 19's goal, as a plug-in of `npm run bench` (see context.ts): backup and restore of the
 * VM-like disk (3 GiB in the default profile) into an encrypted store (each cipher) and a
 * plain one, alternately for --rounds rounds, so that each ratio compares runs under the same
 * load; goal: encrypted >= 0.8x plain throughput, judged on the median ratio. The AEADs' and
 * keyed BLAKE3's single-core speeds are in the limits table (limits.ts).
 * Ratios are of wall times of whole processes (startup and the passphrase's scrypt included)
 * and of the engine's own seconds (--json `seconds`: neither included), which is what a small
 * workload's throughput shows.
 */
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { CLI } from './chunkvault.js';
import type { BenchContext } from './context.js';
import { measureCommand, readWarm, type CommandRun } from './measure.js';
import { removeRepo } from './peers.js';
import { CIPHERS, type Cipher } from '../store/crypto.js';

const GOAL = 0.8;
const PASSWORD = 'bench passphrase';
type Variant = 'plain' | Cipher;
interface Round {
  backupSeconds: number;
  restoreSeconds: number;
  backupEngineSeconds: number;
  restoreEngineSeconds: number;
  identical: boolean;
}
const VARIANTS: Variant[] = ['plain', ...CIPHERS];

function cv(args: string[]): Promise<CommandRun> {
  return measureCommand(CLI, args, { env: { CHUNKVAULT_PASSWORD: PASSWORD } });
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

/** One backup and one warm restore into a new store of `variant`: their wall times, and whether the restore is the disk. */
async function roundOf(context: BenchContext, dir: string, variant: Variant): Promise<Round> {
  const store = join(dir, `store-${variant}`);
  const target = join(dir, 'restored.img');
  await removeRepo(store);
  await cv(['init', '--store', store, ...(variant === 'plain' ? [] : ['--encryption', variant])]);
  const backup = await cv(['backup', '--store', store, '--name', 'vm', `disk=${context.workload.base}`, '--json']);
  readWarm(store);
  const restore = await cv(['restore', '--store', store, 'vm@latest', target, '--json']);
  const identical = spawnSync('cmp', ['-s', target, context.workload.base]).status === 0;
  await fs.rm(target, { force: true });
  await removeRepo(store);
  const engineSeconds = (run: CommandRun): number => (JSON.parse(run.stdout) as { seconds: number }).seconds;
  return { backupSeconds: backup.wallSeconds, restoreSeconds: restore.wallSeconds, backupEngineSeconds: engineSeconds(backup), restoreEngineSeconds: engineSeconds(restore), identical };
}

export async function encryptedBackupRestore(context: BenchContext): Promise<Record<string, unknown>> {
  const dir = join(context.workDir, 'encryption');
  await fs.mkdir(dir, { recursive: true });
  const { size } = context.workload;
  const runs = new Map<Variant, Round[]>(VARIANTS.map((v) => [v, []]));
  try {
    for (let round = 0; round < context.rounds; round++) {
      for (const variant of VARIANTS) {
        context.log(`encryption: round ${round + 1}, ${variant}`);
        runs.get(variant)!.push(await roundOf(context, dir, variant));
      }
    }
  } finally {
    await removeRepo(dir);
  }
  const plain = runs.get('plain')!;
  const ratios = (variant: Variant, of: Exclude<keyof Round, 'identical'>): number => median(runs.get(variant)!.map((r, i) => plain[i][of] / r[of]));
  return {
    workload: context.workload.spec.name,
    diskBytes: size,
    rounds: context.rounds,
    variants: VARIANTS.map((variant) => {
      const rs = runs.get(variant)!;
      return {
        variant,
        backupMBps: size / 1e6 / median(rs.map((r) => r.backupSeconds)),
        restoreMBps: size / 1e6 / median(rs.map((r) => r.restoreSeconds)),
        backupOfPlain: ratios(variant, 'backupSeconds'),
        restoreOfPlain: ratios(variant, 'restoreSeconds'),
        backupEngineOfPlain: ratios(variant, 'backupEngineSeconds'),
        restoreEngineOfPlain: ratios(variant, 'restoreEngineSeconds'),
        restoredIdentical: rs.every((r) => r.identical),
        goalAtLeast0_8xPlain: variant === 'plain' ? null : ratios(variant, 'backupSeconds') >= GOAL && ratios(variant, 'restoreSeconds') >= GOAL,
      };
    }),
  };
}
