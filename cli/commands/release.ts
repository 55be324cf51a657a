import type { Command } from 'commander';
import { release } from '../../engine/index.js';
import { printJson, printLines } from '../output.js';
import { backendReport, openStoreFrom, withStore, type StoreOptions } from '../store-option.js';
import { describeHold } from './hold.js';

export function register(program: Command): void {
  withStore(program.command('release').description('release a held restore point, so prune may remove it again'))
    .argument('<ref>', 'restore point: id, id prefix, latest or NAME@latest')
    .option('--json', 'machine-readable output')
    .action(async (ref: string, options: StoreOptions & { json?: boolean }) => {
      const store = await openStoreFrom(options);
      const report = await release(store, ref);
      if (options.json) printJson({ ...report, ...backendReport(store) });
      else printLines([describeHold(report)]);
    });
}
