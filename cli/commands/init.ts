import type { Command } from 'commander';
import { initStore } from '../../engine/index.js';
import { printJson, printLines } from '../output.js';
import { formatBytes } from '../../store/size.js';
import { formatCompression } from '../../store/compression.js';
import { initPasswordSource } from '../password.js';
import { backendReport, storeAccess, storeDir, withStore, type StoreOptions } from '../store-option.js';

export function register(program: Command): void {
  withStore(program.command('init').description('create a store'))
    .option('--chunk-size <size>', 'chunk size, a power of two from 64K to 8M', '1M')
    .option('--compression <codec>', 'what backups compress with by default: lz4 (default), zstd[:LEVEL] or none')
    .option('--encryption [cipher]', 'chacha20-poly1305 (the flag alone), aes-256-gcm, or none (without the flag): seal everything with a master key wrapped by the passphrase', 'none')
    .option('--json', 'machine-readable output')
    .action(async (options: StoreOptions & { chunkSize: string; compression?: string; encryption: string | true; json?: boolean }) => {
      const store = await initStore(storeDir(options), options.chunkSize, options.compression, { ...storeAccess(options), password: initPasswordSource(options.passwordFile) }, options.encryption);
      const encryption = store.format.encryption?.cipher ?? 'none';
      if (options.json) printJson({ store: store.location, chunkSize: store.chunkSize, compression: formatCompression(store.compression), encryption, ...backendReport(store) });
      else printLines([`initialized store ${store.location} (chunk size ${formatBytes(store.chunkSize)}, compression ${formatCompression(store.compression)}, encryption ${encryption})`]);
    });
}
