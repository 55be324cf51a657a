import type { Command } from 'commander';
import { InvalidInputError, runBackup, type BackupReport } from '../../engine/index.js';
import { formatBytes } from '../../store/size.js';
import { oneLine, printJson, printLines } from '../output.js';
import { progress } from '../progress.js';
import { backendLine, backendReport, openStoreFrom, threadCount, withStore, type StoreOptions } from '../store-option.js';

interface BackupFlags extends StoreOptions {
  name?: string;
  time?: string;
  threads?: number;
  extents: string[];
  parent?: string | false;
  changed: string[];
  changedFormat?: string;
  skipFile: string[];
  maxLatency?: number;
  maxRate?: number;
  force?: boolean;
  compression?: string;
  fromSession?: string;
  json?: boolean;
}

const repeatable = (value: string, previous: string[]): string[] => [...previous, value];

function positiveNumber(flag: string): (text: string) => number {
  return (text) => {
    const n = Number(text);
    if (text.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidInputError(`${flag}: '${text}' is not a positive number`, { flag, value: text });
    return n;
  };
}

function describe(report: BackupReport): string[] {
  const logical = report.disks.reduce((s, d) => s + d.size, 0);
  return [
    `restore point ${report.id} (${report.name}, ${report.time}), ${report.kind}${report.parent ? ` on parent ${report.parent}` : ''}`,
    `  disks: ${report.disks.map((d) => `${d.label} ${formatBytes(d.size)}`).join(', ')}`,
    `  read ${formatBytes(report.bytesRead)} from the source${report.bytesReadFromStore > 0 ? ` and ${formatBytes(report.bytesReadFromStore)} of the parent's chunks from the store` : ''}${report.bytesSkipped > 0 ? `, skipped ${formatBytes(report.bytesSkipped)} (--skip-file)` : ''}, stored ${formatBytes(report.bytesNew)} new; chunks ${report.chunksTotal} (${report.chunksNew} new, ${report.chunksZero} zero)`,
    `  ${report.seconds.toFixed(2)} s, ${(logical / 1e6 / Math.max(report.seconds, 1e-9)).toFixed(0)} MB/s${report.secondsThrottled > 0 ? `, ${report.secondsThrottled.toFixed(2)} s throttled` : ''}`,
  ];
}

export function register(program: Command): void {
  withStore(program.command('backup').description('back up files or block devices as one restore point'))
    .argument('[source...]', 'PATH or LABEL=PATH of a raw image or block device')
    .option('--name <name>', 'group name of the machine (default: first label)')
    .option('--time <iso8601>', 'when the snapshot was taken (default: now)')
    .option('--threads <n>', 'worker threads (default: one per core)', threadCount)
    .option('--extents <[label=]file>', 'extent map JSON {size, extents:[{offset,length,sourceOffset}]}: read only those source bytes (repeatable)', repeatable, [])
    .option('--parent <ref>', 'restore point this backup is incremental to (same name; default: the newest of --name): unchanged chunks skip compression')
    .option('--no-parent', 'no parent: compress every chunk before looking it up')
    .option('--changed <[label=]file>', 'changed blocks since --parent (chunkvault JSON, rbd diff, thin_delta, nbdinfo/qemu-img map of a dirty bitmap, VMware changedArea, OFFSET LENGTH text; - is stdin): read only chunks touching them (repeatable)', repeatable, [])
    .option('--changed-format <format>', 'format of every --changed file: auto (default), chunkvault, rbd, thin, nbdinfo, qemu-map, vmware, text')
    .option('--skip-file <path>', 'a file on a mounted filesystem of a source device (swap file, cache): backed up as zeros, never read (repeatable)', repeatable, [])
    .option('--max-latency <ms>', 'slow reading down while source read latency is above this', positiveNumber('--max-latency'))
    .option('--max-rate <MB/s>', 'cap the source read rate', positiveNumber('--max-rate'))
    .option('--force', 'start even when the store may not have space for this backup')
    .option('--from-session <dir>', "a stopped recovery session (chunkvault recover): back up only the blocks its guest wrote, on the session's restore point")
    .option('--compression <codec>', "new chunks: lz4, zstd[:LEVEL] (1-19, default 3) or none (default: the store's, see config)")
    .option('--json', 'machine-readable output')
    .action(async (sources: string[], options: BackupFlags) => {
      const store = await openStoreFrom(options);
      const bar = progress('backup');
      const report = await runBackup(store, {
        sources,
        name: options.name,
        time: options.time,
        threads: options.threads,
        extents: options.extents,
        parent: options.parent,
        changed: options.changed,
        changedFormat: options.changedFormat,
        skipFiles: options.skipFile,
        maxLatencyMs: options.maxLatency,
        maxRateMBps: options.maxRate,
        force: options.force,
        compression: options.compression,
        session: options.fromSession,
        onProgress: (p) => bar.update(p.bytesDone, p.bytesTotal, `new ${formatBytes(p.bytesNew)}, dedup ${p.chunksTotal > 0 ? (p.chunksTotal / Math.max(p.chunksNew, 1)).toFixed(1) : '1.0'}x`),
      });
      bar.done();
      for (const warning of report.warnings) process.stderr.write(`warning: ${oneLine(warning)}\n`);
      if (options.json) printJson({ ...report, ...backendReport(store) });
      else printLines([...describe(report), ...backendLine(store)]);
    });
}
