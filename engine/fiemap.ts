/**
 * A file's extents as the filesystem reports them (the FIEMAP ioctl). Node has neither
 * ioctl nor lseek(SEEK_DATA), so this runs `filefrag -s -e -b1` (e2fsprogs, wherever
 * mkfs.ext4 is) and parses its byte-unit table; the output is streamed, so a file with a
 * million extents costs memory for its extents only.
 *
 * `-s` (FIEMAP_FLAG_SYNC) is required, not a nicety: ext4 reports a buffered write into a
 * preallocated extent as "unwritten" until writeback, so without the sync, data still in
 * the page cache would look like a hole and be lost (test/engine/holes.test.ts shows it).
 *
 * Only filesystems known to implement FIEMAP are asked: elsewhere filefrag falls back to
 * FIBMAP, which answers 0 ("hole") for every block of, say, a FUSE file, and a file full of
 * data would read as empty.
 */
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { createInterface } from 'node:readline';

export interface FileExtent {
  /** Byte offset in the file. */
  logical: number;
  /** Byte offset on the filesystem's device (meaningless with unknown_loc). */
  physical: number;
  length: number;
  /** filefrag's flag names: unwritten, delalloc, unknown_loc, inline, encoded, shared, last, ... */
  flags: string[];
}

export type Fiemap = { ok: true; fsType: string; extents: FileExtent[] } | { ok: false; reason: string };

/** statfs f_type magic numbers of filesystems with a FIEMAP implementation. */
export const FIEMAP_FILESYSTEMS: Record<string, string> = {
  ef53: 'ext2/3/4',
  '58465342': 'xfs',
  '9123683e': 'btrfs',
  f2f52010: 'f2fs',
  '7461636f': 'ocfs2',
  '1161970': 'gfs2',
  '3434': 'nilfs2',
};

/** ext:  logical_start..logical_end:  physical_start..physical_end:  length:  [expected:]  flags */
const EXTENT_LINE = /^\s*\d+:\s*(\d+)\.\.\s*(\d+):\s*(\d+)\.\.\s*(\d+):\s*\d+:\s*(?:\d+:)?\s*([a-z_,]*)\s*$/;

/** The extents of `path`, or why the filesystem cannot report them (tmpfs, no filefrag, ...). */
export async function readFiemap(path: string): Promise<Fiemap> {
  const stats = await fs.statfs(path).catch((err: NodeJS.ErrnoException) => err);
  if (stats instanceof Error) return { ok: false, reason: `statfs: ${stats.code ?? stats.message}` };
  const fsType = stats.type.toString(16);
  if (!(fsType in FIEMAP_FILESYSTEMS)) return { ok: false, reason: `filesystem type 0x${fsType} does not implement FIEMAP` };
  const child = spawn('filefrag', ['-s', '-e', '-b1', path], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const spawnError = new Promise<Error>((resolve) => child.on('error', resolve));
  const exit = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1)));
  const extents: FileExtent[] = [];
  for await (const line of createInterface({ input: child.stdout })) {
    const m = EXTENT_LINE.exec(line);
    // The length column is 0 for extents of unknown location; the logical range is always right.
    if (m) extents.push({ logical: Number(m[1]), physical: Number(m[3]), length: Number(m[2]) - Number(m[1]) + 1, flags: m[5] ? m[5].split(',') : [] });
  }
  const code = await Promise.race([spawnError, exit]);
  if (code instanceof Error) return { ok: false, reason: `filefrag (e2fsprogs) cannot run: ${(code as NodeJS.ErrnoException).code ?? code.message}` };
  if (code !== 0) return { ok: false, reason: stderr.trim().split('\n').pop() || `filefrag exited ${code}` };
  return { ok: true, fsType, extents };
}
