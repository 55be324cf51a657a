/**
 * The built-in quick benchmark behind `chunkvault bench`: how fast this machine hashes,
 * compresses and decompresses, and how fast the whole backup and restore pipelines run, on
 * generated data in a temporary store that is removed afterwards.
 */
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initStore, restore, runBackup } from '../engine/index.js';
import { defaultThreads } from '../engine/pool.js';
import { measureCpu, type AeadLimit, type ZstdLimit } from './limits.js';
import { mbps } from './report.js';
import { buildWorkload, MiB, sampleData, type SyntheticSpec } from './workload.js';

export interface MachineBenchmark {
  cores: number;
  threads: number;
  dataBytes: number;
  blake3MBps: number;
  lz4CompressMBps: number;
  lz4DecompressMBps: number;
  lz4Ratio: number;
  /** zstd levels 1, 3, 9 and 19, one core each: what recompression can reach at best. */
  zstd: ZstdLimit[];
  /** Each AEAD an encrypted store can use, sealing and opening 1 MiB and 4 MiB records on one core. */
  aead: AeadLimit[];
  backupMBps: number;
  restoreMBps: number;
  seconds: number;
}

/** Every page half text, half random: LZ4 has real work, and no chunk is a duplicate or zero. */
const SPEC: SyntheticSpec = { kind: 'synthetic', name: 'bench', size: 128 * MiB, seed: 11, allocatedShare: 1, duplicateShare: 0, compressibility: 0.5, changeRate: 0 };

export async function machineBenchmark(options: { threads?: number } = {}): Promise<MachineBenchmark> {
  const started = Date.now();
  const threads = options.threads ?? defaultThreads();
  const dir = await fs.mkdtemp(join(tmpdir(), 'chunkvault-bench-'));
  try {
    const workload = await buildWorkload(SPEC, dir);
    const cpu = await measureCpu(await sampleData(workload.base, SPEC.size), 0.3);
    const store = await initStore(join(dir, 'store'));
    const backup = await runBackup(store, { sources: [`disk=${workload.base}`], threads });
    const restored = await restore(store, 'latest', join(dir, 'restored.img'), { threads });
    return {
      cores: defaultThreads(),
      threads,
      dataBytes: workload.dataBytes,
      blake3MBps: cpu.blake3MBps,
      lz4CompressMBps: cpu.lz4CompressMBps,
      lz4DecompressMBps: cpu.lz4DecompressMBps,
      lz4Ratio: cpu.lz4Ratio,
      zstd: cpu.zstd,
      aead: cpu.aead ?? [],
      backupMBps: mbps(workload.size, backup.seconds),
      restoreMBps: mbps(workload.size, restored.seconds),
      seconds: (Date.now() - started) / 1000,
    };
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}
