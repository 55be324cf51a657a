/**
 * Who is using the store: one small file per running command (pid, host, command, start).
 * Not a mutex (LevelDB's own lock is that); it names the holder in busy messages and lets
 * gc see readers (mount, restore) that must not lose packs under them.
 */
import { promises as fs } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { PRIVATE_FILE_MODE } from './durable.js';
import { isAbsent, storeReadError } from './errors.js';

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

/** A lock being written: `<pid>-<random>.json.<host>.tmp`, renamed to its .json name once whole. */
const PARTIAL_LOCK = /^(\d+)-[0-9a-f]+\.json\.(.+)\.tmp$/;

export async function acquireLock(dir: string, command: string): Promise<HeldLock> {
  const info: LockInfo = { pid: process.pid, host: hostname(), command, started: new Date().toISOString() };
  const path = join(dir, `${process.pid}-${randomBytes(3).toString('hex')}.json`);
  // Whole or absent: a command killed while writing its lock leaves a partial file that names
  // its pid and host, which listLocks removes once that process is gone.
  const partial = `${path}.${info.host}.tmp`;
  await fs.writeFile(partial, JSON.stringify(info) + '\n', { mode: PRIVATE_FILE_MODE });
  await fs.rename(partial, path);
  return { info, release: () => fs.rm(path, { force: true }) };
}

function diedHere(pid: number, host: string): boolean {
  return host === hostname() && !isAlive(pid);
}

/**
 * A lock that is there must be read: gc decides from these whether a mount may be reading the
 * packs it would delete, so an unreadable one stops the caller instead of passing for no lock.
 */
async function readLock(path: string): Promise<LockInfo | null> {
  let text: string;
  try {
    text = await fs.readFile(path, 'utf8');
  } catch (err) {
    if (isAbsent(err)) return null; // released meanwhile
    throw storeReadError(path, err);
  }
  try {
    const info = JSON.parse(text) as LockInfo;
    if (Number.isSafeInteger(info.pid) && typeof info.host === 'string' && typeof info.command === 'string') return info;
  } catch {
    // reported below
  }
  throw storeReadError(path, new Error('not a lock file: remove it if no chunkvault command is running'));
}

/** Live locks; locks of processes that died on this host are removed on the way. */
export async function listLocks(dir: string): Promise<LockInfo[]> {
  const names = await fs.readdir(dir).catch((err: unknown) => {
    throw storeReadError(dir, err);
  });
  const live: LockInfo[] = [];
  for (const partial of names.map((n) => PARTIAL_LOCK.exec(n)).filter((m): m is RegExpExecArray => m !== null)) {
    if (diedHere(Number(partial[1]), partial[2])) await fs.rm(join(dir, partial[0]), { force: true });
  }
  for (const name of names.filter((n) => n.endsWith('.json'))) {
    const path = join(dir, name);
    const info = await readLock(path);
    if (!info) continue;
    if (diedHere(info.pid, info.host)) {
      await fs.rm(path, { force: true });
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
