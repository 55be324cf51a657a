/**
 * Who is using the store, and for what: one small object per running command,
 * `locks/<pid>-<random>.json`, saying its kind (shared or exclusive), the command, its holder,
 * and the restore points it pins (reads right now).
 * Not a mutex for the index (LevelDB's own lock is that): it names holders in busy messages,
 * keeps gc and backups apart, and tells gc which restore points readers still need.
 * Protocol (restic's): create your own lock object, THEN list the others; on a conflict,
 * remove your own and stop. Either of two racing lockers sees the other that way.
 * Leases: a held lock's `refreshed` is renewed every LEASE/5; one not renewed for LEASE is
 * stale (its holder is gone or cut off) and ignored, and its holder stops itself by then.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { LeaseLostError, StoreBusyError, storeReadError } from './errors.js';
import { objectName, type Backend } from './backend/backend.js';

/**
 * shared and exclusive coordinate the store's data (gc against readers and writers); `keys` is
 * a change of the key objects, which excludes only another such change (two removals that each
 * see a second key left could otherwise remove both).
 */
export type LockKind = 'shared' | 'exclusive' | 'keys';

export interface LockInfo {
  kind: LockKind;
  command: string;
  pid: number;
  host: string;
  started: string;
  refreshed: string;
  /** Restore point ids the holder reads now: gc keeps what they reference. */
  pins: string[];
}

export interface HeldLock {
  info: LockInfo;
  /** Replaces the pins; resolves once the lock object says so (pin before reading). */
  pin(ids: string[]): Promise<void>;
  release(): Promise<void>;
}

export interface LockOptions {
  kind?: LockKind;
  pins?: string[];
  /** Shared locks of others that an exclusive lock may run beside (gc beside readers that pin). */
  tolerates?: (other: LockInfo) => boolean;
  /** Called once the lease could not be renewed for LEASE: the command must stop. Default: exit. */
  onLeaseLost?: (err: Error) => void;
}

const DEFAULT_LEASE_SECONDS = 600;

/** LEASE in ms: CHUNKVAULT_LEASE_SECONDS (for tests), else ten minutes. */
export function leaseMs(): number {
  const seconds = Number(process.env.CHUNKVAULT_LEASE_SECONDS);
  return (Number.isFinite(seconds) && seconds > 0 ? seconds : DEFAULT_LEASE_SECONDS) * 1000;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const PREFIX = 'locks/';
/**
 * A lock being written by chunkvault before the storage seam: `<pid>-<random>.json.<host>.tmp`,
 * renamed to its .json name once whole. Those of processes gone from this host are removed.
 * (A lock is now a conditional create: what a writer killed meanwhile leaves is a dot-named
 * temp file, which gc reclaims with the store's other temp files.)
 */
const PARTIAL_LOCK = /^(\d+)-[0-9a-f]+\.json\.(.+)\.tmp$/;

const encode = (info: LockInfo): Buffer => Buffer.from(JSON.stringify(info) + '\n');

/**
 * Creates this command's lock object, then looks at the others: a shared lock gives way to an
 * exclusive one, an exclusive lock to every other lock it does not tolerate.
 */
export async function acquireLock(backend: Backend, command: string, options: LockOptions = {}): Promise<HeldLock> {
  const now = new Date().toISOString();
  const info: LockInfo = { kind: options.kind ?? 'shared', command, pid: process.pid, host: hostname(), started: now, refreshed: now, pins: options.pins ?? [] };
  let key: string;
  // Whole or absent, and never another's: a random name already taken is drawn again.
  do key = `${PREFIX}${process.pid}-${randomBytes(3).toString('hex')}.json`;
  while (!(await backend.create(key, encode(info))));
  try {
    const others = (await liveLocks(backend, info.kind === 'exclusive')).filter(([k]) => k !== key).map(([, l]) => l);
    const holders = others.filter((l) => conflicts(info, l, options.tolerates));
    if (holders.length > 0) {
      const holder = describeLocks(holders);
      throw new StoreBusyError(busyMessage(info, holder), { holder });
    }
  } catch (err) {
    await backend.delete([key]);
    throw err;
  }
  return new Lease(backend, key, info, options.onLeaseLost ?? exitOnLeaseLost);
}

function busyMessage(mine: LockInfo, holder: string): string {
  const name = mine.command.split(' ')[0];
  if (mine.kind === 'keys') return `'${mine.command}' cannot run while ${holder} changes the store's keys; run it when that has finished`;
  if (mine.kind === 'exclusive') return `${name} cannot run while ${holder} may use chunks it would delete; run ${name} when that has finished`;
  return `'${name}' cannot run while ${holder} holds the store exclusively; run '${name}' when that has finished`;
}

function conflicts(mine: LockInfo, other: LockInfo, tolerates: LockOptions['tolerates']): boolean {
  if (mine.kind === 'keys' || other.kind === 'keys') return mine.kind === other.kind;
  if (mine.kind === 'shared') return other.kind === 'exclusive';
  return other.kind === 'exclusive' || !(tolerates?.(other) ?? false);
}

/** A command that lost its lease stops at once: it no longer keeps gc away from what it uses. */
function exitOnLeaseLost(err: Error): void {
  process.stderr.write(`chunkvault: ${err.message}\n`);
  process.exit(err instanceof LeaseLostError ? err.exitCode : 2);
}

/** A held lock whose `refreshed` a timer renews every LEASE/5, off the event loop's critical path. */
class Lease implements HeldLock {
  private readonly timer: NodeJS.Timeout;
  private lastRenewed = Date.now();
  /** Writes of the lock object, one at a time: a pin and a renewal never interleave. */
  private writing: Promise<void> = Promise.resolve();
  private released = false;
  private lost = false;

  constructor(
    private readonly backend: Backend,
    private readonly key: string,
    readonly info: LockInfo,
    private readonly onLost: (err: Error) => void,
  ) {
    this.timer = setInterval(() => void this.renew(), leaseMs() / 5);
    this.timer.unref();
  }

  pin(ids: string[]): Promise<void> {
    this.info.pins = [...new Set(ids)];
    return this.write();
  }

  async release(): Promise<void> {
    this.released = true;
    clearInterval(this.timer);
    await this.writing.catch(() => undefined);
    // A lost lock is no longer this command's to rely on (another may have removed it as stale):
    // removing what is left of it is a courtesy whose failure changes nothing.
    await this.backend.delete([this.key]).catch((err: unknown) => {
      if (!this.lost) throw err;
    });
  }

  /** A failed renewal is logged and tried again at the next tick, until LEASE has passed without one. */
  private async renew(): Promise<void> {
    try {
      await this.write();
    } catch (err) {
      if (this.released) return;
      const name = objectName(this.backend, this.key);
      const reason = err instanceof Error ? err.message : String(err);
      if (Date.now() - this.lastRenewed < leaseMs()) {
        process.stderr.write(`chunkvault: could not renew lock ${name} (${reason}); retrying\n`);
        return;
      }
      clearInterval(this.timer);
      this.lost = true;
      this.onLost(new LeaseLostError(`'${this.info.command}' stopped: its lock ${name} could not be renewed for ${leaseMs() / 1000} s (${reason}), and gc may no longer keep what it uses`, { lock: name }, err));
    }
  }

  private write(): Promise<void> {
    const written = this.writing.catch(() => undefined).then(async () => {
      if (this.released) return;
      // Gone means another process found it stale and removed it: writing it again would hide that.
      if ((await this.backend.get(this.key)) === null) throw new Error('the lock object was removed');
      // Past its lease (a process stopped or starved that long), another may be removing it right now.
      if (Date.now() - this.lastRenewed >= leaseMs()) throw new Error(`it was not renewed for ${leaseMs() / 1000} s, so others may take it for stale`);
      const now = new Date();
      this.info.refreshed = now.toISOString();
      await this.backend.put(this.key, encode(this.info));
      this.lastRenewed = now.getTime();
    });
    this.writing = written;
    return written;
  }
}

function diedHere(pid: number, host: string): boolean {
  return host === hostname() && !isAlive(pid);
}

/** Not renewed for LEASE. A lock that never said when it was renewed (before leases) is not known to be stale. */
function isStale(lock: LockInfo): boolean {
  const refreshed = Date.parse(lock.refreshed);
  return !Number.isNaN(refreshed) && Date.now() - refreshed > leaseMs();
}

const isKind = (kind: unknown): kind is LockKind => kind === 'shared' || kind === 'exclusive' || kind === 'keys';

/**
 * A lock object of any version: one written before kinds, pins and leases is a shared lock of
 * its command pinning nothing, last renewed when it started.
 */
function parseLock(text: string): LockInfo | null {
  const raw = JSON.parse(text) as Partial<Record<keyof LockInfo, unknown>>;
  if (!Number.isSafeInteger(raw.pid) || typeof raw.host !== 'string' || typeof raw.command !== 'string') return null;
  const kind = raw.kind ?? 'shared';
  const started = typeof raw.started === 'string' ? raw.started : '';
  const refreshed = raw.refreshed ?? started;
  const pins = raw.pins ?? [];
  if (!isKind(kind) || typeof refreshed !== 'string' || !Array.isArray(pins) || !pins.every((p) => typeof p === 'string')) return null;
  return { kind, command: raw.command, pid: raw.pid as number, host: raw.host, started, refreshed, pins: pins as string[] };
}

/**
 * A lock that is there must be read: gc decides from these what readers still need, so an
 * unreadable one stops the caller instead of passing for no lock.
 */
async function readLock(backend: Backend, key: string): Promise<LockInfo | null> {
  const name = objectName(backend, key);
  const bytes = await backend.get(key).catch((err: unknown) => {
    throw storeReadError(name, err);
  });
  if (!bytes) return null; // released meanwhile
  try {
    const info = parseLock(bytes.toString('utf8'));
    if (info) return info;
  } catch {
    // reported below
  }
  throw storeReadError(name, new Error('not a lock file: remove it if no chunkvault command is running'));
}

/**
 * Live locks by key. Locks of processes that died on this host are removed on the way; stale
 * ones (lease run out) are left out, and removed too when `removeStale` (gc).
 */
async function liveLocks(backend: Backend, removeStale: boolean): Promise<[string, LockInfo][]> {
  const names = (await backend.list(PREFIX).catch((err: unknown) => {
    throw storeReadError(objectName(backend, PREFIX), err);
  })).map((o) => o.key.slice(PREFIX.length)).filter((n) => !n.includes('/'));
  const live: [string, LockInfo][] = [];
  const partials = names.map((n) => PARTIAL_LOCK.exec(n)).filter((m): m is RegExpExecArray => m !== null);
  await backend.delete(partials.filter((m) => diedHere(Number(m[1]), m[2])).map((m) => PREFIX + m[0]));
  for (const name of names.filter((n) => n.endsWith('.json') && !n.startsWith('.'))) {
    const key = PREFIX + name;
    const info = await readLock(backend, key);
    if (!info) continue;
    const stale = isStale(info);
    if (diedHere(info.pid, info.host) || (stale && removeStale)) await backend.delete([key]);
    else if (!stale) live.push([key, info]);
  }
  return live;
}

/** Live locks; locks of processes that died on this host are removed on the way. */
export async function listLocks(backend: Backend): Promise<LockInfo[]> {
  return (await liveLocks(backend, false)).map(([, info]) => info);
}

function isOwn(lock: LockInfo): boolean {
  return lock.pid === process.pid && lock.host === hostname();
}

/**
 * Who holds the store. The caller's own locks are left out beside others' (a mount waiting for
 * the index holds one too, and is not what it waits for); alone, they are the holders (a reader
 * in the same process stops gc like any other).
 */
export function describeLocks(locks: LockInfo[]): string {
  const others = locks.filter((l) => !isOwn(l));
  const holders = others.length > 0 ? others : locks;
  if (holders.length === 0) return 'another process has the index open';
  return holders.map((l) => `'${l.command}' (pid ${l.pid} on ${l.host}, since ${l.started})`).join(', ');
}
