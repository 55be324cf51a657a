/**
 * Writes and hydration of the same blocks take turns: a write that reads its block's base
 * bytes first (read-modify-write) must not be overtaken by another write of that block, and
 * hydration must not copy a block's old bytes over a guest write made meanwhile.
 */
export class BlockLocks {
  private readonly tails = new Map<number, Promise<void>>();

  async run<T>(first: number, last: number, work: () => Promise<T>): Promise<T> {
    const before: Promise<void>[] = [];
    let done: () => void = () => undefined;
    const mine = new Promise<void>((resolve) => (done = resolve));
    for (let b = first; b <= last; b++) {
      const tail = this.tails.get(b);
      if (tail) before.push(tail);
      this.tails.set(b, mine);
    }
    try {
      await Promise.all(before);
      return await work();
    } finally {
      for (let b = first; b <= last; b++) if (this.tails.get(b) === mine) this.tails.delete(b);
      done();
    }
  }
}
