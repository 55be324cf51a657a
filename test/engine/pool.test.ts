import t from 'tap';
import { pipeline } from '../../engine/pool.js';

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
