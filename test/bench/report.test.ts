/** The benchmark report: ratios, limits, goals, bottleneck sentences and renderings are exact. */
import t from 'tap';
import {
  bottleneck,
  chunkLabel,
  figuresLines,
  goals,
  ioBound,
  mbps,
  median,
  pairedSpeedups,
  perCoreLimitMBps,
  renderCharts,
  renderJson,
  renderMarkdown,
  speedup,
  type Paired,
} from '../../bench/report.js';
import { GB, limits, results } from '../helpers/bench-results.js';

t.test('rates, speedups and per-core limits', async (t) => {
  t.equal(mbps(100e6, 2), 50);
  t.equal(mbps(100e6, 0), 0);
  t.equal(speedup(results(), 'vm', 'backup', 'borg'), 3);
  t.equal(speedup(results(), 'vm', 'restore', 'borg'), 5 / 3);
  t.equal(speedup(results(), 'vm', 'verify', 'borg'), null, 'no figure without both runs');
  // backup: 1 / (1/1000 + 1/250) = 200 MB/s of data, 400 MB/s logical at half data.
  t.equal(perCoreLimitMBps(limits, 'backup', 0.5), 400);
  t.equal(perCoreLimitMBps(limits, 'restore', 0.5), 1000);
  t.equal(chunkLabel(65536), '64K');
  t.equal(chunkLabel(8 * 1024 * 1024), '8M');
});

t.test('bottleneck sentences for each regime', async (t) => {
  const run = (threads: number, seconds: number, cpuSeconds: number) => ({ threads, logicalBytes: 900e6, wallSeconds: seconds, cpuSeconds, peakRssBytes: 0 });
  const read = ioBound(limits, 'backup');
  t.same(ioBound(limits, 'restore'), { doing: 'writing the target', limit: 'cp --sparse + sync', mbps: 1000, waitsOn: 'writes to the target file or on pack reads' });
  t.equal(bottleneck(run(2, 1, 1), 2, { ...read, mbps: 1000 }, 400), 'reading the source: 900 MB/s is 90% of cat (1000 MB/s)');
  t.equal(
    bottleneck({ ...run(1, 1, 1), logicalBytes: 320e6 }, 2, read, 400),
    "the workers' hashing and LZ4: 1 worker(s) run at 80% of the single-core limit each; more workers would help",
  );
  t.equal(
    bottleneck({ ...run(2, 1, 2), logicalBytes: 640e6 }, 2, read, 400),
    "the workers' hashing and LZ4: 2 worker(s) run at 80% of the single-core limit each; only more cores would help",
  );
  t.equal(
    bottleneck({ ...run(2, 2, 3.8), logicalBytes: 400e6 }, 2, read, 400),
    'CPU: 1.9 of 2 cores busy, yet the workers reach 25% of their single-core limit: the time goes outside hashing and LZ4 (main thread, copies, kernel)',
  );
  t.equal(
    bottleneck({ ...run(2, 2, 2), logicalBytes: 400e6, machineBusyCores: 1.9 }, 2, read, 400),
    'contention: the machine kept 1.9 of 2 cores busy, this run only 1.0; other processes took the rest (its workers reached 25% of their single-core limit)',
  );
  t.equal(
    bottleneck({ ...run(2, 2, 2), logicalBytes: 400e6, machineBusyCores: 1.2 }, 2, read, 400),
    'waiting: 1.0 of 2 cores busy with 2 worker(s), which reach 25% of their limit: they wait on the main thread (dedup lookups, pack writes, fsync) or on reads',
    'an idle machine is no contention',
  );
  t.equal(
    bottleneck({ ...run(2, 2, 2), logicalBytes: 400e6 }, 2, read, 400),
    'waiting: 1.0 of 2 cores busy with 2 worker(s), which reach 25% of their limit: they wait on the main thread (dedup lookups, pack writes, fsync) or on reads',
  );
});

t.test('goals of issue 2', async (t) => {
  t.same(goals(results()), [
    { goal: 'full backup (borg create --compression lz4) at least 2x faster than borg', measured: '3.00x (chunkvault 2.00 s, borg 6.00 s)', met: true },
    { goal: 'restore (borg extract) at least 2x faster than borg', measured: '1.67x (chunkvault 3.00 s, borg 5.00 s)', met: false },
    { goal: 'peak RSS of backup under 300 MB for a source of 8.0 GiB', measured: '250 MB', met: true },
  ]);
  const none = { ...results(), ops: [], large: null };
  t.same(
    goals(none).map((g) => [g.measured, g.met]),
    [
      ['not measured in this run', null],
      ['not measured in this run', null],
      ['not measured in this run', null],
    ],
  );
});

t.test('alternating rounds decide the goals by their median ratio', async (t) => {
  t.equal(median([3, 1, 2]), 2);
  t.equal(median([4, 1, 2, 3]), 2.5);
  const run = (round: number, tool: string, kind: 'backup' | 'restore', wallSeconds: number) => ({ round, tool, op: kind, wallSeconds, cpuSeconds: 1, peakRssBytes: 1 });
  const paired: Paired = {
    workload: 'vm',
    peer: 'borg',
    runs: [
      run(1, 'chunkvault', 'backup', 2), run(1, 'chunkvault', 'restore', 2), run(1, 'borg', 'backup', 5), run(1, 'borg', 'restore', 3),
      run(2, 'borg', 'backup', 8), run(2, 'borg', 'restore', 3), run(2, 'chunkvault', 'backup', 4), run(2, 'chunkvault', 'restore', 1),
      run(3, 'chunkvault', 'backup', 3), run(3, 'borg', 'backup', 9),
    ],
  };
  t.same(pairedSpeedups(paired, 'backup'), [
    { round: 1, ours: 2, theirs: 5, speedup: 2.5 },
    { round: 2, ours: 4, theirs: 8, speedup: 2 },
    { round: 3, ours: 3, theirs: 9, speedup: 3 },
  ]);
  t.same(pairedSpeedups(paired, 'restore').map((r) => r.speedup), [1.5, 3], 'a round without both runs does not count');
  const [backup, restore] = goals({ ...results(), paired });
  t.same(backup, {
    goal: 'full backup (borg create --compression lz4) at least 2x faster than borg',
    measured: 'median 2.50x over 3 alternating rounds (2.50x, 2.00x, 3.00x); median chunkvault 3.00 s, borg 8.00 s',
    met: true,
  });
  t.equal(restore.measured, 'median 2.25x over 2 alternating rounds (1.50x, 3.00x); median chunkvault 1.50 s, borg 3.00 s');
  const lines = renderMarkdown({ ...results(), paired }).split('\n');
  t.ok(lines.includes('| 2 | backup | 4.00 | 8.00 | 2.00x |'));
  t.ok(lines.includes('| 2 | restore | 1.00 | 3.00 | 3.00x |'));
});

t.test('figures of other modules render whatever their shape', async (t) => {
  t.same(figuresLines([{ a: 1, b: 'x' }, { a: 2.5 }]), ['| a | b |', '| --- | --- |', '| 1 | x |', '| 2.500 |  |']);
  t.same(figuresLines({ mbps: 512.25, ok: true }), ['| figure | value |', '| --- | --- |', '| mbps | 512.250 |', '| ok | true |']);
  t.same(figuresLines({ cat: { seconds: 2, fio: { iops: 1500 } }, notes: ['a', 'b'], runs: [{ x: 1 }] }), [
    '| figure | value |',
    '| --- | --- |',
    '| cat.seconds | 2 |',
    '| cat.fio.iops | 1500 |',
    '| notes | a; b |',
    '| runs | [{"x":1}] |',
  ]);
  t.same(figuresLines(42), ['42']);
});

t.test('the Markdown report', async (t) => {
  const md = renderMarkdown(results());
  const lines = md.split('\n');
  t.equal(lines[0], '# chunkvault benchmark: test profile');
  t.ok(lines.includes('| full backup (borg create --compression lz4) at least 2x faster than borg | 3.00x (chunkvault 2.00 s, borg 6.00 s) | met |'));
  t.ok(lines.includes('| restore (borg extract) at least 2x faster than borg | 1.67x (chunkvault 3.00 s, borg 5.00 s) | NOT met |'));
  t.ok(lines.includes('| `cat` of the source, cold | 200 MB/s |'));
  t.ok(lines.includes('| `cp --sparse=always` of the source + `sync` (restore target) | 1000 MB/s |'));
  t.ok(lines.includes('| aes-256-gcm seal / open, one core (1.0 MiB records) | 1200 / 1300 MB/s (`openssl speed`: 4000 MB/s) |'));
  t.ok(lines.includes('| aes-256-gcm seal / open, one core (4.0 MiB records) | 1100 / 1250 MB/s (`openssl speed`: no openssl) |'));
  // restore: 3 GB in 3 s = 1000 MB/s, the copy limit; CPU limit 2 x 1000.
  t.ok(lines.includes('| chunkvault | restore | 1000 | 3.00 | 3.00 | 95.4 MiB |  | 1.67x | 1.00x | 0.50x |'));
  t.ok(lines.includes('| tool | operation | MB/s | wall s | CPU s | peak RSS | repository | vs borg | vs I/O limit | vs CPU limit |'));
  // 3 GB in 2 s = 1500 MB/s; vs cat 1500/2000; CPU limit 2 cores x 400 = 800.
  t.ok(lines.includes('| chunkvault | backup | 1500 | 2.00 | 2.00 | 95.4 MiB | 954 MiB | 3.00x | 0.75x | 1.88x |'));
  t.ok(lines.includes('| borg | backup | 500 | 6.00 | 6.00 | 95.4 MiB | 1.0 GiB |  | 0.25x |  |'), 'peers get the I/O ratio too');
  t.ok(lines.includes('- casync: not installed (apt-get install casync); skipped'));
  t.ok(lines.includes('chunkvault store: dedup ratio 1.25, compression ratio 2.00, non-zero share 50.0%.'));
  t.ok(
    lines.includes(
      "| 1 | 300 | 1.00 | 1 B | 600 | 1.00 | backup: the workers' hashing and LZ4: 1 worker(s) run at 75% of the single-core limit each; more workers would help. Restore: waiting: 1.0 of 2 cores busy with 1 worker(s), which reach 60% of their limit: they wait on writes to the target file or on pack reads. |",
    ),
  );
  t.ok(lines.includes('| 64K | 200 | 1.00 | 500 | 954 MiB | 1.30 | 2.00 | waiting: 1.0 of 2 cores busy with 2 worker(s), which reach 25% of their limit: they wait on the main thread (dedup lookups, pack writes, fsync) or on reads |'));
  t.ok(lines.includes('Backup of a sparse source of 8.0 GiB holding 3.0 GiB of data: 20.00 s (429 MB/s), 30.00 CPU s, peak RSS 250 MB.'));
  t.ok(lines.includes('### mount: sequentialRead'));
  t.ok(lines.includes('- a note'));
  t.equal(renderMarkdown(results()), md, 'the same results give the same bytes');
  const scaled = renderMarkdown({ ...results(), scaling: { workload: 'vm', logicalBytes: 3 * GB, points: [{ threads: 1, backup: { wallSeconds: 10, cpuSeconds: 10, peakRssBytes: 1, machineBusyCores: 1.95 }, restore: { wallSeconds: 5, cpuSeconds: 5, peakRssBytes: 1 } }] } });
  t.match(scaled, '| 1 | 300 | 1.00 (machine 1.95) | 1 B | 600 | 1.00 |', 'the machine busy figure is shown where known');
});

t.test('the JSON carries the results and the derived figures', async (t) => {
  const json = JSON.parse(renderJson(results()));
  t.equal(json.profile, 'test');
  t.same(json.derived.speedups, [
    { workload: 'vm', op: 'backup', peer: 'borg', speedup: 3 },
    { workload: 'vm', op: 'restore', peer: 'borg', speedup: 5 / 3 },
  ]);
  t.equal(json.derived.goals.length, 3);
  t.equal(json.derived.scalingBottlenecks.length, 2);
});

t.test('charts: one per workload with operations, threads and chunk sizes', async (t) => {
  const charts = renderCharts(results());
  t.same(
    charts.map((c) => c.file),
    ['ops-vm.svg', 'threads.svg', 'chunk-sizes.svg'],
  );
  for (const chart of charts) t.ok(chart.svg.startsWith('<svg') && chart.svg.endsWith('</svg>\n'));
  t.match(charts[0].svg, '<title>backup chunkvault: 1500 MB/s</title>');
  // 400 MB/s per worker at half data (see above), times min(threads, cores).
  t.match(charts[1].svg, '<title>backup limit at 1: 400 MB/s</title>');
  t.match(charts[1].svg, '<title>backup limit at 2: 800 MB/s</title>');
});
