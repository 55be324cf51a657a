/**
 * Throttle limits have bounds, and a wait longer than setTimeout can take (2^31 - 1 ms, after
 * which node fires the timer at once) still waits.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { InvalidInputError } from '../../engine/errors.js';
import { LATENCY_BOUNDS_MS, MIN_RATE_MBPS, throttleLimits } from '../../engine/throttle.js';
import { ROOT, collect } from '../helpers/index.js';

t.test('bounds: --max-rate from 0.01 MB/s, --max-latency from 0.01 to 60000 ms, both ends included', async (t) => {
  t.same(throttleLimits(LATENCY_BOUNDS_MS.min, MIN_RATE_MBPS), { maxLatencyMs: 0.01, maxRateBytesPerSecond: 10_000 });
  t.same(throttleLimits(LATENCY_BOUNDS_MS.max, 1e300), { maxLatencyMs: 60_000, maxRateBytesPerSecond: 1e306 });
  for (const [latency, rate, message] of [
    [undefined, 1e-300, '--max-rate must be at least 0.01 MB/s, got 1e-300'],
    [undefined, 0.00999, '--max-rate must be at least 0.01 MB/s, got 0.00999'],
    [1e-300, undefined, '--max-latency must be from 0.01 to 60000 milliseconds, got 1e-300'],
    [0.00999, undefined, '--max-latency must be from 0.01 to 60000 milliseconds, got 0.00999'],
    [60_000.5, undefined, '--max-latency must be from 0.01 to 60000 milliseconds, got 60000.5'],
    [1e300, undefined, '--max-latency must be from 0.01 to 60000 milliseconds, got 1e+300'],
  ] as const) {
    t.throws(() => throttleLimits(latency, rate), { constructor: InvalidInputError, code: 'CV_INVALID_INPUT', message });
  }
});

t.test('a wait past 2^31 ms does not fire at once', async (t) => {
  // The built module in a child process: the pending wait must not keep this test alive.
  const throttle = pathToFileURL(join(ROOT, 'dist', 'engine', 'throttle.js')).href;
  const script = `
    const { Throttle } = await import(${JSON.stringify(throttle)});
    const throttle = new Throttle({ maxLatencyMs: null, maxRateBytesPerSecond: 1 });
    await throttle.admit(3e6); // the first starts at once; the next one 3e9 ms (35 days) later
    const next = throttle.admit(1).then(() => 'admitted');
    console.log(await Promise.race([next, new Promise((r) => setTimeout(() => r('still waiting'), 500))]));
    process.exit(0);`;
  const run = await collect(spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] }));
  t.equal(run.stderr, '');
  t.equal(run.stdout, 'still waiting\n');
});
