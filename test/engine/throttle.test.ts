/**
 * Throttling. The controller's decisions are a pure function of the clock it is given; the
 * end-to-end check reads a source that is really slow: a file served by a FUSE filesystem
 * (test/fixtures/one-file-fs.mjs, its own process) that delays every read. No device-mapper
 * here for dm-delay, and a FUSE source keeps test hooks out of the worker: the latency the
 * throttle reacts to is what the worker's read() measured.
 */
import t from 'tap';
import { join } from 'node:path';
import { InvalidInputError } from '../../engine/errors.js';
import { MAX_DELAY_MS, Throttle, throttleLimits } from '../../engine/throttle.js';
import { MiB, cliJson, requireCapability, sha256File, tempDir, writeImage } from '../helpers/index.js';
import { canServeFuse, slowFile } from '../helpers/one-file-fs.js';

t.test('limits: validated, MB/s in bytes, null when nothing is limited', async (t) => {
  t.equal(throttleLimits(), null);
  t.same(throttleLimits(20), { maxLatencyMs: 20, maxRateBytesPerSecond: null });
  t.same(throttleLimits(undefined, 2.5), { maxLatencyMs: null, maxRateBytesPerSecond: 2_500_000 });
  for (const [latency, rate, message] of [
    [0, undefined, /--max-latency must be a positive number of milliseconds, got 0/],
    [-5, undefined, /--max-latency must be a positive number of milliseconds, got -5/],
    [undefined, NaN, /--max-rate must be a positive number of MB\/s, got NaN/],
    [undefined, Infinity, /--max-rate must be a positive number of MB\/s, got Infinity/],
  ] as const) {
    t.throws(() => throttleLimits(latency, rate), { constructor: InvalidInputError, message });
  }
});

t.test('latency: the delay grows by the measured excess, shrinks by the headroom, stays within [0, cap]', async (t) => {
  const throttle = new Throttle({ maxLatencyMs: 10, maxRateBytesPerSecond: null });
  throttle.observe(4);
  t.equal(throttle.delayMs, 0, 'under the limit: no delay');
  throttle.observe(25);
  t.equal(throttle.delayMs, 15, 'excess of 15 ms');
  throttle.observe(40);
  t.equal(throttle.delayMs, 45, 'still above: the excess adds up');
  throttle.observe(2);
  t.equal(throttle.delayMs, 37, 'headroom of 8 ms takes 8 off');
  throttle.observe(1e6);
  t.equal(throttle.delayMs, MAX_DELAY_MS, 'capped: a source slow on its own still makes progress');
  for (let i = 0; i < 300; i++) throttle.observe(0);
  t.equal(throttle.delayMs, 0);
  const rateOnly = new Throttle({ maxLatencyMs: null, maxRateBytesPerSecond: 1e6 });
  rateOnly.observe(500);
  t.equal(rateOnly.delayMs, 0, 'latency is ignored without --max-latency');
});

t.test('latency: submissions are spaced by the delay; overlapping waits count once', async (t) => {
  const throttle = new Throttle({ maxLatencyMs: 10, maxRateBytesPerSecond: null });
  t.equal(throttle.schedule(1000, MiB), 1000, 'no delay yet');
  throttle.observe(110);
  t.equal(throttle.schedule(1000, MiB), 1100);
  t.equal(throttle.schedule(1001, MiB), 1200, 'queued behind the previous one');
  t.equal(throttle.secondsThrottled, 0.2, 'waits [1000,1100] and [1001,1200] overlap: 200 ms held back');
  t.equal(throttle.schedule(5000, MiB), 5000, 'long after the last start: no wait');
  t.equal(throttle.secondsThrottled, 0.2);
});

t.test('rate: a task of n bytes starts n/rate after the one before; idle time earns no burst', async (t) => {
  const throttle = new Throttle({ maxLatencyMs: null, maxRateBytesPerSecond: 2e6 });
  t.same(
    [0, 0, 0].map(() => throttle.schedule(0, 1e6)),
    [0, 500, 1000],
  );
  t.equal(throttle.schedule(1200, 4e6), 1500, 'waits for the third task budget');
  t.equal(throttle.schedule(10_000, 1e6), 10_000, 'after idling: starts now');
  t.equal(throttle.schedule(10_000, 1e6), 10_500, 'and is paced again');
  t.equal(throttle.secondsThrottled, 1.8, 'waits of 500, 500, 300 and 500 ms');
});

t.test('end to end on a slow source: --max-latency and --max-rate hold reads back, the data is intact', async (t) => {
  if (!requireCapability(t, canServeFuse(), 'needs root, /dev/fuse and fusermount')) return;
  const dir = await tempDir(t);
  const image = join(dir, 'disk.img');
  await writeImage(image, [{ kind: 'random', bytes: 48 * MiB, seed: 9 }]);
  const store = join(dir, 'store');
  await cliJson(['init', '--store', store]);
  type Report = { id: string; bytesRead: number; seconds: number; secondsThrottled: number };

  const slow = await slowFile(t, image, join(dir, 'mnt'), 10);
  const unthrottled = await cliJson<Report>(['backup', '--store', store, `disk=${slow}`, '--threads', '2']);
  t.equal(unthrottled.secondsThrottled, 0, 'no limits, no throttling');
  t.equal(unthrottled.bytesRead, 48 * MiB, 'FUSE has no FIEMAP: every byte is read, none taken for a hole');

  // Every read waits at least 10 ms (FUSE drops the file's page cache on each open, so this
  // pass is as slow as the first): each task's mean latency L adds at least L - 2 ms to the
  // delay, while starts come about 2L apart (4 reads a task, 2 workers). By the fourth
  // observation the delay exceeds that gap, and the 12 tasks of 4 MiB leave enough after it.
  const byLatency = await cliJson<Report>(['backup', '--store', store, `disk=${slow}`, '--threads', '2', '--max-latency', '2']);
  t.ok(byLatency.secondsThrottled > 0, `held back ${byLatency.secondsThrottled} s by latency`);

  const byRate = await cliJson<Report>(['backup', '--store', store, image, '--threads', '2', '--max-rate', '32']);
  t.ok(byRate.secondsThrottled > 0, `held back ${byRate.secondsThrottled} s by rate`);
  // Pacing is a lower bound the code enforces, not a timing guess: the last 4 MiB task
  // cannot start before the 44 MiB before it took at 32 MB/s.
  t.ok(byRate.seconds >= (44 * MiB) / 32e6, `48 MiB at 32 MB/s took ${byRate.seconds} s`);

  const out = join(dir, 'out.img');
  await cliJson(['restore', '--store', store, byLatency.id, out]);
  t.equal(await sha256File(out), await sha256File(image), 'a throttled backup restores byte-identical');
});
