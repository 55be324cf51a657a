import type { Command } from 'commander';
import { hold, type HoldReport } from '../../engine/index.js';
import { printJson, printLines } from '../output.js';
import { backendReport, openStoreFrom, withStore, type StoreOptions } from '../store-option.js';

export function describeHold(report: HoldReport): string {
  const what = `restore point ${report.id} (${report.name}, ${report.time})`;
  if (!report.hold) return report.changed ? `released ${what}` : `${what} was not held`;
  return `held ${what} since ${report.hold.since}${report.hold.reason ? `: ${report.hold.reason}` : ''}`;
}

export function register(program: Command): void {
  withStore(program.command('hold').description('keep a restore point whatever prune policy runs'))
    .argument('<ref>', 'restore point: id, id prefix, latest or NAME@latest')
    .option('--reason <text>', 'why it is held (e.g. a legal hold reference)')
    .option('--json', 'machine-readable output')
    .action(async (ref: string, options: StoreOptions & { reason?: string; json?: boolean }) => {
      const store = await openStoreFrom(options);
      const report = await hold(store, ref, options.reason);
      if (options.json) printJson({ ...report, ...backendReport(store) });
      else printLines([describeHold(report)]);
    });
}
