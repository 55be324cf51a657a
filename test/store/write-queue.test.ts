/** Writes behind the caller: in order, one at a time, bounded, failing once for good; flushes in the background. */
import t from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { EarlyFlush, WriteQueue, writeAll } from '../../store/write-queue.js';
import { tempDir } from '../helpers/index.js';

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

t.test('writes run in order, one at a time; add waits while more than the bound is queued', async (t) => {
  const queue = new WriteQueue(100);
  const log: string[] = [];
  let running = 0;
  const releases: (() => void)[] = [];
  const write = (name: string) => async (): Promise<void> => {
    running++;
    t.equal(running, 1, `${name} runs alone`);
    log.push(`start ${name}`);
    await new Promise<void>((resolve) => releases.push(resolve));
    log.push(`end ${name}`);
    running--;
  };
  await queue.add(write('a'), 60);
  let third = false;
  const second = queue.add(write('b'), 60).then(() => (third = true));
  await tick();
  t.notOk(third, '120 bytes queued, over the bound of 100: add waits');
  releases.shift()!();
  await second;
  t.ok(third, 'room again once the first write is done');
  await tick();
  releases.shift()!();
  await queue.drain();
  t.same(log, ['start a', 'end a', 'start b', 'end b']);
});

t.test('the first failure skips later writes and is thrown by add and drain', async (t) => {
  const queue = new WriteQueue(1e9);
  const ran: string[] = [];
  await queue.add(async () => {
    ran.push('a');
    throw Object.assign(new Error('disk full'), { code: 'ENOSPC' });
  }, 1);
  const { written } = await queue.add(async () => void ran.push('b'), 1);
  await written;
  t.same(ran, ['a'], 'b was skipped');
  await t.rejects(queue.drain(), { code: 'ENOSPC' });
  await t.rejects(queue.add(async () => void ran.push('c'), 1), { code: 'ENOSPC' });
  await queue.settle();
  t.same(ran, ['a']);
});

t.test('writeAll writes every buffer at its place; EarlyFlush syncs once per threshold, one at a time', async (t) => {
  const dir = await tempDir(t);
  const handle = await fs.open(join(dir, 'f'), 'w+');
  t.teardown(() => handle.close());
  await writeAll(handle, [Buffer.from('abc'), Buffer.from('defg')], 2);
  t.same(await fs.readFile(join(dir, 'f')), Buffer.from('\0\0abcdefg'));

  let syncs = 0;
  const counted = Object.assign(Object.create(handle) as typeof handle, { datasync: async () => void syncs++ });
  const flush = new EarlyFlush(10, (err) => t.fail(err.message));
  flush.wrote(counted, 6);
  t.equal(syncs, 0, 'under the threshold: no flush');
  flush.wrote(counted, 6);
  flush.wrote(counted, 20);
  t.equal(syncs, 1, 'one flush at a time: the second waits for more bytes after it');
  await flush.settle();
  flush.wrote(counted, 10);
  t.equal(syncs, 2);
  await flush.settle();
});
