/**
 * Reading a small file a person names or a store holds (a format file, an extent map, a CBT
 * list) without ever blocking: a FIFO with no writer, a device or a directory in its place is
 * refused, not read. Callers turn the outcome into an error of their own kind.
 */
import { constants, promises as fs, type Stats } from 'node:fs';
import { errnoOf, isAbsent } from './errors.js';

export type SmallFile =
  | { text: string }
  | { problem: 'absent'; code: string }
  /** `code` is the errno reading it would fail with, where there is one (EISDIR). */
  | { problem: 'not regular'; kind: string; code?: string }
  | { problem: 'too large'; size: number }
  | { problem: 'unreadable'; code: string; cause: unknown };

/** What a file that is not a regular file is, for a message ('a FIFO'). */
export function kindOf(stats: Stats): string {
  if (stats.isDirectory()) return 'a directory';
  return stats.isFIFO() ? 'a FIFO' : stats.isCharacterDevice() ? 'a character device' : stats.isBlockDevice() ? 'a block device' : stats.isSocket() ? 'a socket' : 'not a file';
}

/** A file that is not a regular file; with EISDIR for a directory. */
function notRegular(stats: Stats): SmallFile {
  return stats.isDirectory() ? { problem: 'not regular', kind: kindOf(stats), code: 'EISDIR' } : { problem: 'not regular', kind: kindOf(stats) };
}

function checked(stats: Stats, maxBytes: number): SmallFile | null {
  if (!stats.isFile()) return notRegular(stats);
  if (stats.size > maxBytes) return { problem: 'too large', size: stats.size };
  return null;
}

/** The text of the regular file at `path` (symlinks followed), of at most `maxBytes`. */
export async function readSmallFile(path: string, maxBytes: number): Promise<SmallFile> {
  let handle: fs.FileHandle | undefined;
  try {
    // Checked before opening: opening a device can act on it (a tape rewinds, a watchdog arms).
    const refused = checked(await fs.stat(path), maxBytes);
    if (refused) return refused;
    // Should the path be replaced by a FIFO after the stat, a non-blocking open still returns at once.
    handle = await fs.open(path, constants.O_RDONLY | constants.O_NONBLOCK);
    return checked(await handle.stat(), maxBytes) ?? { text: await handle.readFile('utf8') };
  } catch (err) {
    const code = errnoOf(err) ?? (err instanceof Error ? err.message : String(err));
    return isAbsent(err) ? { problem: 'absent', code } : { problem: 'unreadable', code, cause: err };
  } finally {
    await handle?.close();
  }
}
