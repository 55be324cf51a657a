/**
 * `npm run bench`: builds the workloads, measures the physical limits, runs chunkvault and
 * every installed peer on the same bytes, sweeps worker threads and chunk sizes, and writes
 * report.md, results.json, summary.md and SVG charts; a full run (every step) also rewrites the
 * README's performance section (bench/readme.ts).
 *
 *   node dist/bench/run.js [--profile quick|default|full] [--out DIR] [--work DIR]
 *                          [--only limits,paired,ops,peers,scaling,chunks,large,mount,incremental,retention,encryption]
 *                          [--rounds N] [--cpu-prof DIR]
 *   node dist/bench/run.js --render results.json [--out DIR] [--readme]   (the report again, from saved results;
 *                                                                         --readme: and the README section)
 * `paired` runs chunkvault and borg alternately for --rounds rounds (default 3): the goals
 * of issue 2 are judged on the median of those same-load ratios. The CBT incremental repeats
 * its full + incremental pair as many times and is judged the same way.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { CLI, chunkvaultTool, cliJson, runCli } from './chunkvault.js';
import { PLUGIN_MODULES, type BenchContext } from './context.js';
import { measureCpu, measureRead, machineInfo, type Limits } from './limits.js';
import { measureCommand, readWarm, type CommandRun } from './measure.js';
import { dirBytes, findPeers, removeRepo, type Tool } from './peers.js';
import {
  CHUNKVAULT,
  renderCharts,
  renderJson,
  renderMarkdown,
  type BenchResults,
  type ChunkSizePoint,
  type OpResult,
  type PairedRun,
  type RunFigures,
  type ScalingPoint,
  type StoreFigures,
  type WorkloadSummary,
} from './report.js';
import { readmeSection, updateReadme } from './readme.js';
import { buildWorkload, MiB, PROFILES, sampleData, type DiskWorkload, type ProfileName } from './workload.js';

const STEPS = ['limits', 'paired', 'ops', 'peers', 'scaling', 'chunks', 'large', ...PLUGIN_MODULES] as const;
type Step = (typeof STEPS)[number];
const CHUNK_SIZES = [64, 128, 256, 512, 1024, 2048, 4096, 8192].map((k) => k * 1024);
const SAMPLE_BYTES = 256 * MiB;

function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

function figures(run: CommandRun): RunFigures {
  return { wallSeconds: run.wallSeconds, cpuSeconds: run.cpuSeconds, peakRssBytes: run.peakRssBytes, machineBusyCores: run.machineBusyCores };
}

function summary(w: DiskWorkload): WorkloadSummary {
  return { name: w.spec.name, kind: w.spec.kind, size: w.size, dataBytes: w.dataBytes, allocatedBytes: w.allocatedBytes, changedBytes: w.changedBytes, changedRanges: w.changedRanges, details: w.details };
}

function identical(a: string, b: string): boolean {
  return spawnSync('cmp', ['-s', a, b]).status === 0;
}

interface StoreStats {
  storedBytes: number;
  dedupRatio: number;
  compressionRatio: number;
  dataBytes: number;
  logicalBytes: number;
}

async function storeFigures(repo: string): Promise<StoreStats> {
  return (await cliJson<StoreStats>(['stats', '--store', repo])).value;
}

/**
 * A restore timed until its data is on disk: chunkvault fsyncs the target before it exits,
 * borg extract and restic restore do not, and the `sync` before the next timed command would
 * otherwise flush their gigabytes outside any measurement. `sync FILE` after each tool (a
 * no-op for a file already synced) makes every restore pay for the same durability.
 */
async function restoreUntilDurable(tool: Tool, repo: string, tag: string, into: string): Promise<{ run: CommandRun; path: string }> {
  readWarm(repo);
  const { run, path } = await tool.restore(repo, tag, into);
  const sync = await measureCommand('sync', [path], { settle: false });
  return {
    path,
    run: { ...run, wallSeconds: run.wallSeconds + sync.wallSeconds, cpuSeconds: run.cpuSeconds + sync.cpuSeconds },
  };
}

/** One tool through the same sequence on one workload: full backup, backup of the changed image, restore, verify. */
async function runTool(tool: Tool, workload: DiskWorkload, workDir: string): Promise<{ ops: OpResult[]; store: StoreFigures | null }> {
  const repo = join(workDir, 'repos', `${tool.name}-${workload.spec.name}`);
  const into = join(workDir, 'restore', tool.name);
  const name = workload.spec.name;
  const ops: OpResult[] = [];
  const add = (op: OpResult['op'], run: CommandRun, extra: Partial<OpResult> = {}): void => {
    ops.push({ workload: name, tool: tool.name, op, logicalBytes: workload.size, storedBytes: null, identical: null, ...figures(run), ...extra });
  };
  await removeRepo(repo);
  await fs.mkdir(dirname(repo), { recursive: true });
  let store: StoreFigures | null = null;
  try {
    await tool.init(repo);
    log(`${tool.name}: backup ${name}`);
    add('backup', await tool.backup(repo, workload.base, 'base'), { storedBytes: await dirBytes(repo) });
    if (tool.name === CHUNKVAULT) store = { workload: name, ...(await ratiosOf(repo)) };
    if (workload.changed) {
      log(`${tool.name}: backup of the changed ${name}`);
      add('backup-changed', await tool.backup(repo, workload.changed, 'changed'), { storedBytes: await dirBytes(repo) });
    }
    log(`${tool.name}: restore ${name}`);
    await fs.rm(into, { recursive: true, force: true });
    await fs.mkdir(into, { recursive: true });
    const restored = await restoreUntilDurable(tool, repo, 'base', into);
    add('restore', restored.run, { identical: identical(workload.base, restored.path) });
    await fs.rm(into, { recursive: true, force: true });
    if (tool.verify) {
      log(`${tool.name}: verify ${name}`);
      readWarm(repo);
      add('verify', await tool.verify(repo));
    }
    if (tool.recompress) {
      log(`${tool.name}: recompress ${name}`);
      readWarm(repo);
      add('recompress', await tool.recompress(repo), { storedBytes: await dirBytes(repo) });
      await fs.mkdir(into, { recursive: true });
      const again = await restoreUntilDurable(tool, repo, 'base', into);
      add('restore-recompressed', again.run, { identical: identical(workload.base, again.path) });
      await fs.rm(into, { recursive: true, force: true });
    }
  } finally {
    await removeRepo(repo);
  }
  return { ops, store };
}

async function ratiosOf(repo: string): Promise<Omit<StoreFigures, 'workload'>> {
  const s = await storeFigures(repo);
  return { dedupRatio: s.dedupRatio, compressionRatio: s.compressionRatio, dataShare: s.logicalBytes > 0 ? s.dataBytes / s.logicalBytes : 1 };
}

/**
 * chunkvault and a peer, alternately, round after round: full backup then restore of the
 * same image into a fresh repository. Others sharing the cores slow both tools alike.
 */
async function pairedRounds(workload: DiskWorkload, workDir: string, ours: Tool, peer: Tool, rounds: number): Promise<PairedRun[]> {
  const runs: PairedRun[] = [];
  for (let round = 1; round <= rounds; round++) {
    for (const tool of round % 2 === 1 ? [ours, peer] : [peer, ours]) {
      log(`round ${round}: ${tool.name} backup and restore of ${workload.spec.name}`);
      const repo = join(workDir, 'repos', `paired-${tool.name}`);
      const into = join(workDir, 'restore', `paired-${tool.name}`);
      await removeRepo(repo);
      await fs.mkdir(dirname(repo), { recursive: true });
      try {
        await tool.init(repo);
        runs.push({ round, tool: tool.name, op: 'backup', ...figures(await tool.backup(repo, workload.base, 'base')) });
        await fs.mkdir(into, { recursive: true });
        runs.push({ round, tool: tool.name, op: 'restore', ...figures((await restoreUntilDurable(tool, repo, 'base', into)).run) });
      } finally {
        await fs.rm(into, { recursive: true, force: true });
        await removeRepo(repo);
      }
    }
  }
  return runs;
}

/** A fresh store per point: chunkvault backup and restore of the same image at each setting. */
async function backupAndRestore(workload: DiskWorkload, workDir: string, init: string[], threads: string[], nodeArgs: string[]): Promise<{ backup: RunFigures; restore: RunFigures; repo: StoreStats }> {
  const repo = join(workDir, 'repos', 'sweep');
  const target = join(workDir, 'restore', 'sweep.img');
  await removeRepo(repo);
  await fs.mkdir(dirname(target), { recursive: true });
  try {
    await runCli(['init', '--store', repo, ...init]);
    const backup = await runCli(['backup', '--store', repo, '--name', 'sweep', `disk=${workload.base}`, ...threads, '--json'], nodeArgs);
    const stats = await storeFigures(repo);
    stats.storedBytes = await dirBytes(repo);
    readWarm(repo);
    const restore = await runCli(['restore', '--store', repo, 'latest', target, ...threads, '--json'], nodeArgs);
    return { backup: figures(backup), restore: figures(restore), repo: stats };
  } finally {
    await fs.rm(target, { force: true });
    await removeRepo(repo);
  }
}

async function scaling(workload: DiskWorkload, workDir: string, nodeArgs: string[]): Promise<ScalingPoint[]> {
  const points: ScalingPoint[] = [];
  for (let threads = 1; threads <= availableParallelism(); threads++) {
    log(`scaling: ${threads} worker thread(s)`);
    const { backup, restore } = await backupAndRestore(workload, workDir, [], ['--threads', String(threads)], nodeArgs);
    points.push({ threads, backup, restore });
  }
  return points;
}

async function chunkSizes(workload: DiskWorkload, workDir: string, nodeArgs: string[]): Promise<ChunkSizePoint[]> {
  const points: ChunkSizePoint[] = [];
  for (const chunkSize of CHUNK_SIZES) {
    log(`chunk size ${chunkSize / 1024}K`);
    const { backup, restore, repo } = await backupAndRestore(workload, workDir, ['--chunk-size', String(chunkSize)], [], nodeArgs);
    points.push({ chunkSize, backup, restore, storedBytes: repo.storedBytes, dedupRatio: repo.dedupRatio, compressionRatio: repo.compressionRatio, dataShare: repo.logicalBytes > 0 ? repo.dataBytes / repo.logicalBytes : 1 });
  }
  return points;
}

async function largeSource(profileName: ProfileName, workDir: string, results: BenchResults): Promise<void> {
  const workload = await buildWorkload(PROFILES[profileName].large, join(workDir, 'workloads'));
  results.workloads.push(summary(workload));
  const repo = join(workDir, 'repos', 'large');
  await removeRepo(repo);
  try {
    await runCli(['init', '--store', repo]);
    log(`peak RSS: backup of ${workload.spec.name}`);
    const run = await runCli(['backup', '--store', repo, `disk=${workload.base}`, '--json']);
    results.large = { size: workload.size, dataBytes: workload.dataBytes, ...figures(run) };
  } finally {
    await removeRepo(repo);
  }
}

/** Calls every exported function of a plug-in module that exists, with the bench context. */
async function runPlugin(module: string, context: BenchContext, results: BenchResults): Promise<void> {
  const here = dirname(fileURLToPath(import.meta.url));
  const path = join(here, `${module}.js`);
  if (!existsSync(path)) {
    results.notes.push(`${module}: bench/${module}.ts is not there yet; its figures are missing from this report.`);
    return;
  }
  const exports = (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  for (const [name, fn] of Object.entries(exports)) {
    if (typeof fn !== 'function') continue;
    log(`${module}: ${name}`);
    try {
      results.extras.push({ module, name, figures: await (fn as (c: BenchContext) => Promise<unknown>)(context) });
    } catch (err) {
      results.notes.push(`${module}.${name} failed: ${(err as Error).message}`);
    }
  }
}

function parse(): { profile: ProfileName; out: string; work: string; steps: Set<Step>; rounds: number; render: string | null; readme: string | null; root: string; nodeArgs: string[] } {
  const { values } = parseArgs({
    options: {
      profile: { type: 'string', default: 'default' },
      out: { type: 'string' },
      work: { type: 'string' },
      only: { type: 'string' },
      'cpu-prof': { type: 'string' },
      rounds: { type: 'string', default: '3' },
      render: { type: 'string' },
      readme: { type: 'boolean' },
    },
  });
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds: '${values.rounds}' is not a positive whole number`);
  const profile = values.profile as ProfileName;
  if (!(profile in PROFILES)) throw new Error(`--profile: '${profile}' is not one of ${Object.keys(PROFILES).join(', ')}`);
  const only = values.only?.split(',').map((s) => s.trim()) ?? [...STEPS];
  const unknown = only.filter((s) => !(STEPS as readonly string[]).includes(s));
  if (unknown.length > 0) throw new Error(`--only: unknown step(s) ${unknown.join(', ')}; steps are ${STEPS.join(', ')}`);
  const root = dirname(dirname(CLI));
  return {
    profile,
    out: resolve(values.out ?? join(root, 'bench', 'results', profile)),
    work: resolve(values.work ?? join(tmpdir(), 'chunkvault-bench')),
    steps: new Set(only as Step[]),
    rounds,
    render: values.render ? resolve(values.render) : null,
    // The README shows the latest full report: a full run of every step into the default place updates it.
    readme: values.readme === true || (profile === 'full' && values.only === undefined && values.out === undefined) ? join(root, 'README.md') : null,
    root,
    nodeArgs: values['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${resolve(values['cpu-prof'])}`] : [],
  };
}

async function main(): Promise<void> {
  const options = parse();
  if (options.render) {
    // Only the report is made again (e.g. after the report code changed), from a results.json.
    const { derived: _derived, ...results } = JSON.parse(await fs.readFile(options.render, 'utf8')) as BenchResults & { derived: unknown };
    return writeReport(results, options);
  }
  const profile = PROFILES[options.profile];
  const started = Date.now();
  const results: BenchResults = {
    schema: 1,
    profile: profile.name,
    started: new Date(started).toISOString(),
    seconds: 0,
    limits: null,
    workloads: [],
    tools: [],
    missing: [],
    ops: [],
    stores: [],
    scaling: null,
    chunkSizes: null,
    large: null,
    paired: null,
    extras: [],
    notes: [],
  };
  const machine = machineInfo();
  const workloadsDir = join(options.work, 'workloads');
  const workloads: DiskWorkload[] = [];
  for (const spec of [profile.vm, profile.synthetic]) {
    log(`workload ${spec.name}`);
    try {
      workloads.push(await buildWorkload(spec, workloadsDir));
    } catch (err) {
      results.notes.push(`workload ${spec.name} could not be built: ${(err as Error).message}`);
    }
  }
  results.workloads = workloads.map(summary);
  const primary = workloads[0];
  if (!primary) throw new Error(`no workload could be built: ${results.notes.join('; ')}`);

  let limits: Limits | null = null;
  if (options.steps.has('limits')) {
    log(`limits: cat of ${primary.base}, BLAKE3 and LZ4 on its data`);
    const read = await measureRead(primary.base, options.work);
    limits = { machine, read, ...(await measureCpu(await sampleData(primary.base, SAMPLE_BYTES))) };
    results.limits = limits;
    if (!read.cacheDropped) results.notes.push('The page cache could not be dropped: cat and every tool read the source warm.');
  }

  const tools: Tool[] = [];
  if (options.steps.has('ops')) tools.push(chunkvaultTool({ nodeArgs: options.nodeArgs }));
  if (options.steps.has('peers')) {
    const peers = findPeers();
    tools.push(...peers.tools);
    results.missing = peers.missing;
  }
  results.tools = tools.map((t) => ({ name: t.name, version: t.version, settings: t.settings }));
  for (const workload of workloads) {
    for (const tool of tools) {
      try {
        const { ops, store } = await runTool(tool, workload, options.work);
        results.ops.push(...ops);
        if (store) results.stores.push(store);
      } catch (err) {
        results.notes.push(`${tool.name} on ${workload.spec.name} failed: ${(err as Error).message}`);
      }
    }
  }

  // A step that fails costs its own figures only: the report says so and keeps the rest.
  const step = async (name: Step, run: () => Promise<void>): Promise<void> => {
    if (!options.steps.has(name)) return;
    try {
      await run();
    } catch (err) {
      results.notes.push(`${name} failed: ${(err as Error).message}`);
    }
  };
  await step('paired', async () => {
    const borg = findPeers(['borg']).tools[0];
    if (!borg) throw new Error('borg is not installed (apt-get install borgbackup)');
    results.paired = { workload: primary.spec.name, peer: borg.name, runs: await pairedRounds(primary, options.work, chunkvaultTool({ nodeArgs: options.nodeArgs }), borg, options.rounds) };
  });
  await step('scaling', async () => {
    results.scaling = { workload: primary.spec.name, logicalBytes: primary.size, points: await scaling(primary, options.work, options.nodeArgs) };
  });
  await step('chunks', async () => {
    results.chunkSizes = { workload: primary.spec.name, logicalBytes: primary.size, points: await chunkSizes(primary, options.work, options.nodeArgs) };
  });
  await step('large', () => largeSource(profile.name, options.work, results));

  const context: BenchContext = { profile, workDir: options.work, workload: primary, workloads, limits, rounds: options.rounds, cli: (args) => runCli(args), log };
  for (const module of PLUGIN_MODULES) if (options.steps.has(module)) await runPlugin(module, context, results);

  results.seconds = (Date.now() - started) / 1000;
  await writeReport(results, options);
}

async function writeReport(results: BenchResults, { out, readme, root }: { out: string; readme: string | null; root: string }): Promise<void> {
  await fs.mkdir(out, { recursive: true });
  const markdown = renderMarkdown(results);
  await fs.writeFile(join(out, 'report.md'), markdown);
  await fs.writeFile(join(out, 'results.json'), renderJson(results));
  await fs.writeFile(join(out, 'summary.md'), readmeSection(results, ''));
  for (const chart of renderCharts(results)) await fs.writeFile(join(out, chart.file), chart.svg);
  process.stdout.write(markdown);
  log(`report written to ${out}`);
  if (readme) {
    await updateReadme(readme, results, relative(root, out));
    log(`performance section of ${readme} rewritten from this report`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${(err as Error).message}\n`);
  process.exitCode = 1;
});
