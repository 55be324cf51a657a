/**
 * A file's extents as the filesystem reports them (the FIEMAP ioctl). Node has neither
 * ioctl nor lseek(SEEK_DATA), so this runs `filefrag -s -e -b1` (e2fsprogs, wherever
 * mkfs.ext4 is) and parses its byte-unit table; the output is streamed, so a file with a
 * million extents costs memory for its extents only.
 *
 * `-s` (FIEMAP_FLAG_SYNC) is required, not a nicety: ext4 reports a buffered write into a
 * preallocated extent as "unwritten" until writeback, so without the sync, data still in
 * the page cache would look like a hole and be lost (test/engine/holes.test.ts shows it).
 */
import { spawn } from 'node:child_process';
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

/** ext:  logical_start..logical_end:  physical_start..physical_end:  length:  [expected:]  flags */
const EXTENT_LINE = /^\s*\d+:\s*(\d+)\.\.\s*(\d+):\s*(\d+)\.\.\s*(\d+):\s*\d+:\s*(?:\d+:)?\s*([a-z_,]*)\s*$/;
const FS_TYPE_LINE = /^Filesystem type is: ([0-9a-f]+)$/;

/** The extents of `path`, or why the filesystem cannot report them (tmpfs, no filefrag, ...). */
export async function readFiemap(path: string): Promise<Fiemap> {
  const child = spawn('filefrag', ['-s', '-e', '-b1', path], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const spawnError = new Promise<Error>((resolve) => child.on('error', resolve));
  const exit = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1)));
  const extents: FileExtent[] = [];
  let fsType = '';
  const lines = createInterface({ input: child.stdout });
  for await (const line of lines) {
    const m = EXTENT_LINE.exec(line);
    if (m) {
      // The length column is 0 for extents of unknown location; the logical range is always right.
      const logical = Number(m[1]);
      extents.push({ logical, physical: Number(m[3]), length: Number(m[2]) - logical + 1, flags: m[5] ? m[5].split(',') : [] });
    } else {
      fsType = FS_TYPE_LINE.exec(line)?.[1] ?? fsType;
    }
  }
  const code = await Promise.race([spawnError, exit]);
  if (code instanceof Error) return { ok: false, reason: `filefrag (e2fsprogs) cannot run: ${(code as NodeJS.ErrnoException).code ?? code.message}` };
  if (code !== 0) return { ok: false, reason: stderr.trim().split('\n').pop() || `filefrag exited ${code}` };
  return { ok: true, fsType, extents };
}
