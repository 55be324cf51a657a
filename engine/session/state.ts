/**
 * Where a recovery session keeps itself. Its state directory (beside the mountpoint unless
 * --state names one) holds session.json, the two bitmaps and, without a TARGET, the sparse
 * delta file. A registry of small files (one per mountpoint, naming the state directory) lets
 * `--stop DIR`, `--resume DIR`, `--discard DIR` and `--list` find sessions: it lives in
 * $CHUNKVAULT_SESSIONS, else $XDG_STATE_HOME/chunkvault/sessions, else
 * ~/.local/state/chunkvault/sessions, so it survives a reboot.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, writeFileDurable } from '../../store/durable.js';
import { SessionError, errnoOf, isAbsent, storeReadError } from '../errors.js';

/**
 * Copy-on-write granularity. 64 KiB rather than 4 KiB: the bitmaps of a 2 TB disk stay at
 * 4 MiB each (16 times less to save on an fsync), and a later backup of the session reads
 * 64 KiB ranges, a sixteenth of a 1 MiB chunk. The price is a read-modify-write of one base
 * block for a first small write, served from the chunk cache the guest's reads fill anyway.
 */
export const SESSION_BLOCK_BYTES = 64 * 1024;
const FORMAT = 'chunkvault-recover-session';
const VERSION = 1;
export const STATE_SUFFIX = '.chunkvault-session';
/** The lock command of a serving session, `recover <id> <DIR>` (gc.ts and prune.ts read its first two words). */
export const RECOVER_COMMAND = 'recover';

export interface SessionRecord {
  format: typeof FORMAT;
  version: typeof VERSION;
  /** The store directory, with symlinks followed. */
  store: string;
  point: string;
  label: string;
  size: number;
  blockSize: number;
  mountpoint: string;
  state: string;
  /** Where guest writes and hydration go; null: the delta file in the state directory. */
  target: string | null;
  /** The session created TARGET: where it still reads zero, the disk is zero (no need to write zeros). */
  targetCreated: boolean;
  created: string;
}

export const SESSION_FILES = { record: 'session.json', delta: 'delta.img', present: 'present.bitmap', dirty: 'dirty.bitmap' } as const;

export function sessionFile(record: Pick<SessionRecord, 'state'>, name: keyof typeof SESSION_FILES): string {
  return join(record.state, SESSION_FILES[name]);
}

/** What the content file is: TARGET, or the delta. */
export function contentPath(record: SessionRecord): string {
  return record.target ?? sessionFile(record, 'delta');
}

export function registryDir(): string {
  if (process.env.CHUNKVAULT_SESSIONS) return resolve(process.env.CHUNKVAULT_SESSIONS);
  return join(process.env.XDG_STATE_HOME ?? join(homedir(), '.local', 'state'), 'chunkvault', 'sessions');
}

/**
 * A path with its parent's symlinks followed. The last name is kept as given: a mountpoint
 * left stale by a killed session cannot be stat'ed (ENOTCONN), yet must name its session.
 */
export async function canonicalPath(path: string, what: string): Promise<string> {
  const absolute = resolve(path);
  const parent = await fs.realpath(dirname(absolute)).catch((err: unknown) => {
    throw new SessionError(`${what} ${path}: directory ${dirname(absolute)} ${isAbsent(err) ? 'does not exist' : `cannot be examined (${errnoOf(err)})`}`, { path });
  });
  return join(parent, basename(absolute));
}

function registryEntry(mountpoint: string): string {
  return join(registryDir(), `${createHash('sha256').update(mountpoint).digest('hex').slice(0, 32)}.json`);
}

/** Records the session of `record.mountpoint`; a mountpoint that has one already is refused. */
export async function registerSession(record: SessionRecord): Promise<void> {
  await fs.mkdir(registryDir(), { recursive: true, mode: PRIVATE_DIR_MODE });
  try {
    await fs.writeFile(registryEntry(record.mountpoint), JSON.stringify({ mountpoint: record.mountpoint, state: record.state }) + '\n', { flag: 'wx', mode: PRIVATE_FILE_MODE });
  } catch (err) {
    if (errnoOf(err) === 'EEXIST') throw alreadyHasSession(record.mountpoint);
    throw err;
  }
}

export function alreadyHasSession(mountpoint: string): SessionError {
  return new SessionError(`${mountpoint} has a recovery session already: --resume, --stop or --discard it, or choose another directory (nothing was created)`, { mountpoint });
}

export async function unregisterSession(record: SessionRecord): Promise<void> {
  await fs.rm(registryEntry(record.mountpoint), { force: true });
}

export async function hasSession(mountpoint: string): Promise<boolean> {
  return (await readEntry(registryEntry(mountpoint))) !== null;
}

async function readEntry(path: string): Promise<{ mountpoint: string; state: string } | null> {
  try {
    return JSON.parse(await fs.readFile(path, 'utf8')) as { mountpoint: string; state: string };
  } catch (err) {
    if (isAbsent(err)) return null;
    throw storeReadError(path, err);
  }
}

export async function saveRecord(record: SessionRecord): Promise<void> {
  await writeFileDurable(sessionFile(record, 'record'), JSON.stringify(record, null, 2) + '\n');
}

async function readRecord(state: string): Promise<SessionRecord> {
  const path = join(state, SESSION_FILES.record);
  let text: string;
  try {
    text = await fs.readFile(path, 'utf8');
  } catch (err) {
    throw storeReadError(path, err);
  }
  const damaged = (): SessionError => new SessionError(`${path} is not a version ${VERSION} recovery session (damaged, or from another version); nothing was changed`, { path });
  let record: SessionRecord;
  try {
    record = JSON.parse(text) as SessionRecord;
  } catch {
    throw damaged();
  }
  if (record?.format !== FORMAT || record.version !== VERSION) throw damaged();
  return record;
}

/** The session served, or last served, on `dir`. */
export async function sessionAt(dir: string): Promise<SessionRecord> {
  const mountpoint = await canonicalPath(dir, 'directory');
  const entry = await readEntry(registryEntry(mountpoint));
  if (!entry) throw new SessionError(`no recovery session on ${mountpoint} (chunkvault recover --list shows them)`, { mountpoint });
  return readRecord(entry.state);
}

/** Every registered session; an entry whose state directory is gone is dropped from the registry. */
export async function allSessions(): Promise<SessionRecord[]> {
  const names = await fs.readdir(registryDir()).catch((err: unknown) => {
    if (isAbsent(err)) return [];
    throw storeReadError(registryDir(), err);
  });
  const records: SessionRecord[] = [];
  for (const name of names.filter((n) => n.endsWith('.json'))) {
    const entry = await readEntry(join(registryDir(), name));
    if (!entry) continue;
    const state = await fs.stat(entry.state).catch((err: unknown) => (isAbsent(err) ? null : Promise.reject(storeReadError(entry.state, err))));
    if (state === null) await fs.rm(join(registryDir(), name), { force: true });
    else records.push(await readRecord(entry.state));
  }
  return records;
}
