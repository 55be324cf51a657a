import type { Command } from 'commander';
import { restore, type RestoreSummary } from '../../engine/index.js';
import { formatBytes } from '../../store/size.js';
import { printJson, printLines } from '../output.js';
import { InvalidInputError } from '../../engine/errors.js';
import { progress } from '../progress.js';
import { backendReport, openStoreFrom, threadCount, withStore, type StoreOptions } from '../store-option.js';

/** Permission bits as chmod takes them, in octal: 600, 0640, 2750. */
function octalMode(text: string): number {
  if (!/^0*[0-7]{1,4}$/.test(text)) throw new InvalidInputError(`--mode: '${text}' is not an octal file mode from 0 to 7777 (e.g. 0640)`, { value: text });
  return parseInt(text, 8);
}

interface RestoreFlags extends StoreOptions {
  disk?: string;
  partial?: boolean;
  threads?: number;
  mode?: number;
  onto?: string;
  changed?: string;
  compare?: boolean;
  json?: boolean;
}

function describe(summary: RestoreSummary): string[] {
  const rate = summary.size / 1e6 / Math.max(summary.seconds, 1e-9);
  const how = summary.mode === 'onto' ? ` onto ${summary.onto}'s disk` : summary.mode === 'compare' ? ' by comparing' : '';
  const lines = [`restored ${summary.id} disk ${summary.disk} (${formatBytes(summary.size)}) to ${summary.target}${how} in ${summary.seconds.toFixed(2)} s, ${rate.toFixed(0)} MB/s`];
  if (summary.mode !== 'full') {
    lines.push(`  slots written ${summary.slotsWritten}: ${formatBytes(summary.bytesWritten)} written, ${formatBytes(summary.bytesPunched)} made holes; ${formatBytes(summary.bytesRead)} read from the target`);
  }
  return [...lines, ...summary.unrestored.map((r) => `NOT RESTORED bytes ${r.offset}-${r.offset + r.length - 1} (left zero): ${r.problem}`)];
}

export function register(program: Command): void {
  withStore(program.command('restore').description('write a disk of a restore point to a file or block device'))
    .argument('<ref>', 'restore point: id, id prefix, latest or NAME@latest')
    .argument('<target>', 'file (created or overwritten; with --onto or --compare: written in place) or block device')
    .option('--disk <label>', 'which disk, when the restore point has several')
    .option('--partial', 'write what can be restored and list the ranges that could not be (exit 1)')
    .option('--mode <octal>', 'permissions of a restored file (default: 0600 for a new file; an existing file keeps its own)', octalMode)
    .option('--onto <known-ref>', 'the target holds this restore point\'s disk already: write only the chunks that differ, read nothing')
    .option('--changed <[label=]file>', 'with --onto: CBT JSON {changed:[{offset,length}]} of what the target wrote since; those chunks are written too')
    .option('--compare', 'read and hash the existing target, write only the chunks that differ')
    .option('--threads <n>', 'worker threads (default: one per core)', threadCount)
    .option('--json', 'machine-readable output')
    .action(async (ref: string, target: string, options: RestoreFlags) => {
      const store = await openStoreFrom(options);
      const bar = progress(options.compare ? 'compare' : 'restore');
      const summary = await restore(store, ref, target, {
        disk: options.disk,
        partial: options.partial,
        threads: options.threads,
        mode: options.mode,
        onto: options.onto,
        changed: options.changed,
        compare: options.compare,
        onProgress: (d, t) => bar.update(d, t),
      });
      bar.done();
      if (summary.unrestored.length > 0) process.exitCode = 1;
      if (options.json) return printJson({ ...summary, ...backendReport(store) });
      printLines(describe(summary));
    });
}
