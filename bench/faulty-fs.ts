/**
 * A fault-injecting FUSE passthrough: serves the directory BACKING at MOUNTPOINT, complete
 * enough that a whole store works through it (LevelDB, packs opened O_DIRECT, fsync of
 * directories), and fails the operations a rules file names with the errno it names.
 *
 *   node dist/bench/faulty-fs.js BACKING MOUNTPOINT RULES [--seed N]
 *
 * RULES is JSON: {"id": "any label", "rules": [{"path": "<regex on the path inside the mount,
 * e.g. ^/catalog/[^/]+\\.json$>", "ops": ["open", "read", "readdir", "getattr", ...],
 * "errno": "EIO", "probability": 0.5, "count": 3}]}; probability defaults to 1, count (at
 * most that many injections) to unlimited. The file is re-read whenever it changes, so faults
 * can be switched on and off while the mount stays up.
 *
 * Prints `ready` once mounted, `rules <id>` each time it has loaded the rules file, and
 * `injected <op> <path> <errno>` for every fault; unmounts and exits on SIGTERM. Its own
 * process: a FUSE server must never share an event loop with the client it serves. Every
 * backing call is asynchronous (the FUSE threads wait on this loop), each open has its own
 * file descriptor, and errors pass through with their own errno.
 */
import { spawn } from 'node:child_process';
import fs, { constants as O } from 'node:fs';
import { constants as os } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { packageRoot } from '../engine/package-root.js';
import { createFuse, type FuseOperations, type FuseOptions } from '../fuse/fuse-native.js';
import { random } from './workload.js';

export interface FaultRule {
  /** A regular expression on the path inside the mount (it starts with '/'). */
  path: string;
  /** FUSE operation names: open, read, readdir, getattr, write, create, rename, unlink... */
  ops: string[];
  /** An errno name of os.constants.errno: EIO, EMFILE, EACCES, ENFILE... */
  errno: string;
  probability?: number;
  count?: number;
}

export interface FaultRules {
  /** Echoed once loaded (`rules <id>`): how a client knows its rules are in force. */
  id?: string;
  rules: FaultRule[];
}

interface ActiveRule {
  path: RegExp;
  ops: Set<string>;
  errno: number;
  name: string;
  probability: number;
  left: number;
}

type Done = (result: number) => void;
type Reply<T> = (err: number, value?: T) => void;

/** How often the rules file is looked at: a switch takes effect within this. */
const RULES_POLL_MS = 10;
/** fuse-native reports a statfs in 32-bit fields. */
const U32_MAX = 0xffffffff;
/** Flags the kernel has already acted on: the backing open must not repeat them. */
const KERNEL_FLAGS = O.O_DIRECT | O.O_APPEND | O.O_CREAT | O.O_EXCL | O.O_TRUNC | O.O_NOCTTY;

export function negativeErrno(err: NodeJS.ErrnoException | null): number {
  if (!err) return 0;
  const number = err.code === undefined ? undefined : (os.errno as Record<string, number>)[err.code];
  return -(number ?? os.errno.EIO);
}

export function parseRules(text: string): ActiveRule[] {
  const parsed = JSON.parse(text) as FaultRules;
  if (!Array.isArray(parsed.rules)) throw new Error('rules: expected {"rules": [...]}');
  return parsed.rules.map((rule) => {
    const errno = (os.errno as Record<string, number>)[rule.errno];
    if (errno === undefined) throw new Error(`rules: unknown errno '${rule.errno}'`);
    if (!Array.isArray(rule.ops) || rule.ops.length === 0) throw new Error(`rules: rule for ${rule.path} names no ops`);
    return { path: new RegExp(rule.path), ops: new Set(rule.ops), errno: -errno, name: rule.errno, probability: rule.probability ?? 1, left: rule.count ?? Infinity };
  });
}

class Faults {
  private rules: ActiveRule[] = [];
  private version = '';
  private readonly rng: () => number;

  constructor(
    private readonly file: string,
    seed: number,
    private readonly say: (line: string) => void,
  ) {
    this.rng = random(seed);
  }

  /** Reloads when the file changed (a new inode, size or mtime); a bad file keeps the old rules. */
  async poll(): Promise<void> {
    const stat = await fs.promises.stat(this.file).catch(() => null);
    const version = stat ? `${stat.ino}:${stat.size}:${stat.mtimeMs}` : 'none';
    if (version === this.version) return;
    this.version = version;
    try {
      const text = stat ? await fs.promises.readFile(this.file, 'utf8') : '{"rules":[]}';
      this.rules = parseRules(text);
      this.say(`rules ${(JSON.parse(text) as FaultRules).id ?? version}`);
    } catch (err) {
      process.stderr.write(`faulty-fs: ${this.file}: ${(err as Error).message}; keeping the previous rules\n`);
    }
  }

  /** The negative errno to fail `op` on `path` with, or 0 to let it through. */
  check(op: string, path: string): number {
    for (const rule of this.rules) {
      if (rule.left <= 0 || !rule.ops.has(op) || !rule.path.test(path)) continue;
      if (rule.probability < 1 && this.rng() >= rule.probability) continue;
      rule.left--;
      this.say(`injected ${op} ${path} ${rule.name}`);
      return rule.errno;
    }
    return 0;
  }
}

/** Every FUSE operation a store needs, on BACKING, each behind the fault check. */
function passthrough(backing: string, faults: Faults): Record<string, (...args: never[]) => void> {
  const real = (path: string): string => join(backing, path);
  const status = (cb: Done) => (err: NodeJS.ErrnoException | null) => cb(negativeErrno(err));
  const count = (cb: Done) => (err: NodeJS.ErrnoException | null, n: number) => cb(err ? negativeErrno(err) : n);
  const value =
    <T>(cb: Reply<T>) =>
    (err: NodeJS.ErrnoException | null, v?: T) =>
      err ? cb(negativeErrno(err)) : cb(0, v);
  const attributes = (s: fs.Stats) => ({ mode: s.mode, uid: s.uid, gid: s.gid, size: s.size, nlink: s.nlink, rdev: s.rdev, blksize: s.blksize, blocks: s.blocks, atime: s.atime, mtime: s.mtime, ctime: s.ctime });
  const getattr = (path: string, cb: Reply<ReturnType<typeof attributes>>) => fs.lstat(real(path), (err, s) => (err ? cb(negativeErrno(err)) : cb(0, attributes(s))));

  const ops = {
    getattr,
    fgetattr: (path: string, _fd: number, cb: Reply<ReturnType<typeof attributes>>) => getattr(path, cb),
    access: (path: string, mode: number, cb: Done) => fs.access(real(path), mode, status(cb)),
    statfs: (path: string, cb: Reply<Record<string, number>>) =>
      fs.statfs(real(path), (err, s) => {
        if (err) return cb(negativeErrno(err));
        const clamp = (n: number): number => Math.min(n, U32_MAX);
        cb(0, { bsize: s.bsize, frsize: s.bsize, blocks: clamp(s.blocks), bfree: clamp(s.bfree), bavail: clamp(s.bavail), files: clamp(s.files), ffree: clamp(s.ffree), favail: clamp(s.ffree), fsid: 0, flag: 0, namemax: 255 });
      }),
    readdir: (path: string, cb: Reply<string[]>) => fs.readdir(real(path), value(cb)),
    opendir: (path: string, _flags: number, cb: Reply<number>) => fs.open(real(path), O.O_RDONLY | O.O_DIRECTORY, value(cb)),
    releasedir: (_path: string, fd: number, cb: Done) => fs.close(fd, status(cb)),
    fsyncdir: (_path: string, _datasync: number, fd: number, cb: Done) => fs.fsync(fd, status(cb)),
    // The kernel has applied O_CREAT, O_TRUNC and O_APPEND itself, and sends direct I/O
    // through uncached requests: the backing file is opened plainly.
    open: (path: string, flags: number, cb: Reply<number>) => fs.open(real(path), flags & ~KERNEL_FLAGS, value(cb)),
    create: (path: string, mode: number, cb: Reply<number>) => fs.open(real(path), O.O_CREAT | O.O_RDWR, mode, value(cb)),
    read: (_path: string, fd: number, buf: Buffer, len: number, pos: number, cb: Done) => fs.read(fd, buf, 0, len, pos, count(cb)),
    write: (_path: string, fd: number, buf: Buffer, len: number, pos: number, cb: Done) => fs.write(fd, buf, 0, len, pos, count(cb)),
    // close(2) of one of several duplicates of a descriptor: nothing to do until release.
    flush: (_path: string, _fd: number, cb: Done) => cb(0),
    fsync: (_path: string, datasync: number, fd: number, cb: Done) => (datasync ? fs.fdatasync(fd, status(cb)) : fs.fsync(fd, status(cb))),
    release: (_path: string, fd: number, cb: Done) => fs.close(fd, status(cb)),
    truncate: (path: string, size: number, cb: Done) => fs.truncate(real(path), size, status(cb)),
    ftruncate: (_path: string, fd: number, size: number, cb: Done) => fs.ftruncate(fd, size, status(cb)),
    // fuse-native passes the access time as both times, in milliseconds.
    utimens: (path: string, atime: number, mtime: number, cb: Done) => fs.utimes(real(path), atime / 1000, mtime / 1000, status(cb)),
    chmod: (path: string, mode: number, cb: Done) => fs.chmod(real(path), mode, status(cb)),
    chown: (path: string, uid: number, gid: number, cb: Done) => fs.lchown(real(path), uid, gid, status(cb)),
    readlink: (path: string, cb: Reply<string>) => fs.readlink(real(path), value(cb)),
    symlink: (target: string, path: string, cb: Done) => fs.symlink(target, real(path), status(cb)),
    link: (from: string, to: string, cb: Done) => fs.link(real(from), real(to), status(cb)),
    unlink: (path: string, cb: Done) => fs.unlink(real(path), status(cb)),
    rename: (from: string, to: string, cb: Done) => fs.rename(real(from), real(to), status(cb)),
    mkdir: (path: string, mode: number, cb: Done) => fs.mkdir(real(path), mode, status(cb)),
    rmdir: (path: string, cb: Done) => fs.rmdir(real(path), status(cb)),
  };
  return Object.fromEntries(Object.entries(ops).map(([op, fn]) => [op, withFaults(op, fn as (...args: unknown[]) => void, faults)]));
}

/** The operation, unless a rule fails it first: the callback is always the last argument. */
function withFaults(op: string, fn: (...args: unknown[]) => void, faults: Faults): (...args: never[]) => void {
  return (...args: unknown[]) => {
    const errno = faults.check(op, args[0] as string);
    if (errno === 0) return fn(...args);
    (args[args.length - 1] as (err: number) => void)(errno);
  };
}

/**
 * allow_other and default_permissions: root and `nobody` see the backing modes, checked by the
 * kernel; hard_remove: an unlinked open file leaves no .fuse_hidden file in BACKING; no attribute
 * or entry caching, so a fault switched on applies to the very next lookup.
 */
const MOUNT_OPTIONS = ['default_permissions', 'hard_remove', 'attr_timeout=0', 'entry_timeout=0', 'negative_timeout=0'];

/** The server as its users run it: compiled, in its own process. */
export const FAULTY_FS = join(packageRoot(import.meta.url), 'dist', 'bench', 'faulty-fs.js');
/** A server that has not mounted or loaded its rules by then is not coming. */
const STARTUP_MS = 10_000;

export interface FaultyFs {
  /** Replaces the rules and resolves once the server has loaded them; [] switches faults off. */
  setRules(rules: FaultRule[]): Promise<void>;
  /** The `injected <op> <path> <errno>` lines since the last setRules. */
  readonly injected: string[];
  /** Unmounts and waits for the server to exit. */
  stop(): Promise<void>;
}

/** Starts faulty-fs serving `backing` at `mountpoint` (an existing empty directory), no faults yet. */
export async function startFaultyFs(backing: string, mountpoint: string, rulesFile: string, seed = 1): Promise<FaultyFs> {
  let generation = 0;
  const writeRules = async (rules: FaultRule[]): Promise<string> => {
    const id = String(++generation);
    // Whole or not at all: the server may look at the file at any moment.
    await fs.promises.writeFile(`${rulesFile}.tmp`, JSON.stringify({ id, rules } satisfies FaultRules));
    await fs.promises.rename(`${rulesFile}.tmp`, rulesFile);
    return id;
  };
  const first = await writeRules([]);
  const child = spawn(process.execPath, [FAULTY_FS, backing, mountpoint, rulesFile, '--seed', String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  const injected: string[] = [];
  const waiting = new Map<string, () => void>();
  createInterface({ input: child.stdout }).on('line', (line) => {
    if (line.startsWith('injected ')) injected.push(line.slice('injected '.length));
    waiting.get(line)?.();
  });
  const seen = (line: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`faulty-fs did not print '${line}' within ${STARTUP_MS} ms: ${stderr.trim()}`)), STARTUP_MS);
      waiting.set(line, () => {
        clearTimeout(timer);
        waiting.delete(line);
        resolve();
      });
      void exited.then(() => reject(new Error(`faulty-fs exited before '${line}': ${stderr.trim()}`)));
    });
  await Promise.all([seen(`rules ${first}`), seen('ready')]);
  return {
    injected,
    async setRules(rules) {
      const id = String(generation + 1);
      const loaded = seen(`rules ${id}`);
      await writeRules(rules);
      await loaded;
      injected.length = 0;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

async function main(): Promise<void> {
  const { positionals, values } = parseArgs({ allowPositionals: true, options: { seed: { type: 'string', default: '1' } } });
  const [backing, mountpoint, rulesFile] = positionals;
  if (positionals.length !== 3) throw new Error('usage: faulty-fs BACKING MOUNTPOINT RULES [--seed N]');
  const seed = Number(values.seed);
  if (!Number.isSafeInteger(seed)) throw new Error(`--seed: '${values.seed}' is not a whole number`);
  const say = (line: string): boolean => process.stdout.write(line + '\n');
  const faults = new Faults(rulesFile, seed, say);
  await faults.poll();
  const options = { timeout: false, allowOther: true, force: true } as FuseOptions;
  const fuse = createFuse(mountpoint, passthrough(backing, faults) as unknown as FuseOperations, options, MOUNT_OPTIONS);
  await new Promise<void>((resolve, reject) => fuse.mount((err) => (err ? reject(new Error(`mount ${mountpoint}: ${err.message}`)) : resolve())));
  const polling = setInterval(() => void faults.poll(), RULES_POLL_MS);
  process.on('SIGTERM', () => {
    clearInterval(polling);
    fuse.unmount(() => process.exit(0));
  });
  say('ready');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err: Error) => {
    process.stderr.write(`faulty-fs: ${err.message}\n`);
    process.exit(1);
  });
}
