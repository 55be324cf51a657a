/** Measuring child processes and functions: exit codes, output, CPU and peak RSS. */
import t from 'tap';
import { hasGnuTime, measureCommand, measureFunction, parseTimeVerbose } from '../../bench/measure.js';

t.test('GNU time -v output', async (t) => {
  const text = ['\tCommand being timed: "x"', '\tUser time (seconds): 1.25', '\tSystem time (seconds): 0.50', '\tMaximum resident set size (kbytes): 2048', ''].join('\n');
  t.same(parseTimeVerbose(text), { cpuSeconds: 1.75, peakRssBytes: 2048 * 1024 });
  t.equal(parseTimeVerbose('no figures'), null);
});

t.test('a command: output and exit code', async (t) => {
  const run = await measureCommand('sh', ['-c', 'echo hello; echo oops >&2; exit 3'], { check: false });
  t.equal(run.exitCode, 3);
  t.equal(run.stdout, 'hello\n');
  t.equal(run.stderr, 'oops\n');
  t.ok(run.wallSeconds > 0);
  await t.rejects(measureCommand('sh', ['-c', 'echo broken >&2; exit 4']), /exited 4: broken/);

});

// A child that touches 200 MB and holds it a moment: its peak RSS must show it, and it burns CPU.
const HUNGRY = ['-e', 'const b = Buffer.alloc(200e6); for (let i = 0; i < b.length; i += 4096) b[i] = 1; setTimeout(() => b.length, 300);'];

t.test('peak RSS and CPU through /usr/bin/time -v', async (t) => {
  if (!hasGnuTime()) return t.plan(0, '/usr/bin/time is not installed (apt-get install time)');
  const hungry = await measureCommand(process.execPath, HUNGRY, { gnuTime: true });
  t.equal(hungry.rssSource, 'time -v');
  t.ok(hungry.peakRssBytes >= 200e6 && hungry.peakRssBytes < 1e9, `peak RSS ${hungry.peakRssBytes}`);
  t.ok(hungry.cpuSeconds > 0);
});

t.test('peak RSS and CPU by polling /proc where time is missing', async (t) => {
  const hungry = await measureCommand(process.execPath, HUNGRY, { gnuTime: false });
  t.equal(hungry.rssSource, 'proc poll');
  t.ok(hungry.peakRssBytes >= 200e6 && hungry.peakRssBytes < 1e9, `peak RSS ${hungry.peakRssBytes}`);
  t.ok(hungry.cpuSeconds > 0, 'CPU of the reaped child');
});

t.test('a function: its value and its CPU time', async (t) => {
  const m = await measureFunction(() => {
    let x = 0;
    for (let i = 0; i < 2e7; i++) x += i;
    return x;
  });
  t.equal(m.value, 199999990000000);
  t.ok(m.cpuSeconds > 0 && m.wallSeconds > 0 && m.peakRssBytes > 0);
});
