/**
 * prune: apply a retention policy to the catalog. planPrune decides (retention.ts is the
 * pure rule); executePrune removes what the plan says, catalog entry first, then maps, so
 * a crash in between leaves an orphan maps directory for gc, never a listed restore point
 * without its maps. Chunks stay until gc.
 */
import type { Store } from '../store/store.js';
import { UnknownRefError } from './errors.js';
import { crashPoint } from './crash.js';
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

/**
 * Removes the plan's restore points. A point held since the plan was made is kept: the
 * catalog is read again before removing. Returns the ids removed.
 */
export async function executePrune(store: Store, plan: PrunePlan): Promise<string[]> {
  const lock = await store.lock('prune');
  try {
    const current = new Map((await store.catalog.list()).points.map((p) => [p.id, p]));
    const removed: string[] = [];
    for (const decision of plan.points) {
      const point = current.get(decision.id);
      if (decision.action !== 'remove' || !point || point.hold !== null) continue;
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
