/** The README's performance section: every goal from the results, and only the marked part rewritten. */
import t from 'tap';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { README_END, README_START, allGoals, readmeSection, replaceGenerated, updateReadme } from '../../bench/readme.js';
import type { BenchResults } from '../../bench/report.js';
import { results } from '../helpers/bench-results.js';
import { tempDir } from '../helpers/index.js';

/** The fixture plus the figures of the three plug-ins, as they report them. */
function withPlugins(): BenchResults {
  const base = results();
  return {
    ...base,
    extras: [
      ...base.extras,
      { module: 'mount', name: 'mountReads', figures: { imageBytes: 3 * 1024 ** 3, sequential: { seconds: 2.5, serverCpuSeconds: 4.25, serverPeakRssBytes: 275e6 }, borg: { seconds: 6.25, serverCpuSeconds: 6.5 }, mountVsBorg: 2.5, random4k: { tool: 'fio psync, 4 jobs', cold: { iops: 3000.4 }, warm: { iops: 40000 } } } },
      { module: 'incremental', name: 'cbtIncremental', figures: { imageBytes: 3 * 1024 ** 3, touchedShare: 0.128, rounds: 3, fullSeconds: 4, incrementalSeconds: 1, borgSeconds: 7, incrementalShareOfFull: 0.25, speedupVsBorg: 7, details: { rounds: [{ shareOfFull: 0.25 }, { shareOfFull: 0.2 }, { shareOfFull: 0.304 }] } } },
      { module: 'incremental', name: 'sparseBackup', figures: { logicalBytes: 64 * 1024 ** 3, dataBytes: 1024 ** 3, sparseSeconds: 2, logicalAtFullRateSeconds: 80, speedupVsLogicalAtFullRate: 40 } },
      { module: 'retention', name: 'pruneDecisions', figures: { decisionSeconds: 0.025 } },
      { module: 'retention', name: 'markRate', figures: { baselineHexSet: { refsPerSecond: 1.3e6 }, liveSetWithNeighbours: { refsPerSecond: 20e6 } } },
      { module: 'retention', name: 'gcAfterPrune', figures: { speedupVsBorg: 2.4, chunkvault: { bytesRewritten: 1.82e9, rewriteMBps: 573, peakRssBytes: 130e6 } } },
    ],
  };
}

t.test('every goal of the issues, met or not, from the plug-ins figures', async (t) => {
  const goals = allGoals(withPlugins());
  const byStart = (text: string) => goals.find((g) => g.goal.startsWith(text))!;
  t.match(byStart('FUSE mount: sequential'), { measured: '2.50x (chunkvault 2.50 s, borg 6.25 s for 3.0 GiB; the mount process used 4.3 CPU s (borg\'s 6.5), peak RSS 275 MB)', met: true });
  t.match(byStart('FUSE mount: 4 KiB'), { measured: '3000 IOPS cold, 40000 IOPS warm (fio psync, 4 jobs)' });
  t.match(byStart('CBT incremental of a 3.0 GiB image'), { measured: 'median 25.0% over 3 rounds (25.0%, 20.0%, 30.4%); median incremental 1.00 s, full 4.00 s; 12.8% of 1 MiB slots touched', met: false });
  t.match(byStart('CBT incremental at least 8x'), { measured: '7.00x (1.00 s against 7.00 s)', met: false });
  t.match(byStart('sparse 64.0 GiB image with 1.0 GiB of data'), { measured: '40.00x (2.00 s against 80.00 s)', met: true });
  t.match(byStart('prune decides'), { measured: '0.025 s', met: true });
  t.match(byStart('gc marks'), { measured: '20.0 M/s (a set of hex ids: 1.30 M/s)', met: true });
  t.match(byStart('prune + gc'), { measured: '2.40x faster; gc rewrote 1.7 GiB at 573 MB/s, peak RSS 130 MB' });

  const oneRound = withPlugins();
  const cbt = oneRound.extras.find((e) => e.name === 'cbtIncremental')!;
  cbt.figures = { ...(cbt.figures as object), details: { rounds: [{ shareOfFull: 0.25 }] } };
  t.match(
    allGoals(oneRound).find((g) => g.goal.startsWith('CBT incremental of a 3.0 GiB image')),
    { measured: '25.0% (1.00 s against 4.00 s; 12.8% of 1 MiB slots touched)' },
    'one round: no median to speak of',
  );

  const bare = allGoals(results());
  t.equal(bare.length, goals.length, 'a run without the plug-ins lists the same goals');
  t.same(bare.slice(3).map((g) => [g.measured, g.met]), goals.slice(3).map(() => ['not measured in this run', null]));
});

t.test('the section: goals with verdicts, limits, operations, bottlenecks and charts under the results directory', async (t) => {
  const lines = readmeSection(withPlugins(), 'bench/results/full').split('\n');
  t.equal(lines[0], 'Measured by `npm run bench -- --profile test` on 2026-11-21, 2 cores (Test CPU), load average 0.50 at start, 1 min. Full report: [bench/results/full/report.md](bench/results/full/report.md).');
  t.ok(lines.includes('| CBT incremental at least 8x faster than `borg create` of the changed image (issue 4) | 7.00x (1.00 s against 7.00 s) | **not met** |'));
  t.ok(lines.includes('| sparse 64.0 GiB image with 1.0 GiB of data at least 20x faster than its size at the full rate (issue 4) | 40.00x (2.00 s against 80.00 s) | met |'));
  t.ok(lines.some((l) => l.startsWith('| prune + gc against') && l.endsWith('| — |')), 'a figure without a threshold has no verdict');
  t.ok(lines.includes('| chunkvault | backup | 1500 | 2.00 | 2.00 | 95.4 MiB | 954 MiB | 3.00x | 0.75x | 1.88x |'));
  t.ok(lines.includes('![operations on vm](bench/results/full/ops-vm.svg)'));
  t.ok(lines.includes('![throughput against worker threads](bench/results/full/threads.svg)'));
  t.ok(lines.some((l) => l.startsWith('- 2 worker threads: backup ')));
  t.ok(lines.some((l) => l.startsWith('Physical limits in the same run: BLAKE3 1000 MB/s')));
  t.ok(lines.some((l) => l.includes(', aes-256-gcm 1200/1300 MB/s seal/open, chacha20-poly1305 1000/1050 MB/s seal/open; `cat`')), 'the AEADs on 1 MiB records beside BLAKE3 and LZ4');
  t.notOk(lines.some((l) => l.startsWith('#')), 'no headings of its own: it goes under the README heading');
  t.ok(readmeSection(withPlugins(), '').includes('](ops-vm.svg)'), 'beside the report, charts are relative');
});

t.test('only the part between the markers is replaced; a README without them is refused', async (t) => {
  const readme = `# title\n\n## Performance\n\nhow to run\n\n${README_START}\nold figures\n${README_END}\n\n## Next\n`;
  t.equal(replaceGenerated(readme, 'new figures\n'), `# title\n\n## Performance\n\nhow to run\n\n${README_START}\nnew figures\n${README_END}\n\n## Next\n`);
  t.throws(() => replaceGenerated('# no markers\n', 'x'), /README has no generated performance section/);

  const dir = await tempDir(t);
  const path = join(dir, 'README.md');
  await fs.writeFile(path, readme);
  await updateReadme(path, withPlugins(), 'bench/results/full');
  const updated = await fs.readFile(path, 'utf8');
  t.ok(updated.startsWith('# title\n\n## Performance\n\nhow to run\n\n'));
  t.ok(updated.endsWith(`${README_END}\n\n## Next\n`));
  t.notOk(updated.includes('old figures'));
  t.ok(updated.includes('| prune decides for 10,000 restore points in under a second (issue 5) | 0.025 s | met |'));
});
