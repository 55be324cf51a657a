/**
 * Zero ranges of a file target become holes again, as a full restore leaves them:
 * fallocate(PUNCH_HOLE|KEEP_SIZE). Node has no fallocate, so this runs util-linux's
 * `fallocate --punch-hole`, once per range (ranges are merged runs of slots, so few).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { TargetError } from './errors.js';
import type { Range } from './plan.js';

const run = promisify(execFile);

/** fallocate's words for EOPNOTSUPP (ramfs, some FUSE and network filesystems). */
const UNSUPPORTED = /not supported|unsupported/i;

/**
 * Punches holes at `ranges` of `path`. False when its filesystem cannot punch holes (ramfs,
 * some FUSE and network filesystems refuse the first range already): write zeros instead.
 */
export async function punchHoles(path: string, ranges: Range[]): Promise<boolean> {
  for (const range of ranges) {
    try {
      await run('fallocate', ['--punch-hole', '--keep-size', '--offset', String(range.offset), '--length', String(range.length), path], { env: { ...process.env, LC_ALL: 'C' } });
    } catch (err) {
      const stderr = String((err as { stderr?: string }).stderr ?? '').trim();
      if (UNSUPPORTED.test(stderr)) return false;
      throw new TargetError(`target ${path}: punching a hole at bytes ${range.offset}-${range.offset + range.length - 1} failed (${stderr || (err as Error).message}); the restore is incomplete, run it again`, { target: path, offset: range.offset }, err);
    }
  }
  return true;
}
