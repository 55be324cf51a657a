import type { Command } from 'commander';
import { DEFAULT_CACHE_BYTES } from '../../fuse/chunk-cache.js';
import { formatBytes, parseSize } from '../../store/size.js';
import { printLines } from '../output.js';
import { openStoreFrom, positiveInt, withStore, type StoreOptions } from '../store-option.js';

interface MountFlags extends StoreOptions {
  cache?: string;
  allowOther?: boolean;
  files?: boolean;
  filesIdle?: number;
  colonFree?: boolean;
}

/** How long a filesystem behind files/ stays mounted unused (seconds). */
const DEFAULT_FILES_IDLE_SECONDS = 30;

export function register(program: Command): void {
  withStore(program.command('mount').description('serve every restore point as a read-only disk image file, in the foreground'))
    .argument('<mountpoint>', 'an existing empty directory')
    .option('--cache <size>', `memory for decoded chunks (default: ${formatBytes(DEFAULT_CACHE_BYTES)})`)
    .option('--allow-other', 'let other users read the mount')
    .option('--files', 'also show the filesystem inside each disk and partition as files/<name>/<time>/<label>[/pN]/')
    .option('--files-idle <seconds>', `release a filesystem under files/ after this long unused (default: ${DEFAULT_FILES_IDLE_SECONDS})`, positiveInt('--files-idle'))
    .option('--colon-free', 'spell times under by-name/ and files/ without colons (20261201T210000.000Z), for relative qemu backing paths')
    .action(async (mountpoint: string, options: MountFlags) => {
      const cacheBytes = options.cache === undefined ? DEFAULT_CACHE_BYTES : parseSize(options.cache, '--cache');
      const store = await openStoreFrom(options);
      // fuse-native is loaded only by the command that serves FUSE.
      const { mount, serveUntilSignalled } = await import('../../fuse/mount.js');
      const filesIdleMs = options.files ? (options.filesIdle ?? DEFAULT_FILES_IDLE_SECONDS) * 1000 : undefined;
      const session = await mount(store, mountpoint, { cacheBytes, allowOther: options.allowOther, filesIdleMs, timeNames: options.colonFree ? 'colon-free' : 'iso' });
      printLines([`mounted at ${mountpoint}`]);
      await serveUntilSignalled(session);
      // After an unmount from another shell fuse-native keeps a native handle referenced
      // that would hold the process forever: everything is released, so leave (with the exit
      // code of a mount that stopped itself: a lease it could not renew).
      process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
    });
}
