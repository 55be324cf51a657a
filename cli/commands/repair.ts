import type { Command } from 'commander';
import { repair, type RepairReport } from '../../engine/index.js';
import { formatBytes } from '../../store/size.js';
import { printJson, printLines } from '../output.js';
import { backendReport, openStoreFrom, withStore, type StoreOptions } from '../store-option.js';

function describe(r: RepairReport): string[] {
  const lines = [
    `scanned ${r.packsScanned} packs (${formatBytes(r.packBytes)}): ${r.chunksFound} chunks, ${r.duplicates} duplicate copies`,
    r.indexRecreated ? 'index was unreadable: recreated from the packs' : `index had ${r.indexEntriesBefore} entries`,
    `index now ${r.indexEntriesAfter} entries: ${r.entriesAdded} added, ${r.entriesReplaced} replaced, ${r.entriesRemoved} removed`,
  ];
  for (const d of r.damagedRanges) lines.push(`damaged: pack ${d.pack} bytes ${d.offset}-${d.offset + d.length - 1} hold no valid record`);
  lines.push("run 'chunkvault verify' to see which restore points still miss chunks");
  return lines;
}

export function register(program: Command): void {
  withStore(program.command('repair').description('rebuild the chunk index from the packs'))
    .option('--json', 'machine-readable output')
    .action(async (options: StoreOptions & { json?: boolean }) => {
      const store = await openStoreFrom(options);
      const report = await repair(store);
      if (options.json) printJson({ ...report, ...backendReport(store) });
      else printLines(describe(report));
    });
}
