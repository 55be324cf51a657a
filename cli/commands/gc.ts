import type { Command } from 'commander';
import { gc, parseMaxUnused, recompressOrder, DEFAULT_MAX_UNUSED_PERCENT, DEFAULT_RECOMPRESS_AGE, type GcReport, type RecompressionReport } from '../../engine/index.js';
import { formatBytes } from '../../store/size.js';
import { printJson, printLines } from '../output.js';
import { progress } from '../progress.js';
import { backendReport, openStoreFrom, withStore, type StoreOptions } from '../store-option.js';

interface GcFlags extends StoreOptions {
  maxUnused?: number;
  recompress?: string;
  olderThan?: string;
  dryRun?: boolean;
  json?: boolean;
}

function describeRecompression(r: RecompressionReport, dryRun: boolean): string[] {
  const order = `${r.compression}, packs older than ${r.olderThanSeconds} s`;
  if (dryRun) return [`recompression      ${r.packs} packs (${formatBytes(r.liveBytes)} of live data, ${r.recordsTried} records to try) would be recompressed (${order})`];
  return [
    `recompression      ${r.packs} packs (${formatBytes(r.liveBytes)} of live data) recompressed (${order}) in ${r.seconds.toFixed(2)} s, ${r.mbPerSecond.toFixed(1)} MB/s`,
    `records            ${r.recordsRecompressed} recompressed, ${r.recordsSettled} settled (zstd saved too little): ${formatBytes(r.bytesBefore)} -> ${formatBytes(r.bytesAfter)}`,
  ];
}

function describe(r: GcReport): string[] {
  const would = r.dryRun ? 'would be ' : '';
  const rate = r.markSeconds > 0 ? `, ${(r.refsMarked / r.markSeconds / 1e6).toFixed(1)} M/s` : '';
  const lines = [
    `marked ${r.liveChunks} live chunks from ${r.refsMarked} chunk references in ${r.restorePoints} restore points (${r.markSeconds.toFixed(2)} s${rate})`,
    `dead chunks        ${r.chunksFreed} ${would}dropped from the index`,
    `packs              ${r.packsDeleted} ${would}deleted, ${r.packsRewritten} ${would}rewritten (${formatBytes(r.bytesRewritten)} of live data copied)`,
    ...(r.recompression ? describeRecompression(r.recompression, r.dryRun) : []),
    `space freed        ${formatBytes(r.bytesFreed)} of pack data${r.dryRun ? ' (would be, before recompression)' : ''}`,
    `leftovers          ${r.orphanMapsRemoved} orphan map directories, ${r.tmpFilesRemoved} temp files, ${r.staleUploadsAborted} stale uploads, ${r.stagedFilesRemoved} staged files ${would}removed`,
    `store size         ${formatBytes(r.storeBytesBefore)} -> ${formatBytes(r.storeBytesAfter)}${r.dryRun ? ' (estimated)' : ''}`,
  ];
  if (r.compactionStopped) lines.push(`compaction stopped early: ${r.compactionStopped}; free space and run gc again`);
  for (const pack of r.packsDamaged) lines.push(`DAMAGED pack ${pack} left as it is: a live chunk in it does not check out (run verify)`);
  if (r.dryRun) lines.push('dry run: nothing changed');
  return lines;
}

export function register(program: Command): void {
  withStore(program.command('gc').description('delete chunks no restore point uses, compact packs, recompress cold ones'))
    .option('--max-unused <percent>', `rewrite packs with more unused space than this (default ${DEFAULT_MAX_UNUSED_PERCENT})`, parseMaxUnused)
    .option('--recompress <codec>', "recompress cold packs with zstd[:LEVEL] (default: the store's gc recompression order, if any)")
    .option('--older-than <age>', `with --recompress: only packs last written longer ago than this (default ${DEFAULT_RECOMPRESS_AGE}; 0: all)`)
    .option('--dry-run', 'report what gc would do, change nothing')
    .option('--json', 'machine-readable output')
    .action(async (options: GcFlags) => {
      const recompress = recompressOrder(options.recompress, options.olderThan);
      const store = await openStoreFrom(options);
      const bar = progress('gc: rewriting');
      const report = await gc(store, { maxUnused: options.maxUnused, dryRun: options.dryRun, recompress, onProgress: (d, t) => bar.update(d, t) });
      bar.done();
      if (options.json) printJson({ ...report, ...backendReport(store) });
      else printLines(describe(report));
      if (report.packsDamaged.length > 0) process.exitCode = 1;
    });
}
