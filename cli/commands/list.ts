import type { Command } from 'commander';
import { listRestorePoints } from '../../engine/index.js';
import { formatBytes } from '../../store/size.js';
import { oneLine, printJson, printLines, table } from '../output.js';
import { backendReport, openStoreFrom, withStore, type StoreOptions } from '../store-option.js';

export function register(program: Command): void {
  withStore(program.command('list').description('list restore points, newest first'))
    .option('--json', 'machine-readable output')
    .action(async (options: StoreOptions & { json?: boolean }) => {
      const store = await openStoreFrom(options);
      const { points: entries, damaged } = await listRestorePoints(store);
      // Damaged entries are named on stderr, so --json stays the list of restore points; exit 1 says some are missing from it.
      for (const entry of damaged) process.stderr.write(`chunkvault: DAMAGED catalog entry ${oneLine(entry.id)}: ${entry.problem} (its maps and chunks are kept; run verify)\n`);
      if (damaged.length > 0) process.exitCode = 1;
      // --json stays the array it always was: an s3 store's request counters go to stderr, one JSON line.
      if (options.json) {
        const { backend } = backendReport(store);
        if (backend !== undefined) process.stderr.write(`${JSON.stringify({ backend })}\n`);
        return printJson(entries);
      }
      if (entries.length === 0) return printLines(['no restore points']);
      const rows = entries.map((e) => [e.id, e.name, e.time, e.disks.map((d) => `${d.label}:${formatBytes(d.size)}`).join(','), formatBytes(e.bytesNew), e.held ? 'held' : '']);
      printLines(table([['ID', 'NAME', 'TIME', 'DISKS', 'NEW', 'HOLD'], ...rows]));
    });
}
