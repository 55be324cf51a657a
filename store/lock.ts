/**
 * Who is using the store: one small file per running command (pid, host, command, start).
 * Not a mutex (LevelDB's own lock is that); it names the holder in busy messages and lets
 * gc see readers (mount, restore) that must not lose packs under them.
 */
import { promises as fs } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

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

export async function acquireLock(dir: string, command: string): Promise<HeldLock> {
  const info: LockInfo = { pid: process.pid, host: hostname(), command, started: new Date().toISOString() };
  const path = join(dir, `${process.pid}-${randomBytes(3).toString('hex')}.json`);
  await fs.writeFile(path, JSON.stringify(info) + '\n');
  return { info, release: () => fs.rm(path, { force: true }) };
}

/** Live locks; locks of processes that died on this host are removed on the way. */
export async function listLocks(dir: string): Promise<LockInfo[]> {
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  const live: LockInfo[] = [];
  for (const name of names.filter((n) => n.endsWith('.json'))) {
    const path = join(dir, name);
    const info = await fs
      .readFile(path, 'utf8')
      .then((t) => JSON.parse(t) as LockInfo)
      .catch(() => null);
    if (!info) continue;
    if (info.host === hostname() && !isAlive(info.pid)) {
      await fs.rm(path, { force: true });
      continue;
    }
    live.push(info);
  }
  return live;
}

export function describeLocks(locks: LockInfo[]): string {
  if (locks.length === 0) return 'another process has the index open';
  return locks.map((l) => `'${l.command}' (pid ${l.pid} on ${l.host}, since ${l.started})`).join(', ');
}
