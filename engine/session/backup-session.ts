/**
 * `backup --from-session DIR`: a stopped recovery session backed up as a CBT incremental of its
 * restore point. The dirty bitmap is the changed-block list and the content file (the delta, or
 * TARGET) the source, read only where the guest wrote; everything else is the parent's, unread.
 * Only a stopped session: a serving one saves its bitmap when the guest flushes, so the file on
 * disk may not yet name every block the guest wrote.
 */
import type { Store } from '../../store/store.js';
import { readMapOrDamage } from '../locate.js';
import { SessionError } from '../errors.js';
import type { BackupDisk } from '../backup.js';
import type { PreparedBackup } from '../layout.js';
import type { Range } from '../plan.js';
import { contentPath, sessionAt } from './state.js';
import { openBitmap, servingLock, sessionPoint, storeRoot } from './session.js';
import type { BlockBitmap } from './bitmap.js';

/** The set blocks of `bits` as sorted byte ranges, adjacent blocks merged, the last cut at the disk's end. */
export function bitmapRanges(bits: BlockBitmap, blockSize: number, size: number): Range[] {
  const ranges: Range[] = [];
  for (let block = 0; block < bits.blocks; block++) {
    if (!bits.has(block)) continue;
    const offset = block * blockSize;
    const length = Math.min(blockSize, size - offset);
    const last = ranges[ranges.length - 1];
    if (last && last.offset + last.length === offset) last.length += length;
    else ranges.push({ offset, length });
  }
  return ranges;
}

export async function prepareSessionBackup(store: Store, dir: string): Promise<PreparedBackup> {
  const record = await sessionAt(dir);
  const root = await storeRoot(store);
  if (record.store !== root) throw new SessionError(`the session on ${record.mountpoint} is of store ${record.store}, not ${root}; nothing was written`, { mountpoint: record.mountpoint, store: record.store });
  const serving = await servingLock(store, record);
  if (serving) {
    throw new SessionError(`the session on ${record.mountpoint} is serving (pid ${serving.pid} on ${serving.host}): stop it with 'chunkvault recover --stop ${record.mountpoint}' first, so that its changed-block bitmap is final; nothing was written`, {
      mountpoint: record.mountpoint,
      pid: serving.pid,
    });
  }
  const parent = await sessionPoint(store, record);
  const dirty = await openBitmap(record, 'dirty');
  await dirty.file.close();
  const changed = bitmapRanges(dirty.bits, record.blockSize, record.size);
  const disk: BackupDisk = {
    label: record.label,
    path: contentPath(record),
    layout: { size: record.size, chunkSize: store.chunkSize, extents: [{ offset: 0, length: record.size, from: 0 }], changed, changedOnly: true },
    parentMap: await readMapOrDamage(store, parent, record.label),
  };
  return { disks: [disk], kind: 'cbt', parent, implicitParent: false, warnings: [] };
}
