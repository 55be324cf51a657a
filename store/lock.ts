/**
 * Who is using the store: one small object per running command (pid, host, command, start),
 * `locks/<pid>-<random>.json`.
 * Not a mutex (LevelDB's own lock is that); it names the holder in busy messages and lets
 * gc see readers (mount, restore) that must not lose packs under them.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { storeReadError } from './errors.js';
import { objectName, type Backend } from './backend/backend.js';

export interface LockInfo {
  pid: number;
  host: string;
  command: string;
  started: string;
}

export interface HeldLock {
  info: LockInfo;
  release(): Promise<void>;
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

export async function acquireLock(backend: Backend, command: string): Promise<HeldLock> {
  const info: LockInfo = { pid: process.pid, host: hostname(), command, started: new Date().toISOString() };
  const data = Buffer.from(JSON.stringify(info) + '\n');
  let key: string;
  // Whole or absent, and never another's: a random name already taken is drawn again.
  do key = `${PREFIX}${process.pid}-${randomBytes(3).toString('hex')}.json`;
  while (!(await backend.create(key, data)));
  return { info, release: () => backend.delete([key]) };
}

function diedHere(pid: number, host: string): boolean {
  return host === hostname() && !isAlive(pid);
}

/**
 * A lock that is there must be read: gc decides from these whether a mount may be reading the
 * packs it would delete, so an unreadable one stops the caller instead of passing for no lock.
 */
async function readLock(backend: Backend, key: string): Promise<LockInfo | null> {
  const name = objectName(backend, key);
  const bytes = await backend.get(key).catch((err: unknown) => {
    throw storeReadError(name, err);
  });
  if (!bytes) return null; // released meanwhile
  try {
    const info = JSON.parse(bytes.toString('utf8')) as LockInfo;
    if (Number.isSafeInteger(info.pid) && typeof info.host === 'string' && typeof info.command === 'string') return info;
  } catch {
    // reported below
  }
  throw storeReadError(name, new Error('not a lock file: remove it if no chunkvault command is running'));
}

/** Live locks; locks of processes that died on this host are removed on the way. */
export async function listLocks(backend: Backend): Promise<LockInfo[]> {
  const names = (await backend.list(PREFIX).catch((err: unknown) => {
    throw storeReadError(objectName(backend, PREFIX), err);
  })).map((o) => o.key.slice(PREFIX.length)).filter((n) => !n.includes('/'));
  const live: LockInfo[] = [];
  const partials = names.map((n) => PARTIAL_LOCK.exec(n)).filter((m): m is RegExpExecArray => m !== null);
  await backend.delete(partials.filter((m) => diedHere(Number(m[1]), m[2])).map((m) => PREFIX + m[0]));
  for (const name of names.filter((n) => n.endsWith('.json') && !n.startsWith('.'))) {
    const info = await readLock(backend, PREFIX + name);
    if (!info) continue;
    if (diedHere(info.pid, info.host)) {
      await backend.delete([PREFIX + name]);
      continue;
    }
    live.push(info);
  }
  return live;
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
