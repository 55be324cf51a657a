import type { Command } from 'commander';
import { executePrune, planPrune, type PrunePlan, type RetentionPolicy } from '../../engine/index.js';
import { printJson, printLines, table } from '../output.js';
import { backendReport, openStoreFrom, positiveInt, withStore, type StoreOptions } from '../store-option.js';

interface PruneFlags extends StoreOptions {
  name?: string;
  keepLast?: number;
  keepHourly?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  keepYearly?: number;
  keepWithin?: string;
  dryRun?: boolean;
  json?: boolean;
}

const SEMANTICS = `
Per NAME group, newest first (by --time of the backup; equal times: larger id is newer):
  --keep-last N      the N newest restore points
  --keep-hourly N    the newest of each of the N most recent hours that have one;
                     likewise --keep-daily (days), --keep-weekly (ISO 8601 weeks),
                     --keep-monthly, --keep-yearly. Buckets are in local time (TZ).
                     Rules count independently: one point may be kept by several.
  --keep-within D    every point younger than D, measured back from the group's newest.
                     D combines <n>y years, <n>m months, <n>w weeks, <n>d days, <n>h hours,
                     e.g. 6y, 18m, 1y6m, 36h (calendar steps, except hours).
Held restore points (see hold) are always kept and take no slot in any rule.
Removing a restore point removes its catalog entry and maps; gc frees the space.`;

function describe(plan: PrunePlan, dryRun: boolean, kept: number, removed: number): string[] {
  const rows = plan.points.map((p) => [p.action, p.id, p.name, p.time, p.reasons.join(', ')]);
  const lines = rows.length > 0 ? table([['ACTION', 'ID', 'NAME', 'TIME', 'REASONS'], ...rows]) : ['no restore points'];
  lines.push(dryRun ? `${kept} kept, ${removed} would be removed (dry run: nothing changed)` : `${kept} kept, ${removed} removed; run gc to free their space`);
  return lines;
}

export function register(program: Command): void {
  withStore(program.command('prune').description('remove restore points by retention policy'))
    .option('--name <name>', 'only the restore points of this name (default: every name)')
    .option('--keep-last <n>', 'keep the n newest', positiveInt('--keep-last'))
    .option('--keep-hourly <n>', 'keep the newest of the n most recent hours', positiveInt('--keep-hourly'))
    .option('--keep-daily <n>', 'keep the newest of the n most recent days', positiveInt('--keep-daily'))
    .option('--keep-weekly <n>', 'keep the newest of the n most recent ISO weeks', positiveInt('--keep-weekly'))
    .option('--keep-monthly <n>', 'keep the newest of the n most recent months', positiveInt('--keep-monthly'))
    .option('--keep-yearly <n>', 'keep the newest of the n most recent years', positiveInt('--keep-yearly'))
    .option('--keep-within <duration>', 'keep all younger than this, e.g. 6y, 18m, 2w, 3d, 12h')
    .option('--dry-run', 'print the decisions, change nothing')
    .option('--json', 'machine-readable output')
    .addHelpText('after', SEMANTICS)
    .action(async (options: PruneFlags) => {
      const store = await openStoreFrom(options);
      const policy: RetentionPolicy = {
        last: options.keepLast,
        hourly: options.keepHourly,
        daily: options.keepDaily,
        weekly: options.keepWeekly,
        monthly: options.keepMonthly,
        yearly: options.keepYearly,
        within: options.keepWithin,
      };
      const plan = await planPrune(store, policy, { name: options.name });
      // A point held since planning is not removed: count what executePrune really did.
      const removed = options.dryRun ? plan.removed : (await executePrune(store, plan)).length;
      const kept = plan.points.length - removed;
      if (options.json) printJson({ dryRun: options.dryRun === true, points: plan.points, kept, removed, ...backendReport(store) });
      else printLines(describe(plan, options.dryRun === true, kept, removed));
    });
}
