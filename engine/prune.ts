/**
 * prune: apply a retention policy to the catalog. planPrune decides (retention.ts is the
 * pure rule); executePrune removes what the plan says, catalog entry first, then maps, so
 * a crash in between leaves an orphan maps directory for gc, never a listed restore point
 * without its maps. Chunks stay until gc.
 */
import type { Store } from '../store/store.js';
import type { RestorePoint } from '../store/catalog.js';
import type { LockInfo } from '../store/lock.js';
import { UnknownRefError } from './errors.js';
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
  const decisions = keepPinned(
    applyRetention(
      chosen.map((p) => ({ id: p.id, name: p.name, time: p.time, held: p.hold !== null })),
      policy,
    ),
    await pinsOf(store),
  );
  const removed = decisions.filter((d) => d.action === 'remove').length;
  return { points: decisions, kept: decisions.length - removed, removed };
}

/** Who pins each restore point: the first live lock that does. */
async function pinsOf(store: Store): Promise<Map<string, LockInfo>> {
  const pins = new Map<string, LockInfo>();
  for (const lock of await store.locks()) for (const id of lock.pins) if (!pins.has(id)) pins.set(id, lock);
  return pins;
}

/** A point a running command reads is kept, whatever the policy says. */
function keepPinned(decisions: RetentionDecision[], pins: Map<string, LockInfo>): RetentionDecision[] {
  return decisions.map((d) => {
    const holder = pins.get(d.id);
    if (!holder) return d;
    return { ...d, action: 'keep', reasons: [...d.reasons, `pinned by '${holder.command.split(' ')[0]}' (pid ${holder.pid} on ${holder.host})`] };
  });
}

/**
 * Removes the plan's restore points. A point held or pinned since the plan was made is kept: the
 * catalog and the locks are read again before removing. A reader pins before it checks the
 * catalog, so one that pinned a point while its entry went finds it gone, or finds its maps
 * still there: they are removed only when no pin was there after the entry went (gc takes
 * the maps of an entry it finds neither listed nor pinned). Returns the ids removed.
 */
export async function executePrune(store: Store, plan: PrunePlan): Promise<string[]> {
  await makeRoomIfFull(store);
  const lock = await store.lock('prune');
  try {
    const current = new Map((await store.catalog.list()).points.map((p) => [p.id, p]));
    const doomed = plan.points
      .map((d) => (d.action === 'remove' ? current.get(d.id) : undefined))
      .filter((p): p is RestorePoint => p !== undefined && p.hold === null);
    const pinnedBefore = await pinsOf(store);
    const removed: string[] = [];
    for (const point of doomed.filter((p) => !pinnedBefore.has(p.id))) {
      await store.catalog.remove(point.id);
      crashPoint('prune-after-catalog');
      if (!(await pinsOf(store)).has(point.id)) await store.removeMaps(point.id);
      removed.push(point.id);
    }
    return removed;
  } finally {
    await lock.release();
  }
}
