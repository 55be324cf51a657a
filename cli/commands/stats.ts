import type { Command } from 'commander';
import { stats, type StoreStats } from '../../engine/index.js';
import { formatBytes } from '../../store/size.js';
import { printJson, printLines, table } from '../output.js';
import { backendReport, openStoreFrom, withStore, type StoreOptions } from '../store-option.js';

/** One line per codec that holds chunks, under the store-wide ratio. */
function codecLines(codecs: StoreStats['codecs']): string[] {
  const used = Object.entries(codecs).filter(([, c]) => c.chunks > 0);
  if (used.length === 0) return [];
  return table(
    used.map(([name, c]) => [`  ${name}`, `${c.chunks} chunks`, `${formatBytes(c.rawBytes)} -> ${formatBytes(c.storedBytes)}`, `ratio ${c.compressionRatio.toFixed(2)}`]),
  );
}

export function register(program: Command): void {
  withStore(program.command('stats').description('sizes, dedup and compression of the store'))
    .option('--json', 'machine-readable output')
    .action(async (options: StoreOptions & { json?: boolean }) => {
      const store = await openStoreFrom(options);
      const s = await stats(store);
      if (options.json) return printJson({ ...s, ...backendReport(store) });
      printLines([
        `restore points     ${s.restorePoints}`,
        `chunk size         ${formatBytes(s.chunkSize)}`,
        `logical bytes      ${formatBytes(s.logicalBytes)} (${formatBytes(s.dataBytes)} in non-zero chunks)`,
        `unique chunks      ${s.uniqueChunks} (${formatBytes(s.uniqueBytes)})`,
        `stored bytes       ${formatBytes(s.storedBytes)} in ${s.packs} packs (${formatBytes(s.packBytes)} on disk)`,
        `dedup ratio        ${s.dedupRatio.toFixed(2)}`,
        `compression ratio  ${s.compressionRatio.toFixed(2)}`,
        ...codecLines(s.codecs),
        `reclaimable by gc  ${s.reclaimableBytes === null ? 'unknown (gc would stop: run verify, or gc --dry-run for why)' : formatBytes(s.reclaimableBytes)}`,
      ]);
    });
}
