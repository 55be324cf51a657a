import type { Command } from 'commander';
import { runBackup, type BackupReport } from '../../engine/index.js';
import { formatBytes } from '../../store/size.js';
import { printJson, printLines } from '../output.js';
import { progress } from '../progress.js';
import { openStoreFrom, positiveInt, withStore, type StoreOptions } from '../store-option.js';

interface BackupFlags extends StoreOptions {
  name?: string;
  time?: string;
  threads?: number;
  json?: boolean;
}

function describe(report: BackupReport): string[] {
  const logical = report.disks.reduce((s, d) => s + d.size, 0);
  return [
    `restore point ${report.id} (${report.name}, ${report.time})`,
    `  disks: ${report.disks.map((d) => `${d.label} ${formatBytes(d.size)}`).join(', ')}`,
    `  read ${formatBytes(report.bytesRead)}, stored ${formatBytes(report.bytesNew)} new; chunks ${report.chunksTotal} (${report.chunksNew} new, ${report.chunksZero} zero)`,
    `  ${report.seconds.toFixed(2)} s, ${(logical / 1e6 / Math.max(report.seconds, 1e-9)).toFixed(0)} MB/s`,
  ];
}

export function register(program: Command): void {
  withStore(program.command('backup').description('back up files or block devices as one restore point'))
    .argument('<source...>', 'PATH or LABEL=PATH of a raw image or block device')
    .option('--name <name>', 'group name of the machine (default: first label)')
    .option('--time <iso8601>', 'when the snapshot was taken (default: now)')
    .option('--threads <n>', 'worker threads (default: one per core)', positiveInt('--threads'))
    .option('--json', 'machine-readable output')
    .action(async (sources: string[], options: BackupFlags) => {
      const store = await openStoreFrom(options);
      const bar = progress('backup');
      const report = await runBackup(store, {
        sources,
        name: options.name,
        time: options.time,
        threads: options.threads,
        onProgress: (p) => bar.update(p.bytesDone, p.bytesTotal, `new ${formatBytes(p.bytesNew)}, dedup ${p.chunksTotal > 0 ? (p.chunksTotal / Math.max(p.chunksNew, 1)).toFixed(1) : '1.0'}x`),
      });
      bar.done();
      if (options.json) printJson(report);
      else printLines(describe(report));
    });
}
