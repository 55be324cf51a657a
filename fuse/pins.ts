/**
 * The restore points whose files are open on the mount, written into the mount's lock: gc keeps
 * what they reference, and the packs they are in, only while something is open.
 */
import type { HeldLock } from '../store/lock.js';

export class OpenPins {
  /** Open files per restore point id. */
  private readonly counts = new Map<string, number>();

  constructor(
    private readonly lock: HeldLock,
    /** Called for a point nothing has open any more: what was resolved for it may be moved by gc now. */
    private readonly onUnpinned: (id: string) => void,
  ) {}

  /** Resolves once the lock says so: the caller checks the catalog, then reads, only after. */
  async add(ids: string[]): Promise<void> {
    const fresh = ids.filter((id) => !this.counts.has(id));
    for (const id of ids) this.counts.set(id, (this.counts.get(id) ?? 0) + 1);
    if (fresh.length > 0) await this.write();
  }

  async remove(ids: string[]): Promise<void> {
    const gone: string[] = [];
    for (const id of ids) {
      const left = (this.counts.get(id) ?? 1) - 1;
      if (left > 0) {
        this.counts.set(id, left);
      } else {
        this.counts.delete(id);
        gone.push(id);
      }
    }
    if (gone.length === 0) return;
    gone.forEach(this.onUnpinned);
    await this.write();
  }

  private write(): Promise<void> {
    return this.lock.pin([...this.counts.keys()]);
  }
}
