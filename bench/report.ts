/**
 * The benchmark's results and everything derived from them: ratios to peers and to the
 * physical limits, the goals of issue 2, a bottleneck sentence per scaling point, and the
 * Markdown, JSON and SVG renderings. Pure functions: the same results give the same bytes.
 */
import { formatBytes } from '../store/size.js';
import type { Limits } from './limits.js';
import type { MissingPeer } from './peers.js';
import { barChart, lineChart } from './svg.js';

/** The operations every tool runs (OPS, compared with the peers), then chunkvault's own: gc --recompress and a restore of what it rewrote. */
export type Op = 'backup' | 'backup-changed' | 'restore' | 'verify' | 'recompress' | 'restore-recompressed';
export const OPS: Op[] = ['backup', 'backup-changed', 'restore', 'verify'];
export const CHUNKVAULT = 'chunkvault';

export interface RunFigures {
  wallSeconds: number;
  cpuSeconds: number;
  peakRssBytes: number;
  /** Cores the whole machine kept busy during the run, this run's included (absent in older results). */
  machineBusyCores?: number;
}

export interface OpResult extends RunFigures {
  workload: string;
  tool: string;
  op: Op;
  logicalBytes: number;
  /** Repository bytes on disk after a backup; null for other operations. */
  storedBytes: number | null;
  /** Restores: whether the restored image equals the source byte for byte. */
  identical: boolean | null;
}

export interface ToolInfo {
  name: string;
  version: string;
  settings: string;
}

export interface WorkloadSummary {
  name: string;
  kind: string;
  size: number;
  dataBytes: number;
  allocatedBytes: number;
  changedBytes: number;
  changedRanges: number;
  details: Record<string, number>;
}

/** chunkvault's own view of a workload after its full backup (`stats --json`). */
export interface StoreFigures {
  workload: string;
  dedupRatio: number;
  compressionRatio: number;
  /** Share of the disk in non-zero chunks: hashing and LZ4 only ever see these bytes. */
  dataShare: number;
}

export interface ScalingPoint {
  threads: number;
  backup: RunFigures;
  restore: RunFigures;
}

export interface ChunkSizePoint {
  chunkSize: number;
  backup: RunFigures;
  restore: RunFigures;
  storedBytes: number;
  dedupRatio: number;
  compressionRatio: number;
  dataShare: number;
}

export interface LargeSource extends RunFigures {
  size: number;
  dataBytes: number;
}

/** One run of chunkvault or its peer in a round: both tools run in every round, in alternating order. */
export interface PairedRun extends RunFigures {
  round: number;
  tool: string;
  op: Op;
}

/** chunkvault and one peer back up and restore the same image round after round, so both see the same load. */
export interface Paired {
  workload: string;
  peer: string;
  runs: PairedRun[];
}

export interface Extra {
  module: string;
  name: string;
  figures: unknown;
}

export interface BenchResults {
  schema: 1;
  profile: string;
  started: string;
  seconds: number;
  limits: Limits | null;
  workloads: WorkloadSummary[];
  tools: ToolInfo[];
  missing: MissingPeer[];
  ops: OpResult[];
  stores: StoreFigures[];
  scaling: { workload: string; logicalBytes: number; points: ScalingPoint[] } | null;
  chunkSizes: { workload: string; logicalBytes: number; points: ChunkSizePoint[] } | null;
  large: LargeSource | null;
  paired: Paired | null;
  extras: Extra[];
  notes: string[];
}

export const RSS_GOAL_BYTES = 300e6;

/** MB/s (10^6 bytes per second) of logical data. */
export function mbps(bytes: number, seconds: number): number {
  return seconds > 0 ? bytes / 1e6 / seconds : 0;
}

function opMBps(op: OpResult): number {
  return mbps(op.logicalBytes, op.wallSeconds);
}

export function findOp(results: BenchResults, workload: string, tool: string, op: Op): OpResult | undefined {
  return results.ops.find((o) => o.workload === workload && o.tool === tool && o.op === op);
}

/** How many times faster chunkvault is than `peer` at `op` (wall time of the same bytes). */
export function speedup(results: BenchResults, workload: string, op: Op, peer: string): number | null {
  const ours = findOp(results, workload, CHUNKVAULT, op);
  const theirs = findOp(results, workload, peer, op);
  return ours && theirs && ours.wallSeconds > 0 ? theirs.wallSeconds / ours.wallSeconds : null;
}

/** Logical MB/s one core can process at best for an operation: its per-byte work on the non-zero share. */
export function perCoreLimitMBps(limits: Limits, op: Op, dataShare: number): number {
  const b3 = 1 / limits.blake3MBps;
  const work = op === 'backup' || op === 'backup-changed' ? b3 + 1 / limits.lz4CompressMBps : b3 + 1 / limits.lz4DecompressMBps;
  return 1 / work / Math.max(dataShare, 1e-9);
}

export interface BottleneckInput extends RunFigures {
  threads: number;
  logicalBytes: number;
}

/** The I/O an operation cannot beat, and what its workers wait on when they are not busy. */
export interface IoBound {
  doing: string;
  limit: string;
  mbps: number;
  waitsOn: string;
}

export function ioBound(limits: Limits, op: Op): IoBound {
  return op === 'restore'
    ? { doing: 'writing the target', limit: 'cp --sparse + sync', mbps: limits.read.copyMBps, waitsOn: 'writes to the target file or on pack reads' }
    : { doing: 'reading the source', limit: 'cat', mbps: limits.read.warmMBps, waitsOn: 'the main thread (dedup lookups, pack writes, fsync) or on reads' };
}

/** One sentence on what limits a run, from its figures and the limits measured in the same run. */
export function bottleneck(run: BottleneckInput, cores: number, io: IoBound, perCoreMBps: number): string {
  const rate = mbps(run.logicalBytes, run.wallSeconds);
  const busy = run.cpuSeconds / Math.max(run.wallSeconds, 1e-9);
  const workers = Math.min(run.threads, cores);
  const workerShare = rate / (workers * perCoreMBps);
  const pct = (x: number): string => `${Math.round(x * 100)}%`;
  if (rate >= 0.8 * io.mbps) return `${io.doing}: ${rate.toFixed(0)} MB/s is ${pct(rate / io.mbps)} of ${io.limit} (${io.mbps.toFixed(0)} MB/s)`;
  const machine = run.machineBusyCores ?? 0;
  if (machine >= 0.9 * cores && busy < 0.75 * machine) {
    return `contention: the machine kept ${machine.toFixed(1)} of ${cores} cores busy, this run only ${busy.toFixed(1)}; other processes took the rest (its workers reached ${pct(workerShare)} of their single-core limit)`;
  }
  if (workerShare >= 0.75) {
    return `the workers' hashing and LZ4: ${workers} worker(s) run at ${pct(workerShare)} of the single-core limit each; ${run.threads < cores ? 'more workers would help' : 'only more cores would help'}`;
  }
  if (busy >= 0.85 * cores) {
    return `CPU: ${busy.toFixed(1)} of ${cores} cores busy, yet the workers reach ${pct(workerShare)} of their single-core limit: the time goes outside hashing and LZ4 (main thread, copies, kernel)`;
  }
  return `waiting: ${busy.toFixed(1)} of ${cores} cores busy with ${run.threads} worker(s), which reach ${pct(workerShare)} of their limit: they wait on ${io.waitsOn}`;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length === 0 ? NaN : sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Per round, how many times faster chunkvault was than the peer (rounds where both ran). */
export function pairedSpeedups(paired: Paired, op: Op): { round: number; ours: number; theirs: number; speedup: number }[] {
  const out: { round: number; ours: number; theirs: number; speedup: number }[] = [];
  for (const run of paired.runs) {
    if (run.tool !== CHUNKVAULT || run.op !== op) continue;
    const theirs = paired.runs.find((r) => r.round === run.round && r.op === op && r.tool === paired.peer);
    if (theirs) out.push({ round: run.round, ours: run.wallSeconds, theirs: theirs.wallSeconds, speedup: theirs.wallSeconds / run.wallSeconds });
  }
  return out;
}

export interface Goal {
  goal: string;
  measured: string;
  met: boolean | null;
}

/** The performance goals of issue 2, on the VM-like workload (the first one). */
export function goals(results: BenchResults): Goal[] {
  const vm = results.workloads[0]?.name ?? '';
  const versus = (op: Op, what: string): Goal => {
    const rounds = results.paired?.peer === 'borg' && results.paired.workload === vm ? pairedSpeedups(results.paired, op) : [];
    if (rounds.length > 0) {
      const m = median(rounds.map((r) => r.speedup));
      return {
        goal: `${what} at least 2x faster than borg`,
        measured: `median ${m.toFixed(2)}x over ${rounds.length} alternating rounds (${rounds.map((r) => `${r.speedup.toFixed(2)}x`).join(', ')}); median chunkvault ${median(rounds.map((r) => r.ours)).toFixed(2)} s, borg ${median(rounds.map((r) => r.theirs)).toFixed(2)} s`,
        met: m >= 2,
      };
    }
    const ratio = speedup(results, vm, op, 'borg');
    const ours = findOp(results, vm, CHUNKVAULT, op);
    const theirs = findOp(results, vm, 'borg', op);
    const goal = `${what} at least 2x faster than borg`;
    if (ratio === null || !ours || !theirs) return { goal, measured: 'not measured in this run', met: null };
    return { goal, measured: `${ratio.toFixed(2)}x (chunkvault ${ours.wallSeconds.toFixed(2)} s, borg ${theirs.wallSeconds.toFixed(2)} s)`, met: ratio >= 2 };
  };
  const rss: Goal = results.large
    ? {
        goal: `peak RSS of backup under ${RSS_GOAL_BYTES / 1e6} MB for a source of ${formatBytes(results.large.size)}`,
        measured: `${(results.large.peakRssBytes / 1e6).toFixed(0)} MB`,
        met: results.large.peakRssBytes < RSS_GOAL_BYTES,
      }
    : { goal: `peak RSS of backup under ${RSS_GOAL_BYTES / 1e6} MB for a source of 8 GiB`, measured: 'not measured in this run', met: null };
  return [versus('backup', 'full backup (borg create --compression lz4)'), versus('restore', 'restore (borg extract)'), rss];
}

function rate(x: number): string {
  return x >= 100 ? x.toFixed(0) : x.toFixed(1);
}

function ratio(x: number | null): string {
  return x === null ? '—' : `${x.toFixed(2)}x`;
}

function row(cells: (string | number)[]): string {
  return `| ${cells.join(' | ')} |`;
}

function table(head: string[], rows: (string | number)[][]): string[] {
  return [row(head), row(head.map(() => '---')), ...rows.map(row)];
}

function limitsSection(limits: Limits): string[] {
  const { machine, read } = limits;
  return [
    '## Physical limits (measured in this run)',
    '',
    ...table(
      ['limit', 'figure'],
      [
        ['cores', `${machine.cores} (${machine.cpuModel})`],
        ['load average at start', machine.loadAverage.toFixed(2)],
        ['`cat` of the source, cold', read.coldMBps === null ? 'page cache could not be dropped (not root): no cold figure' : `${rate(read.coldMBps)} MB/s`],
        ['`cat` of the source, warm (every tool ran warm)', `${rate(read.warmMBps)} MB/s`],
        ['`cp --sparse=always` of the source + `sync` (restore target)', `${rate(read.copyMBps)} MB/s`],
        ['BLAKE3, one core (per CPU second, so others\' load does not lower it)', `${rate(limits.blake3MBps)} MB/s`],
        ['LZ4 compress, one core', `${rate(limits.lz4CompressMBps)} MB/s (ratio ${limits.lz4Ratio.toFixed(2)})`],
        ['LZ4 decompress, one core', `${rate(limits.lz4DecompressMBps)} MB/s`],
        ['BLAKE3 + LZ4 compress, one core', `${rate(limits.hashCompressMBps)} MB/s`],
        ...(limits.blake3KeyedMBps === undefined ? [] : [['BLAKE3 keyed (encrypted store\'s chunk ids), one core', `${rate(limits.blake3KeyedMBps)} MB/s`]]),
        // Results written before zstd was measured have none.
        ...(limits.zstd ?? []).map((z) => [`zstd level ${z.level}, one core (${formatBytes(z.sampleBytes)})`, `${rate(z.compressMBps)} MB/s compress, ${rate(z.decompressMBps)} MB/s decompress (ratio ${z.ratio.toFixed(2)})`]),
        ...(limits.aead ?? []).map((a) => [
          `${a.cipher} seal / open, one core (${formatBytes(a.recordBytes)} records)`,
          `${rate(a.sealMBps)} / ${rate(a.openMBps)} MB/s (\`openssl speed\`: ${a.opensslMBps === null ? 'no openssl' : `${rate(a.opensslMBps)} MB/s`})`,
        ]),
        ['sample', `${formatBytes(limits.sampleBytes)} of the workload's non-zero data`],
      ],
    ),
    '',
  ];
}

function workloadsSection(results: BenchResults): string[] {
  return [
    '## Workloads',
    '',
    ...table(
      ['workload', 'kind', 'size', 'data', 'allocated', 'changed (CBT)', 'details'],
      results.workloads.map((w) => [
        w.name,
        w.kind,
        formatBytes(w.size),
        formatBytes(w.dataBytes),
        formatBytes(w.allocatedBytes),
        `${formatBytes(w.changedBytes)} in ${w.changedRanges} ranges`,
        Object.entries(w.details)
          .map(([k, v]) => `${k} ${v}`)
          .join(', '),
      ]),
    ),
    '',
  ];
}

export function opsSection(results: BenchResults, workload: WorkloadSummary): string[] {
  const peers = results.tools.map((t) => t.name).filter((n) => n !== CHUNKVAULT);
  const store = results.stores.find((s) => s.workload === workload.name);
  const limits = results.limits;
  const head = ['tool', 'operation', 'MB/s', 'wall s', 'CPU s', 'peak RSS', 'repository', ...peers.map((p) => `vs ${p}`), 'vs I/O limit', 'vs CPU limit'];
  const rows = results.ops
    .filter((o) => o.workload === workload.name)
    .map((o) => {
      const ours = o.tool === CHUNKVAULT;
      // Limits are of the LZ4 paths; recompression's own (zstd) is in the limits section.
      const compared = OPS.includes(o.op);
      const cpuLimit = limits && store && compared ? perCoreLimitMBps(limits, o.op, store.dataShare) * limits.machine.cores : null;
      return [
        o.tool,
        o.op + (o.identical === false ? ' (NOT IDENTICAL)' : ''),
        rate(opMBps(o)),
        o.wallSeconds.toFixed(2),
        o.cpuSeconds.toFixed(2),
        formatBytes(o.peakRssBytes),
        o.storedBytes === null ? '' : formatBytes(o.storedBytes),
        ...peers.map((p) => (ours ? ratio(speedup(results, workload.name, o.op, p)) : '')),
        limits && compared ? ratio(opMBps(o) / ioBound(limits, o.op).mbps) : '',
        ours && cpuLimit ? ratio(opMBps(o) / cpuLimit) : '',
      ];
    });
  const lines = [`## Operations on ${workload.name} (${formatBytes(workload.size)})`, '', ...table(head, rows), ''];
  lines.push("backup-changed backs up the changed image into the same repository without a CBT list: chunkvault under the same name, so the first backup is its default parent (unchanged chunks skip compression), as borg's chunk index and restic's parent snapshot do for them; restore and verify are of the first backup, and every restore is timed until its data is on disk (`sync FILE` after the tool: chunkvault fsyncs, borg and restic do not).");
  lines.push('MB/s are logical bytes (the whole disk) per wall second. "vs PEER" is how many times faster chunkvault is (PEER wall time / chunkvault wall time);');
  lines.push('"vs I/O limit" compares with `cat` of the source (restore: `cp --sparse` + `sync` of it); "vs CPU limit" with all cores hashing + LZ4 on the non-zero share at their single-core speed.');
  if (store) lines.push(`chunkvault store: dedup ratio ${store.dedupRatio.toFixed(2)}, compression ratio ${store.compressionRatio.toFixed(2)}, non-zero share ${(store.dataShare * 100).toFixed(1)}%.`);
  lines.push('', `![operations on ${workload.name}](ops-${workload.name}.svg)`, '');
  return lines;
}

function toolsSection(results: BenchResults): string[] {
  if (results.tools.length === 0 && results.missing.length === 0) return [];
  const lines = ['## Tools', '', ...table(['tool', 'version', 'settings'], results.tools.map((t) => [t.name, t.version, t.settings]))];
  for (const m of results.missing) lines.push('', `- ${m.name}: ${m.note}`);
  return [...lines, ''];
}

export function scalingBottlenecks(results: BenchResults): { threads: number; backup: string; restore: string }[] {
  const { scaling, limits } = results;
  if (!scaling || !limits) return [];
  const share = results.stores.find((s) => s.workload === scaling.workload)?.dataShare ?? 1;
  return scaling.points.map((p) => ({
    threads: p.threads,
    backup: bottleneck({ ...p.backup, threads: p.threads, logicalBytes: scaling.logicalBytes }, limits.machine.cores, ioBound(limits, 'backup'), perCoreLimitMBps(limits, 'backup', share)),
    restore: bottleneck({ ...p.restore, threads: p.threads, logicalBytes: scaling.logicalBytes }, limits.machine.cores, ioBound(limits, 'restore'), perCoreLimitMBps(limits, 'restore', share)),
  }));
}

export function chunkSizeBottlenecks(results: BenchResults): { chunkSize: number; backup: string }[] {
  const { chunkSizes, limits } = results;
  if (!chunkSizes || !limits) return [];
  const cores = limits.machine.cores;
  return chunkSizes.points.map((p) => ({
    chunkSize: p.chunkSize,
    backup: bottleneck({ ...p.backup, threads: cores, logicalBytes: chunkSizes.logicalBytes }, cores, ioBound(limits, 'backup'), perCoreLimitMBps(limits, 'backup', p.dataShare)),
  }));
}

/** Cores this run kept busy, and the whole machine's where known: the gap is others' load. */
function busy(run: RunFigures): string {
  const own = (run.cpuSeconds / Math.max(run.wallSeconds, 1e-9)).toFixed(2);
  return run.machineBusyCores === undefined ? own : `${own} (machine ${run.machineBusyCores.toFixed(2)})`;
}

function scalingSection(results: BenchResults): string[] {
  const { scaling } = results;
  if (!scaling) return [];
  const sentences = scalingBottlenecks(results);
  const rows = scaling.points.map((p, i) => [
    p.threads,
    rate(mbps(scaling.logicalBytes, p.backup.wallSeconds)),
    busy(p.backup),
    formatBytes(p.backup.peakRssBytes),
    rate(mbps(scaling.logicalBytes, p.restore.wallSeconds)),
    busy(p.restore),
    sentences[i] ? `backup: ${sentences[i].backup}. Restore: ${sentences[i].restore}.` : '',
  ]);
  return [
    `## Throughput against worker threads (${scaling.workload}, backup --threads N)`,
    '',
    ...table(['threads', 'backup MB/s', 'backup cores busy', 'backup peak RSS', 'restore MB/s', 'restore cores busy', 'bottleneck'], rows),
    '',
    '![throughput against worker threads](threads.svg)',
    '',
  ];
}

export function chunkLabel(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${bytes / (1024 * 1024)}M` : `${bytes / 1024}K`;
}

function chunkSizeSection(results: BenchResults): string[] {
  const { chunkSizes } = results;
  if (!chunkSizes) return [];
  const sentences = chunkSizeBottlenecks(results);
  const rows = chunkSizes.points.map((p, i) => [
    chunkLabel(p.chunkSize),
    rate(mbps(chunkSizes.logicalBytes, p.backup.wallSeconds)),
    busy(p.backup),
    rate(mbps(chunkSizes.logicalBytes, p.restore.wallSeconds)),
    formatBytes(p.storedBytes),
    p.dedupRatio.toFixed(2),
    p.compressionRatio.toFixed(2),
    sentences[i]?.backup ?? '',
  ]);
  return [
    `## Chunk size (${chunkSizes.workload}, default threads)`,
    '',
    ...table(['chunk size', 'backup MB/s', 'backup cores busy', 'restore MB/s', 'repository', 'dedup', 'compression', 'backup bottleneck'], rows),
    '',
    '![throughput against chunk size](chunk-sizes.svg)',
    '',
  ];
}

function pairedLines(paired: Paired): string[] {
  const rows = (['backup', 'restore'] as Op[]).flatMap((op) => pairedSpeedups(paired, op).map((r) => [r.round, op, r.ours.toFixed(2), r.theirs.toFixed(2), ratio(r.speedup)]));
  return [
    `chunkvault and ${paired.peer} ran alternately on ${paired.workload} (the order flips every round), so each ratio compares runs under the same load:`,
    '',
    ...table(['round', 'operation', 'chunkvault s', `${paired.peer} s`, 'speedup'], rows),
    '',
  ];
}

function goalsSection(results: BenchResults): string[] {
  return [
    '## Goals (issue 2)',
    '',
    ...table(['goal', 'measured', 'result'], goals(results).map((g) => [g.goal, g.measured, g.met === null ? 'not measured' : g.met ? 'met' : 'NOT met'])),
    '',
    ...(results.paired ? pairedLines(results.paired) : []),
  ];
}

function largeSection(results: BenchResults): string[] {
  const { large } = results;
  if (!large) return [];
  return [
    '## Large source',
    '',
    `Backup of a sparse source of ${formatBytes(large.size)} holding ${formatBytes(large.dataBytes)} of data: ${large.wallSeconds.toFixed(2)} s (${rate(mbps(large.size, large.wallSeconds))} MB/s), ${large.cpuSeconds.toFixed(2)} CPU s, peak RSS ${(large.peakRssBytes / 1e6).toFixed(0)} MB.`,
    '',
  ];
}

function cell(value: unknown): string {
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : value.toFixed(3);
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** Another module's figures, whatever their shape: arrays of records as tables, records as key/value rows. */
export function figuresLines(figures: unknown): string[] {
  if (Array.isArray(figures) && figures.length > 0 && figures.every((f) => f !== null && typeof f === 'object' && !Array.isArray(f))) {
    const keys = [...new Set(figures.flatMap((f) => Object.keys(f as object)))];
    return table(keys, figures.map((f) => keys.map((k) => cell((f as Record<string, unknown>)[k] ?? ''))));
  }
  if (isRecord(figures)) return table(['figure', 'value'], flatten(figures, ''));
  return [cell(figures)];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** Nested records become dotted keys; lists of plain values one cell. */
function flatten(record: Record<string, unknown>, prefix: string): string[][] {
  return Object.entries(record).flatMap(([key, value]) => {
    const name = prefix + key;
    if (isRecord(value)) return flatten(value, `${name}.`);
    if (Array.isArray(value) && value.every((v) => !isRecord(v) && !Array.isArray(v))) return [[name, value.map(cell).join('; ')]];
    return [[name, cell(value)]];
  });
}

function extrasSection(results: BenchResults): string[] {
  if (results.extras.length === 0) return [];
  const lines = ['## Other measurements'];
  for (const extra of results.extras) lines.push('', `### ${extra.module}: ${extra.name}`, '', ...figuresLines(extra.figures));
  return [...lines, ''];
}

export function renderMarkdown(results: BenchResults): string {
  const machine = results.limits?.machine;
  const lines = [
    `# chunkvault benchmark: ${results.profile} profile`,
    '',
    `Run ${results.started}, ${results.seconds.toFixed(0)} s${machine ? ` on ${machine.cores} cores (load average ${machine.loadAverage.toFixed(2)} at start)` : ''}.`,
    'Other processes may share the cores: compare the ratios measured within this run rather than absolute figures across runs.',
    '',
    ...goalsSection(results),
    ...(results.limits ? limitsSection(results.limits) : []),
    ...workloadsSection(results),
    ...results.workloads.filter((w) => results.ops.some((o) => o.workload === w.name)).flatMap((w) => opsSection(results, w)),
    ...toolsSection(results),
    ...scalingSection(results),
    ...chunkSizeSection(results),
    ...largeSection(results),
    ...extrasSection(results),
    ...(results.notes.length > 0 ? ['## Notes', '', ...results.notes.map((n) => `- ${n}`), ''] : []),
  ];
  return lines.join('\n');
}

/** The results with every derived figure, for tools that read the JSON. */
export function renderJson(results: BenchResults): string {
  const derived = {
    goals: goals(results),
    speedups: results.workloads.flatMap((w) =>
      OPS.flatMap((op) => results.tools.filter((t) => t.name !== CHUNKVAULT).map((t) => ({ workload: w.name, op, peer: t.name, speedup: speedup(results, w.name, op, t.name) }))),
    ).filter((s) => s.speedup !== null),
    scalingBottlenecks: scalingBottlenecks(results),
    chunkSizeBottlenecks: chunkSizeBottlenecks(results),
  };
  return JSON.stringify({ ...results, derived }, null, 2) + '\n';
}

export function renderCharts(results: BenchResults): { file: string; svg: string }[] {
  const charts: { file: string; svg: string }[] = [];
  for (const w of results.workloads) {
    const ops = results.ops.filter((o) => o.workload === w.name);
    if (ops.length === 0) continue;
    const groups = OPS.filter((op) => ops.some((o) => o.op === op)).map((op) => ({
      label: op,
      values: ops.filter((o) => o.op === op).map((o) => ({ series: o.tool, value: opMBps(o) })),
    }));
    charts.push({ file: `ops-${w.name}.svg`, svg: barChart({ title: `${w.name}: throughput per operation`, unit: 'MB/s', groups }) });
  }
  const { scaling, chunkSizes, limits } = results;
  // The reference line: what backup workers could do at their single-core hash + LZ4 speed.
  const cpuLimit = (points: { threads: number; dataShare: number }[]): { name: string; values: number[] }[] =>
    limits ? [{ name: 'backup limit', values: points.map((p) => perCoreLimitMBps(limits, 'backup', p.dataShare) * Math.min(p.threads, limits.machine.cores)) }] : [];
  if (scaling) {
    charts.push({
      file: 'threads.svg',
      svg: lineChart({
        title: `${scaling.workload}: throughput against worker threads`,
        xLabel: 'worker threads',
        unit: 'MB/s',
        x: scaling.points.map((p) => String(p.threads)),
        series: [
          { name: 'backup', values: scaling.points.map((p) => mbps(scaling.logicalBytes, p.backup.wallSeconds)) },
          { name: 'restore', values: scaling.points.map((p) => mbps(scaling.logicalBytes, p.restore.wallSeconds)) },
          ...cpuLimit(scaling.points.map((p) => ({ threads: p.threads, dataShare: results.stores.find((st) => st.workload === scaling.workload)?.dataShare ?? 1 }))),
        ],
      }),
    });
  }
  if (chunkSizes) {
    charts.push({
      file: 'chunk-sizes.svg',
      svg: lineChart({
        title: `${chunkSizes.workload}: throughput against chunk size`,
        xLabel: 'chunk size',
        unit: 'MB/s',
        x: chunkSizes.points.map((p) => chunkLabel(p.chunkSize)),
        series: [
          { name: 'backup', values: chunkSizes.points.map((p) => mbps(chunkSizes.logicalBytes, p.backup.wallSeconds)) },
          { name: 'restore', values: chunkSizes.points.map((p) => mbps(chunkSizes.logicalBytes, p.restore.wallSeconds)) },
          ...cpuLimit(chunkSizes.points.map((p) => ({ threads: limits?.machine.cores ?? 1, dataShare: p.dataShare }))),
        ],
      }),
    });
  }
  return charts;
}
