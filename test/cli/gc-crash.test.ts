/** gc killed (kill -9) at each of its steps leaves every restore point restorable, and the next gc finishes. */
import t from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { CRASH_STEPS } from '../../engine/crash.js';
import { MiB, cli, cliJson, tempDir, writeImage, restoresIdentically } from '../helpers/index.js';

interface StatsJson {
  packBytes: number;
  reclaimableBytes: number;
}

t.test('gc killed at each step leaves every restore point restorable, and the next gc finishes', async (t) => {
  const dir = await tempDir(t);
  const pruned = join(dir, 'pruned');
  await cliJson(['init', '--store', pruned, '--chunk-size', '64K']);
  const images: string[] = [];
  const ids: string[] = [];
  for (let k = 1; k <= 4; k++) {
    const image = join(dir, `v${k}.img`);
    await writeImage(image, [
      { kind: 'random', bytes: MiB, seed: 7 },
      { kind: 'random', bytes: MiB / 2, seed: 100 + k },
      { kind: 'text', bytes: MiB },
    ]);
    images.push(image);
    ids.push((await cliJson<{ id: string }>(['backup', '--store', pruned, `disk=${image}`, '--name', 'vm', '--time', `2026-11-0${k}T08:00:00Z`, '--threads', '1'])).id);
  }
  // Removing v1 and v3 kills a whole pack (v3's) and a third of another (v1's).
  await cliJson(['hold', '--store', pruned, ids[1]]);
  await cliJson(['prune', '--store', pruned, '--keep-last', '1']);
  const { reclaimableBytes, packBytes } = await cliJson<StatsJson>(['stats', '--store', pruned]);
  t.ok(reclaimableBytes > 0);

  for (const step of CRASH_STEPS.gc) {
    const store = join(dir, step);
    await fs.cp(pruned, store, { recursive: true });
    const killed = await cli(['gc', '--store', store], { CHUNKVAULT_TEST_CRASH_AT: step });
    t.equal(killed.code, -1, `${step}: gc was killed there (the step was reached)`);
    t.equal((await cli(['verify', '--store', store, '--read-data'])).code, 0, `${step}: verify --read-data is clean`);
    // A host that never saw this store builds its index from the segments alone: they must be whole at every step.
    const fresh = join(dir, `${step}-fresh`);
    await fs.cp(store, fresh, { recursive: true });
    await fs.rm(join(fresh, 'index'), { recursive: true });
    t.equal((await cli(['verify', '--store', fresh, '--read-data'])).code, 0, `${step}: verify --read-data is clean with an index built from the segments`);
    await fs.rm(fresh, { recursive: true });
    // v2's chunks sit in the pack being compacted and in a pack of its own.
    await restoresIdentically(t, store, ids[1], images[1], join(dir, `${step}-v2.img`));
    await cliJson(['gc', '--store', store]);
    const after = await cliJson<StatsJson>(['stats', '--store', store]);
    t.equal(after.packBytes, packBytes - reclaimableBytes, `${step}: the next gc ends where an uninterrupted gc ends`);
    t.equal(after.reclaimableBytes, 0);
  }
});
