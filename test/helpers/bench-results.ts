/** A benchmark result set with every section filled, for the report and README renderings. */
import type { Limits } from '../../bench/limits.js';
import type { BenchResults, OpResult } from '../../bench/report.js';

export const GB = 1e9;

export const limits: Limits = {
  machine: { cores: 2, cpuModel: 'Test CPU', loadAverage: 0.5, memoryBytes: 8 * GB },
  read: { coldMBps: 200, warmMBps: 2000, cacheDropped: true, copyMBps: 1000 },
  sampleBytes: 64 * 1024 * 1024,
  blake3MBps: 1000,
  lz4CompressMBps: 250,
  lz4DecompressMBps: 1000,
  lz4Ratio: 2,
  hashCompressMBps: 200,
  zstd: [
    { level: 1, sampleBytes: 16 * 1024 * 1024, compressMBps: 300, decompressMBps: 900, ratio: 2.2 },
    { level: 3, sampleBytes: 16 * 1024 * 1024, compressMBps: 200, decompressMBps: 900, ratio: 2.4 },
    { level: 9, sampleBytes: 16 * 1024 * 1024, compressMBps: 50, decompressMBps: 900, ratio: 2.6 },
    { level: 19, sampleBytes: 2 * 1024 * 1024, compressMBps: 4, decompressMBps: 800, ratio: 2.8 },
  ],
  aead: [
    { cipher: 'aes-256-gcm', recordBytes: 1024 * 1024, sealMBps: 1200, openMBps: 1300, opensslMBps: 4000 },
    { cipher: 'aes-256-gcm', recordBytes: 4 * 1024 * 1024, sealMBps: 1100, openMBps: 1250, opensslMBps: null },
    { cipher: 'chacha20-poly1305', recordBytes: 1024 * 1024, sealMBps: 1000, openMBps: 1050, opensslMBps: 3600 },
  ],
};

export function op(tool: string, kind: OpResult['op'], wallSeconds: number, extra: Partial<OpResult> = {}): OpResult {
  return { workload: 'vm', tool, op: kind, logicalBytes: 3 * GB, wallSeconds, cpuSeconds: wallSeconds, peakRssBytes: 100e6, storedBytes: null, identical: null, ...extra };
}

export function results(): BenchResults {
  return {
    schema: 1,
    profile: 'test',
    started: '2026-11-21T12:00:00.000Z',
    seconds: 60,
    limits,
    workloads: [{ name: 'vm', kind: 'ext4', size: 3 * GB, dataBytes: 1.5 * GB, allocatedBytes: 1.6 * GB, changedBytes: 4096, changedRanges: 1, details: { files: 10 } }],
    tools: [
      { name: 'chunkvault', version: 'cv', settings: 'lz4' },
      { name: 'borg', version: 'borg 1.2.4', settings: 'lz4' },
    ],
    missing: [{ name: 'casync', note: 'not installed (apt-get install casync); skipped' }],
    ops: [
      op('chunkvault', 'backup', 2, { storedBytes: 1e9 }),
      op('chunkvault', 'restore', 3, { identical: true }),
      op('borg', 'backup', 6, { storedBytes: 1.1e9 }),
      op('borg', 'restore', 5, { identical: true }),
    ],
    stores: [{ workload: 'vm', dedupRatio: 1.25, compressionRatio: 2, dataShare: 0.5 }],
    scaling: {
      workload: 'vm',
      logicalBytes: 3 * GB,
      points: [
        { threads: 1, backup: { wallSeconds: 10, cpuSeconds: 10, peakRssBytes: 1 }, restore: { wallSeconds: 5, cpuSeconds: 5, peakRssBytes: 1 } },
        { threads: 2, backup: { wallSeconds: 6, cpuSeconds: 11.4, peakRssBytes: 1 }, restore: { wallSeconds: 3, cpuSeconds: 3, peakRssBytes: 1 } },
      ],
    },
    chunkSizes: {
      workload: 'vm',
      logicalBytes: 3 * GB,
      points: [{ chunkSize: 65536, backup: { wallSeconds: 15, cpuSeconds: 15, peakRssBytes: 1 }, restore: { wallSeconds: 6, cpuSeconds: 6, peakRssBytes: 1 }, storedBytes: 1e9, dedupRatio: 1.3, compressionRatio: 2, dataShare: 0.5 }],
    },
    large: { size: 8 * 1024 ** 3, dataBytes: 3 * 1024 ** 3, wallSeconds: 20, cpuSeconds: 30, peakRssBytes: 250e6 },
    paired: null,
    extras: [{ module: 'mount', name: 'sequentialRead', figures: { mbps: 512.25, seconds: 2 } }],
    notes: ['a note'],
  };
}
