import type { Command } from 'commander';
import { verify, type VerifyReport } from '../../engine/index.js';
import { formatBytes } from '../../store/size.js';
import { oneLine, printJson, printLines } from '../output.js';
import { progress } from '../progress.js';
import { backendReport, openStoreFrom, threadCount, withStore, type StoreOptions } from '../store-option.js';

function describe(report: VerifyReport): string[] {
  const how = report.readData ? 'decoded and re-hashed' : 'located';
  const lines = [`${report.restorePoints} restore points, ${report.chunksChecked} chunks ${how} (${formatBytes(report.bytesChecked)})`];
  for (const entry of report.catalogProblems) lines.push(`DAMAGED catalog entry ${oneLine(entry.id)}: ${entry.problem}`);
  for (const disk of report.damaged) {
    for (const r of disk.ranges) lines.push(`DAMAGED ${disk.restorePoint} (${disk.name}) disk ${disk.disk}: bytes ${r.offset}-${r.offset + r.length - 1}: ${r.problem}`);
  }
  lines.push(report.clean ? 'clean' : `damage found in ${report.damaged.length} disks`);
  return lines;
}

export function register(program: Command): void {
  withStore(program.command('verify').description('check that restore points are complete; exit 1 on damage'))
    .argument('[ref]', 'only this restore point')
    .option('--read-data', 'decode and re-hash every chunk')
    .option('--threads <n>', 'worker threads (default: one per core)', threadCount)
    .option('--json', 'machine-readable output')
    .action(async (ref: string | undefined, options: StoreOptions & { readData?: boolean; threads?: number; json?: boolean }) => {
      const store = await openStoreFrom(options);
      const bar = progress('verify');
      const report = await verify(store, ref, { readData: options.readData, threads: options.threads, onProgress: (d, t) => bar.update(d, t) });
      bar.done();
      if (options.json) printJson({ ...report, ...backendReport(store) });
      else printLines(describe(report));
      if (!report.clean) process.exitCode = 1;
    });
}
