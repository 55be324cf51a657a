/**
 * The physical limits every figure is compared with, measured in the same run on the same
 * bytes: reading the source (`cat`), single-core BLAKE3, LZ4 and zstd, and the cores there are.
 */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { compressBlock, compressBound, decompressBlock } from '../store/lz4.js';
import { zstdCompress, zstdCompressBound, zstdDecompress } from '../store/zstd.js';
import { chunkId, loadHasher } from '../store/chunk-id.js';
import { CIPHERS, Sealer, newMasterKey, storeKeys, type Cipher } from '../store/crypto.js';
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

/** One zstd level on one core, as gc's recompression and a zstd backup run it: 1 MiB pieces into a reused buffer. */
export interface ZstdLimit {
  level: number;
  /** The first bytes of the sample: the slow levels get a smaller share. */
  sampleBytes: number;
  compressMBps: number;
  /** MB/s of raw bytes produced. */
  decompressMBps: number;
  /** Raw bytes over stored bytes, incompressible pieces counted raw. */
  ratio: number;
}

/** One AEAD on one core sealing and opening records as an encrypted store does (store/crypto.ts's Sealer). */
export interface AeadLimit {
  cipher: Cipher;
  recordBytes: number;
  sealMBps: number;
  openMBps: number;
  /** `openssl speed -evp CIPHER -bytes recordBytes` in the same run: the library's own speed, without Node; null without openssl. */
  opensslMBps: number | null;
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
  /** Levels 1, 3, 9 and 19. */
  zstd: ZstdLimit[];
  /** aes-256-gcm and chacha20-poly1305 on 1 MiB and 4 MiB records; results written before encryption have none. */
  aead?: AeadLimit[];
  /** BLAKE3 keyed with an encrypted store's chunk-id key, one core (results before issue 19 have none). */
  blake3KeyedMBps?: number;
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

interface BlockCodec {
  /** Room compress needs for a piece of `length` bytes. */
  bound(length: number): number;
  /** Compressed length in `into`; 0 or at least the piece's length where it did not compress. */
  compress(piece: Buffer, into: Buffer): number;
  decompress(block: Buffer, into: Buffer): number;
}

interface CodecSpeed {
  compressMBps: number;
  decompressMBps: number;
  ratio: number;
}

function bytesOf(buffers: Buffer[]): number {
  return buffers.reduce((total, b) => total + b.byteLength, 0);
}

/** Compression and decompression on one core, as a store does it: pieces that do not shrink are stored raw and never decoded. */
function codecSpeed(sample: Buffer[], codec: BlockCodec, minSeconds: number): CodecSpeed {
  const scratch = Buffer.allocUnsafe(codec.bound(MiB));
  const decoded = Buffer.allocUnsafe(MiB);
  const compressInto = (piece: Buffer): number => codec.compress(piece, scratch);
  const shrunk = sample.flatMap((piece) => {
    const length = compressInto(piece);
    return length > 0 && length < piece.byteLength ? [{ piece, block: Buffer.from(scratch.subarray(0, length)) }] : [];
  });
  const blocks = shrunk.map((s) => s.block);
  const [rawBytes, shrunkFrom, shrunkTo] = [bytesOf(sample), bytesOf(shrunk.map((s) => s.piece)), bytesOf(blocks)];
  return {
    compressMBps: rate(sample, compressInto, minSeconds),
    // rate() counts the compressed bytes it was given; the figure is in raw bytes produced.
    decompressMBps: blocks.length > 0 ? rate(blocks, (block) => codec.decompress(block, decoded), minSeconds) * (shrunkFrom / shrunkTo) : Infinity,
    ratio: rawBytes / (rawBytes - shrunkFrom + shrunkTo),
  };
}

// The store's codecs: LZ4 blocks, and zstd frames through one reused context per thread.
const LZ4: BlockCodec = { bound: compressBound, compress: compressBlock, decompress: decompressBlock };
const zstdAt = (level: number): BlockCodec => ({ bound: zstdCompressBound, compress: (piece, into) => zstdCompress(piece, into, level), decompress: zstdDecompress });

/** Level 19 runs at a few MB/s: a small sample keeps its measurement to seconds. */
const ZSTD_SAMPLES = [
  { level: 1, bytes: 16 * MiB },
  { level: 3, bytes: 16 * MiB },
  { level: 9, bytes: 16 * MiB },
  { level: 19, bytes: 2 * MiB },
];

function zstdLimits(sample: Buffer[], minSeconds: number): ZstdLimit[] {
  return ZSTD_SAMPLES.map(({ level, bytes }) => {
    const share = sample.slice(0, Math.max(1, bytes / MiB));
    return { level, sampleBytes: bytesOf(share), ...codecSpeed(share, zstdAt(level), minSeconds) };
  });
}

const AEAD_RECORDS = [MiB, 4 * MiB];

/** `openssl speed` of one AEAD on records of `bytes`, in MB/s; null where openssl is missing or says nothing parseable. */
function opensslSpeed(cipher: Cipher, bytes: number): number | null {
  try {
    const out = execFileSync('openssl', ['speed', '-evp', cipher, '-bytes', String(bytes), '-seconds', '1'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const kilobytes = /^\S+\s+([\d.]+)k\s*$/m.exec(out.trim().split('\n').at(-1) ?? '');
    return kilobytes ? (Number(kilobytes[1]) * 1000) / 1e6 : null;
  } catch {
    return null;
  }
}

/** Each AEAD sealing and opening the sample cut into records, with a throwaway key. */
function aeadLimits(data: Buffer, minSeconds: number): AeadLimit[] {
  const ad = Buffer.from('bench record');
  return CIPHERS.flatMap((cipher) =>
    AEAD_RECORDS.map((recordBytes) => {
      const sealer = new Sealer(cipher, Buffer.alloc(32, 1));
      const records = pieces(data, recordBytes);
      const sealed = records.map((r) => sealer.seal(r, ad));
      return {
        cipher,
        recordBytes,
        sealMBps: rate(records, (r) => sealer.seal(r, ad), minSeconds),
        // rate() counts the sealed bytes; the figure is in plain bytes, as the others.
        openMBps: rate(sealed, (s) => sealer.open(s, ad), minSeconds) * (bytesOf(records) / bytesOf(sealed)),
        opensslMBps: opensslSpeed(cipher, recordBytes),
      };
    }),
  );
}

/** Single-core speeds on this thread, on the given bytes (the workload's non-zero data). */
function keyedBlake3MBps(sample: Buffer[], minSeconds: number): number {
  const { chunkIdKey } = storeKeys('chacha20-poly1305', newMasterKey());
  return rate(sample, (piece) => chunkId(piece, chunkIdKey), minSeconds);
}

export async function measureCpu(data: Buffer, minSeconds = 0.5): Promise<CpuLimits> {
  await loadHasher();
  const sample = pieces(data);
  const blake3MBps = rate(sample, (piece) => chunkId(piece), minSeconds);
  const lz4 = codecSpeed(sample, LZ4, minSeconds);
  return {
    sampleBytes: data.byteLength,
    blake3MBps,
    lz4CompressMBps: lz4.compressMBps,
    lz4DecompressMBps: lz4.decompressMBps,
    lz4Ratio: lz4.ratio,
    hashCompressMBps: 1 / (1 / blake3MBps + 1 / lz4.compressMBps),
    zstd: zstdLimits(sample, minSeconds),
    aead: aeadLimits(data, minSeconds),
    blake3KeyedMBps: keyedBlake3MBps(sample, minSeconds),
  };
}
