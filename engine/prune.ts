/**
 * prune: apply a retention policy to the catalog. planPrune decides (retention.ts is the
 * pure rule); executePrune removes what the plan says, catalog entry first, then maps, so
 * a crash in between leaves an orphan maps directory for gc, never a listed restore point
 * without its maps. Chunks stay until gc.
 */
import type { Store } from '../store/store.js';
import type { RestorePoint } from '../store/catalog.js';
import { describeLocks } from '../store/lock.js';
import { StoreBusyError, UnknownRefError } from './errors.js';
import { RESTORE_COMMAND } from './restore.js';
import { RECOVER_COMMAND } from './session/state.js';
import { crashPoint } from './crash.js';
import { makeRoomIfFull } from './space.js';
import { checkName } from './names.js';
import { applyRetention, checkPolicy, type RetentionDecision, type RetentionPolicy } from './retention.js';

export interface PruneOptions {
  /** Only this group; all groups when absent. */
  name?: string;
}

export interface PrunePlan {
  points: RetentionDecision[];
  kept: number;
  removed: number;
}

export async function planPrune(store: Store, policy: RetentionPolicy, options: PruneOptions = {}): Promise<PrunePlan> {
  checkPolicy(policy);
  if (options.name !== undefined) checkName(options.name);
  const { points } = await store.catalog.list();
  const chosen = options.name === undefined ? points : points.filter((p) => p.name === options.name);
  if (options.name !== undefined && chosen.length === 0) throw new UnknownRefError(`no restore points named '${options.name}'`, { name: options.name });
  const decisions = applyRetention(
    chosen.map((p) => ({ id: p.id, name: p.name, time: p.time, held: p.hold !== null })),
    policy,
  );
  const removed = decisions.filter((d) => d.action === 'remove').length;
  return { points: decisions, kept: decisions.length - removed, removed };
}

/** A restore or a recovery session reads a point's map once, as it starts; removing the point under it must wait. */
async function refuseWhileRestored(store: Store, ids: Set<string>): Promise<void> {
  const readers = (await store.locks()).filter((l) => {
    const [command, id] = l.command.split(' ');
    return (command === RESTORE_COMMAND || command === RECOVER_COMMAND) && ids.has(id);
  });
  if (readers.length === 0) return;
  const holder = describeLocks(readers);
  throw new StoreBusyError(`prune would remove a restore point that ${holder} is reading; nothing was removed; run prune when that has finished`, { holder });
}

/**
 * Removes the plan's restore points. A point held since the plan was made is kept: the
 * catalog is read again before removing. Returns the ids removed.
 */
export async function executePrune(store: Store, plan: PrunePlan): Promise<string[]> {
  await makeRoomIfFull(store);
  const lock = await store.lock('prune');
  try {
    const current = new Map((await store.catalog.list()).points.map((p) => [p.id, p]));
    const doomed = plan.points
      .map((d) => (d.action === 'remove' ? current.get(d.id) : undefined))
      .filter((p): p is RestorePoint => p !== undefined && p.hold === null);
    await refuseWhileRestored(store, new Set(doomed.map((p) => p.id)));
    const removed: string[] = [];
    for (const point of doomed) {
      await store.catalog.remove(point.id);
      crashPoint('prune-after-catalog');
      await store.removeMaps(point.id);
      removed.push(point.id);
    }
    return removed;
  } finally {
    await lock.release();
  }
}
