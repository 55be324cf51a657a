import type { Command } from 'commander';
import { unmountChunkvault } from '../../fuse/mountpoint.js';

export function register(program: Command): void {
  program
    .command('umount')
    .description('unmount a chunkvault mount (the mount command then exits)')
    .argument('<mountpoint>', 'where chunkvault mount serves the store')
    .action(async (mountpoint: string) => {
      await unmountChunkvault(mountpoint);
    });
}
