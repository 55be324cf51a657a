import t from 'tap';
import { tmpdir } from 'node:os';
import { WorkerPool, pipeline } from '../../engine/pool.js';

t.test('pipeline: results are consumed in order; tasks that give no work do not fill the window', async (t) => {
  // Work tasks alternate with free ones (runs of unchanged slots in an incremental backup).
  const tasks = Array.from({ length: 12 }, (_, i) => ({ i, work: i % 2 === 0 }));
  let running = 0;
  let most = 0;
  const consumed: number[] = [];
  await pipeline(
    tasks,
    2,
    async (task) => {
      if (!task.work) return task.i;
      running++;
      most = Math.max(most, running);
      await new Promise((resolve) => setTimeout(resolve, 5));
      running--;
      return task.i;
    },
    async (result) => {
      consumed.push(result);
    },
    (task) => task.work,
  );
  t.same(consumed, tasks.map((task) => task.i));
  t.equal(most, 2, 'two work tasks run at once with a window of two, free tasks between them');
});

t.test('pipeline: a failing task stops the run with its error', async (t) => {
  await t.rejects(
    pipeline([1, 2, 3], 2, async (n) => (n === 2 ? Promise.reject(new Error('boom')) : n), async () => undefined),
    { message: 'boom' },
  );
});

t.test('a pool closed at any moment while its threads load their native addons does not abort the process', async (t) => {
  // Threads load BLAKE3 and LZ4 as the pool starts; one terminated while an addon registered
  // aborted node, once in the suite (a small backup whose one task went to the other thread).
  for (let round = 0; round < 16; round++) {
    const pool = new WorkerPool({ kind: 'fs', dir: tmpdir() }, 2);
    await new Promise((resolve) => setTimeout(resolve, (round * 37) % 80));
    await pool.close();
  }
  const pool = new WorkerPool({ kind: 'fs', dir: tmpdir() }, 2);
  try {
    const result = await pool.verify({ op: 'verify', chunks: [] });
    t.same(result.problems, [], 'the pool still works after that');
  } finally {
    await pool.close();
  }
});
