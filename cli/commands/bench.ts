import type { Command } from 'commander';
import type { MachineBenchmark } from '../../bench/machine.js';
import { formatBytes } from '../../store/size.js';
import { printJson, printLines, table } from '../output.js';
import { threadCount } from '../store-option.js';

function describe(b: MachineBenchmark): string[] {
  const rate = (x: number): string => `${x.toFixed(0)} MB/s`;
  return [
    ...table([
      ['BLAKE3 hashing, one core', rate(b.blake3MBps)],
      ['LZ4 compression, one core', `${rate(b.lz4CompressMBps)} (ratio ${b.lz4Ratio.toFixed(2)})`],
      ['LZ4 decompression, one core', rate(b.lz4DecompressMBps)],
      ...b.zstd.map((z) => [`zstd:${z.level}, one core`, `${rate(z.compressMBps)} compression, ${rate(z.decompressMBps)} decompression (ratio ${z.ratio.toFixed(2)}${z.sampleBytes < b.dataBytes ? ` on ${formatBytes(z.sampleBytes)}` : ''})`]),
      ...b.aead.map((a) => [`${a.cipher}, one core, ${formatBytes(a.recordBytes)} records`, `${rate(a.sealMBps)} seal, ${rate(a.openMBps)} open${a.opensslMBps === null ? '' : ` (openssl speed: ${rate(a.opensslMBps)})`}`]),
      [`backup pipeline, ${b.threads} workers`, rate(b.backupMBps)],
      [`restore pipeline, ${b.threads} workers`, rate(b.restoreMBps)],
    ]),
    `${b.cores} cores; ${formatBytes(b.dataBytes)} of generated data in a temporary store; ${b.seconds.toFixed(1)} s`,
  ];
}

export function register(program: Command): void {
  program
    .command('bench')
    .description('measure hashing, compression and pipeline speed of this machine on generated data')
    .option('--threads <n>', 'worker threads for the pipelines (default: one per core)', threadCount)
    .option('--json', 'machine-readable output')
    .action(async (options: { threads?: number; json?: boolean }) => {
      // Loaded on use: it pulls in the benchmark code, a sixth of every other command's start-up.
      const { machineBenchmark } = await import('../../bench/machine.js');
      const result = await machineBenchmark({ threads: options.threads });
      if (options.json) printJson(result);
      else printLines(describe(result));
    });
}
