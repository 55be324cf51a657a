import type { Command } from 'commander';
import { initStore } from '../../engine/index.js';
import { printJson, printLines } from '../output.js';
import { formatBytes } from '../../store/size.js';
import { storeDir, withStore, type StoreOptions } from '../store-option.js';

export function register(program: Command): void {
  withStore(program.command('init').description('create a store'))
    .option('--chunk-size <size>', 'chunk size, a power of two from 64K to 8M', '1M')
    .option('--json', 'machine-readable output')
    .action(async (options: StoreOptions & { chunkSize: string; json?: boolean }) => {
      const store = await initStore(storeDir(options), options.chunkSize);
      if (options.json) printJson({ store: store.dir, chunkSize: store.chunkSize });
      else printLines([`initialized store ${store.dir} (chunk size ${formatBytes(store.chunkSize)})`]);
    });
}
