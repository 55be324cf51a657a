import type { Command } from 'commander';
import { configureStore, type StoreSettings } from '../../engine/index.js';
import { formatCompression } from '../../store/compression.js';
import { printJson, printLines } from '../output.js';
import { backendReport, openStoreFrom, withStore, type StoreOptions } from '../store-option.js';

interface ConfigFlags extends StoreOptions {
  compression?: string;
  gcRecompress?: string | false;
  gcOlderThan?: string;
  json?: boolean;
}

function describe(settings: StoreSettings): string[] {
  const policy = settings.recompress;
  return [
    `compression     ${formatCompression(settings.compression)} (backups without --compression)`,
    `gc recompress   ${policy ? `${formatCompression(policy.compression)}, packs older than ${policy.olderThanSeconds} s` : 'off (gc --recompress does it once)'}`,
  ];
}

export function register(program: Command): void {
  withStore(program.command('config').description("show or change the store's compression settings"))
    .option('--compression <codec>', 'what backups compress with by default: lz4, zstd[:LEVEL] or none')
    .option('--gc-recompress <codec>', 'every gc recompresses old packs with this (zstd[:LEVEL])')
    .option('--no-gc-recompress', 'gc recompresses nothing unless asked')
    .option('--gc-older-than <age>', 'with --gc-recompress: only packs older than this (default 7d)')
    .option('--json', 'machine-readable output')
    .action(async (options: ConfigFlags) => {
      const store = await openStoreFrom(options);
      const settings = await configureStore(store, { compression: options.compression, recompress: options.gcRecompress, olderThan: options.gcOlderThan });
      if (options.json) printJson({ ...settings, ...backendReport(store) });
      else printLines(describe(settings));
    });
}
