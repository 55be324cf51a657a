import type { Command } from 'commander';
import { restore } from '../../engine/index.js';
import { formatBytes } from '../../store/size.js';
import { printJson, printLines } from '../output.js';
import { progress } from '../progress.js';
import { openStoreFrom, positiveInt, withStore, type StoreOptions } from '../store-option.js';

export function register(program: Command): void {
  withStore(program.command('restore').description('write a disk of a restore point to a file or block device'))
    .argument('<ref>', 'restore point: id, id prefix, latest or NAME@latest')
    .argument('<target>', 'file (created or overwritten) or block device')
    .option('--disk <label>', 'which disk, when the restore point has several')
    .option('--threads <n>', 'worker threads (default: one per core)', positiveInt('--threads'))
    .option('--json', 'machine-readable output')
    .action(async (ref: string, target: string, options: StoreOptions & { disk?: string; threads?: number; json?: boolean }) => {
      const store = await openStoreFrom(options);
      const bar = progress('restore');
      const summary = await restore(store, ref, target, { disk: options.disk, threads: options.threads, onProgress: (d, t) => bar.update(d, t) });
      bar.done();
      if (options.json) return printJson(summary);
      const rate = summary.size / 1e6 / Math.max(summary.seconds, 1e-9);
      printLines([`restored ${summary.id} disk ${summary.disk} (${formatBytes(summary.size)}) to ${summary.target} in ${summary.seconds.toFixed(2)} s, ${rate.toFixed(0)} MB/s`]);
    });
}
