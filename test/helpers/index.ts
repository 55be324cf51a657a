/** Test helpers: real temp storage, seeded images, the real CLI in a child process. */
import { spawn, execFileSync, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { createCipheriv, createHash } from 'node:crypto';
import { createReadStream, promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = join(ROOT, 'bin', 'chunkvault.js');
export const MiB = 1024 * 1024;

interface Teardown {
  teardown(fn: () => unknown): void;
}

export async function tempDir(t: Teardown, prefix = 'cv-test-'): Promise<string> {
  const dir = await fs.mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Seeded pseudo-random bytes (AES-CTR keystream): two runs build the same image. */
export function seededBytes(seed: number, length: number): Buffer {
  const key = createHash('sha256').update(`chunkvault-seed-${seed}`).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return cipher.update(Buffer.alloc(length));
}

export function compressibleText(length: number, seed = 0): Buffer {
  const lines: string[] = [];
  let size = 0;
  for (let i = 0; size < length; i++) {
    const line = `${seed}:${i} the quick brown fox jumps over the lazy dog ${i % 97}\n`;
    lines.push(line);
    size += line.length;
  }
  return Buffer.from(lines.join('')).subarray(0, length);
}

/** 'zero' leaves a hole; 'zerofill' writes zero bytes (allocated, read by a backup). */
export type Part = { kind: 'random'; bytes: number; seed: number } | { kind: 'zero'; bytes: number } | { kind: 'zerofill'; bytes: number } | { kind: 'text'; bytes: number } | { kind: 'repeat'; bytes: number; seed: number };

/** Writes an image from parts; 'zero' parts are left as holes (a sparse file). */
export async function writeImage(path: string, parts: Part[]): Promise<number> {
  const handle = await fs.open(path, 'w');
  let at = 0;
  try {
    for (const part of parts) {
      if (part.kind !== 'zero') {
        const data = partBytes(part);
        await handle.write(data, 0, data.length, at);
      }
      at += part.bytes;
    }
    await handle.truncate(at);
  } finally {
    await handle.close();
  }
  return at;
}

function partBytes(part: Exclude<Part, { kind: 'zero' }>): Buffer {
  switch (part.kind) {
    case 'random':
      return seededBytes(part.seed, part.bytes);
    case 'text':
      return compressibleText(part.bytes);
    case 'repeat':
      return repeatBlock(part.seed, part.bytes);
    case 'zerofill':
      return Buffer.alloc(part.bytes);
  }
}

function repeatBlock(seed: number, bytes: number): Buffer {
  const block = seededBytes(seed, MiB);
  const out = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i += MiB) block.copy(out, i, 0, Math.min(MiB, bytes - i));
  return out;
}

/**
 * A mixed image: random, zeros, compressible text, a repeated 1 MiB block, an odd tail.
 * With 1 MiB chunks: 17 slots, 5 zero, 9 unique (3 random + 4 text + 1 repeated + 1 tail).
 * `sparse` leaves the zeros as a hole instead of writing them.
 */
export function mixedImage(path: string, seed = 1, sparse = false): Promise<number> {
  return writeImage(path, [
    { kind: 'random', bytes: 3 * MiB, seed },
    { kind: sparse ? 'zero' : 'zerofill', bytes: 5 * MiB },
    { kind: 'text', bytes: 4 * MiB },
    { kind: 'repeat', bytes: 4 * MiB, seed: seed + 100 },
    { kind: 'random', bytes: 12345, seed: seed + 1 },
  ]);
}

/** Writes `data` at `offset` of `path` and fsyncs it, as a guest flushing its disk does. */
export async function writeSynced(path: string, data: Buffer, offset: number): Promise<void> {
  const file = await fs.open(path, 'r+');
  try {
    await file.write(data, 0, data.length, offset);
    await file.sync();
  } finally {
    await file.close();
  }
}

/** A real ext4 image built from a directory tree with mkfs.ext4 -d. */
export function ext4Image(path: string, sizeMiB: number, fromDir: string): void {
  execFileSync('mkfs.ext4', ['-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', '-d', fromDir, path, `${sizeMiB}M`], { stdio: 'pipe' });
}

/** Streams' default 64 KiB reads make hashing a file five times slower than 1 MiB reads (measured here: 7.7 s against 1.4 s for 2 GiB). */
export const HASH_READ_BYTES = 1 << 20;

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: HASH_READ_BYTES })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** sha256 of the first `bytes` bytes of a file or device (a disk restored onto a larger device). */
export async function sha256Head(path: string, bytes: number): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { start: 0, end: bytes - 1, highWaterMark: HASH_READ_BYTES })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Waits for a child process and returns its exit code and output. */
export function collect(child: ChildProcessByStdio<Writable | null, Readable, Readable>): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Runs the real CLI (compiled) in a child process; a variable set to undefined in `env` is left out of its environment. */
export function cli(args: string[], env: Record<string, string | undefined> = {}): Promise<CliResult> {
  return collect(spawn(process.execPath, [CLI, ...args], { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] }));
}

/** This process's environment with `env` over it; undefined values remove a variable. */
export function childEnv(env: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(Object.entries({ ...process.env, ...env }).filter((e): e is [string, string] => e[1] !== undefined));
}

/** Runs the CLI and parses its --json output, failing loudly when it did not succeed. */
export async function cliJson<T = Record<string, unknown>>(args: string[], env: Record<string, string> = {}): Promise<T> {
  const result = await cli([...args, '--json'], env);
  if (result.code !== 0) throw new Error(`chunkvault ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}

/**
 * Checksums every file below dir (name and sha256): equal before and after means untouched.
 * Left out: lock files, and LevelDB's diagnostic LOG, which LevelDB rotates on every open
 * attempt, even one refused because another process holds the index.
 */
export async function treeDigest(dir: string): Promise<string> {
  const hash = createHash('sha256');
  const walk = async (sub: string): Promise<void> => {
    const entries = (await fs.readdir(join(dir, sub), { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name));
    for (const entry of entries) {
      const rel = join(sub, entry.name);
      if (entry.isDirectory()) await walk(rel);
      else if (entry.isFile() && !rel.startsWith('locks') && !/^index\/LOG(\.old)?$/.test(rel)) hash.update(`${rel}\0${await sha256File(join(dir, rel))}\n`);
    }
  };
  await walk('');
  return hash.digest('hex');
}

/**
 * Tests that need root, FUSE or loop devices: in CI they must run, so a missing
 * capability fails there; elsewhere they skip with the reason.
 */
export function requireCapability(t: Test, ok: boolean, reason: string): boolean {
  if (ok) return true;
  if (process.env.CI) t.fail(`required in CI: ${reason}`);
  else t.skip(reason, () => undefined);
  return false;
}

/** Bytes of `path` in the page cache (util-linux fincore). */
export function residentBytes(path: string): number {
  return Number(execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', path], { encoding: 'utf8' }).trim());
}

/** Mounts a filesystem of `type` (ramfs, tmpfs...) on a new directory in `dir`, detached at teardown (lazily: a child may still hold a file); needs root. */
export function mounted(t: Test, dir: string, type: string, options: string[] = []): string {
  const point = join(dir, type);
  execFileSync('mkdir', [point]);
  execFileSync('mount', ['-t', type, ...options, type, point]);
  t.teardown(() => execFileSync('umount', ['-l', point]));
  return point;
}

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

export { hasCommand } from '../../bench/peers.js';

/** A new store (1 MiB chunks) holding one backup of a mixed image, in a temp dir. */
export async function backedUpStore(t: Test): Promise<{ dir: string; store: string; image: string; id: string }> {
  const dir = await tempDir(t);
  const image = join(dir, 'disk.img');
  await mixedImage(image);
  return { dir, image, ...(await backedUpInto(dir, image)) };
}

/** A new store `dir/store` holding one backup of `image`. */
export async function backedUpInto(dir: string, image: string): Promise<{ store: string; id: string }> {
  const store = join(dir, 'store');
  await cliJson(['init', '--store', store]);
  const { id } = await cliJson<{ id: string }>(['backup', '--store', store, image]);
  return { store, id };
}

/** Restores a restore point through the CLI and checks it equals the image it was made from. */
export async function restoresIdentically(t: Test, store: string, id: string, image: string, out: string): Promise<void> {
  await cliJson(['restore', '--store', store, id, out]);
  t.equal(await sha256File(out), await sha256File(image), `${id} restores byte-identical`);
}
