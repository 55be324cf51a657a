/**
 * The physical limits every figure is compared with, measured in the same run on the same
 * bytes: reading the source (`cat`), single-core BLAKE3 and LZ4, and the cores there are.
 */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { compressBlock, compressBound, decompressBlock } from '../store/lz4.js';
import { chunkId, loadHasher } from '../store/chunk-id.js';
import { measureCommand } from './measure.js';
import { MiB } from './workload.js';

export interface ReadLimit {
  /** MB/s (10^6 bytes) of `cat SOURCE > /dev/null`. */
  coldMBps: number | null;
  warmMBps: number;
  /** Whether the page cache could be dropped before the cold read (needs root). */
  cacheDropped: boolean;
  /** MB/s of `cp --sparse=always SOURCE NEW && sync NEW`: writing the disk back, as a restore does. */
  copyMBps: number;
}

export interface CpuLimits {
  sampleBytes: number;
  blake3MBps: number;
  lz4CompressMBps: number;
  lz4DecompressMBps: number;
  /** Raw bytes over LZ4-compressed bytes of the sample. */
  lz4Ratio: number;
  /** One core hashing then compressing the same bytes: what one backup worker can do at best. */
  hashCompressMBps: number;
}

export interface MachineInfo {
  cores: number;
  cpuModel: string;
  /** 1-minute load average when the run started: others using the cores make figures noisy. */
  loadAverage: number;
  memoryBytes: number;
}

export interface Limits extends CpuLimits {
  machine: MachineInfo;
  read: ReadLimit;
}

export function machineInfo(): MachineInfo {
  return { cores: availableParallelism(), cpuModel: cpus()[0]?.model ?? 'unknown', loadAverage: Number(loadavg()[0].toFixed(2)), memoryBytes: Number(execFileSync('sh', ['-c', "awk '/MemTotal/ {print $2 * 1024}' /proc/meminfo"]).toString().trim()) };
}

/** Drops the page cache so the next read comes from the device; false where that is not permitted. */
export async function dropPageCache(): Promise<boolean> {
  try {
    execFileSync('sync');
    await fs.writeFile('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch {
    return false;
  }
}

async function catMBps(path: string): Promise<number> {
  const size = (await fs.stat(path)).size;
  const run = await measureCommand('sh', ['-c', 'cat "$1" > /dev/null', 'sh', path]);
  return size / 1e6 / run.wallSeconds;
}

/** A sparse copy made durable, next to where restores write (`dir`). */
async function copyMBps(path: string, dir: string): Promise<number> {
  const size = (await fs.stat(path)).size;
  const copy = join(dir, 'limits-copy.img');
  try {
    const run = await measureCommand('sh', ['-c', 'cp --sparse=always "$1" "$2" && sync "$2"', 'sh', path, copy]);
    return size / 1e6 / run.wallSeconds;
  } finally {
    await fs.rm(copy, { force: true });
  }
}

/** Cold read (when the cache can be dropped), then warm: every tool afterwards reads warm. */
export async function measureRead(path: string, scratchDir: string): Promise<ReadLimit> {
  const cacheDropped = await dropPageCache();
  const first = await catMBps(path);
  const warmMBps = await catMBps(path);
  return { coldMBps: cacheDropped ? first : null, warmMBps, cacheDropped, copyMBps: await copyMBps(path, scratchDir) };
}

/** CPU seconds this process has used: unlike wall time, others' load on the cores does not inflate it. */
function cpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

/**
 * MB/s per CPU second of `work` over `sample` in 1 MiB pieces, repeated until it has used at
 * least `minSeconds` of CPU: the speed of one core of its own, even on a shared machine.
 */
function rate(sample: Buffer[], work: (piece: Buffer) => unknown, minSeconds = 0.5): number {
  let bytes = 0;
  const started = cpuSeconds();
  do {
    for (const piece of sample) {
      work(piece);
      bytes += piece.byteLength;
    }
  } while (cpuSeconds() - started < minSeconds);
  return bytes / 1e6 / (cpuSeconds() - started);
}

function pieces(data: Buffer, size = MiB): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < data.byteLength; at += size) out.push(data.subarray(at, Math.min(at + size, data.byteLength)));
  return out;
}

/** Single-core speeds on this thread, on the given bytes (the workload's non-zero data). */
export async function measureCpu(data: Buffer, minSeconds = 0.5): Promise<CpuLimits> {
  await loadHasher();
  const sample = pieces(data);
  // The store's own codec: LZ4 blocks into a reused buffer; incompressible pieces are stored raw.
  const scratch = Buffer.allocUnsafe(compressBound(MiB));
  const compressInto = (piece: Buffer): number => compressBlock(piece, scratch);
  const compressed = sample.map((piece) => Buffer.from(scratch.subarray(0, compressInto(piece))));
  const lz4Ratio = data.byteLength / compressed.reduce((s, c, i) => s + (c.byteLength || sample[i].byteLength), 0);
  const blake3MBps = rate(sample, chunkId, minSeconds);
  const lz4CompressMBps = rate(sample, compressInto, minSeconds);
  const blocks = compressed.filter((c) => c.byteLength > 0);
  const blockRatio = blocks.length > 0 ? sample.filter((_, i) => compressed[i].byteLength > 0).reduce((s, p) => s + p.byteLength, 0) / blocks.reduce((s, c) => s + c.byteLength, 0) : 1;
  // rate() counts the compressed bytes it was given; the figure is in raw bytes produced.
  const lz4DecompressMBps = blocks.length > 0 ? rate(blocks, (block: Buffer) => decompressBlock(block, scratch), minSeconds) * blockRatio : Infinity;
  return {
    sampleBytes: data.byteLength,
    blake3MBps,
    lz4CompressMBps,
    lz4DecompressMBps,
    lz4Ratio,
    hashCompressMBps: 1 / (1 / blake3MBps + 1 / lz4CompressMBps),
  };
}
