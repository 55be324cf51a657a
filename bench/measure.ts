/**
 * Wall time, CPU seconds and peak RSS of a child process or of a function in this process.
 * Children run under /usr/bin/time -v when it is installed (exact rusage of the whole
 * process tree); otherwise CPU comes from this process's reaped-children counters and peak
 * RSS from polling /proc/<pid>/status, which can miss a short spike between two polls.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, promises as fs, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

export interface Measurement {
  wallSeconds: number;
  cpuSeconds: number;
  peakRssBytes: number;
  /** How peak RSS was measured: exact rusage, polled /proc, or this process's lifetime maximum. */
  rssSource: 'time -v' | 'proc poll' | 'process max';
  /** Cores the whole machine kept busy meanwhile (/proc/stat): above this run's own, others' load. */
  machineBusyCores: number;
}

export interface CommandRun extends Measurement {
  command: string;
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface CommandOptions {
  cwd?: string;
  env?: Record<string, string>;
  /** Throw when the command exits non-zero (default true): a failed run has no figures. */
  check?: boolean;
  /** Measure through /usr/bin/time -v (default: when it is installed), or by polling /proc. */
  gnuTime?: boolean;
  /** `sync` before starting (default true); false for a command that finishes what the one before began. */
  settle?: boolean;
}

const TIME = '/usr/bin/time';
const POLL_MS = 20;

export function hasGnuTime(): boolean {
  return existsSync(TIME);
}

/** Parses the fields of GNU time -v output that a benchmark needs. */
export function parseTimeVerbose(text: string): { cpuSeconds: number; peakRssBytes: number } | null {
  const field = (name: string): number | null => {
    const m = new RegExp(`^\\s*${name}:\\s*([\\d.]+)\\s*$`, 'm').exec(text);
    return m ? Number(m[1]) : null;
  };
  const user = field('User time \\(seconds\\)');
  const system = field('System time \\(seconds\\)');
  const rssKiB = field('Maximum resident set size \\(kbytes\\)');
  if (user === null || system === null || rssKiB === null) return null;
  return { cpuSeconds: user + system, peakRssBytes: rssKiB * 1024 };
}

/** user + system seconds of every child this process has waited for (fields 16, 17 of /proc/self/stat). */
function reapedChildrenCpu(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state): cutime and cstime are fields 16 and 17.
  return (Number(fields[13]) + Number(fields[14])) / 100;
}

/** Busy and total jiffies of all cores (/proc/stat), and how many cores there are. */
function cpuTimes(): { busy: number; total: number; cores: number } {
  const lines = readFileSync('/proc/stat', 'utf8').split('\n');
  const all = lines[0].split(/\s+/).slice(1).map(Number);
  const total = all.slice(0, 8).reduce((s, v) => s + v, 0);
  // Fields 4 and 5 are idle and iowait: neither keeps a core busy.
  return { busy: total - all[3] - all[4], total, cores: lines.filter((l) => /^cpu\d/.test(l)).length };
}

function machineBusyCores(before: ReturnType<typeof cpuTimes>): number {
  const after = cpuTimes();
  const total = after.total - before.total;
  return total > 0 ? ((after.busy - before.busy) / total) * after.cores : 0;
}

function vmHwm(pid: number): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** CPU seconds so far (user + system, fields 14 and 15 of /proc/<pid>/stat) and peak RSS of a running process. */
export function processUsage(pid: number): { cpuSeconds: number; peakRssBytes: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { cpuSeconds: (Number(fields[11]) + Number(fields[12])) / 100, peakRssBytes: vmHwm(pid) };
}

/**
 * Every timed command starts with no dirty pages left by the step before it (`sync`): the
 * kernel writing back an earlier run's gigabytes would otherwise be billed to whichever
 * tool runs next, and a restore point is taken long after the one before it.
 */
export async function measureCommand(command: string, args: string[], options: CommandOptions = {}): Promise<CommandRun> {
  if (options.settle !== false) spawnSync('sync');
  const timeFile = options.gnuTime ?? hasGnuTime() ? join(await fs.mkdtemp(join(tmpdir(), 'cv-time-')), 'time.txt') : null;
  const [file, argv] = timeFile ? [TIME, ['-v', '-o', timeFile, command, ...args]] : [command, args];
  const cpuBefore = reapedChildrenCpu();
  const machineBefore = cpuTimes();
  const started = performance.now();
  const child = spawn(file, argv, { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  let polledRss = 0;
  const poll = timeFile ? null : setInterval(() => (polledRss = Math.max(polledRss, vmHwm(child.pid!))), POLL_MS);
  const exitCode = await new Promise<number>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve(code ?? -1));
  });
  const wallSeconds = (performance.now() - started) / 1000;
  if (poll) clearInterval(poll);
  let usage: { cpuSeconds: number; peakRssBytes: number; rssSource: Measurement['rssSource'] } = {
    cpuSeconds: reapedChildrenCpu() - cpuBefore,
    peakRssBytes: polledRss,
    rssSource: 'proc poll',
  };
  if (timeFile) {
    const parsed = parseTimeVerbose(await fs.readFile(timeFile, 'utf8').catch(() => ''));
    await fs.rm(join(timeFile, '..'), { recursive: true, force: true });
    if (parsed) usage = { ...parsed, rssSource: 'time -v' };
  }
  const run: CommandRun = { command: [command, ...args].join(' '), exitCode, stdout, stderr, wallSeconds, machineBusyCores: machineBusyCores(machineBefore), ...usage };
  if (exitCode !== 0 && options.check !== false) {
    // The first lines say what went wrong (a message, or the error above a stack trace).
    throw new Error(`${run.command} exited ${exitCode}: ${stderr.trim().split('\n').slice(0, 3).join(' | ')}`);
  }
  return run;
}

/**
 * Reads a file, or every file under a directory, into the page cache: only their data, for
 * `cp` skips the holes of a sparse file (SEEK_DATA). Timed steps read their inputs warm,
 * whichever tool wrote them and however: chunkvault writes packs around the page cache
 * (O_DIRECT), the peers through it, so a restore right after a backup would otherwise read
 * chunkvault's store from disk and the peers' from memory.
 */
export function readWarm(path: string): void {
  spawnSync('sh', ['-c', 'find "$1" -type f -exec sh -c \'for f do cp --sparse=always "$f" /dev/null; done\' sh {} +', 'sh', path]);
}

/** Times a function in this process; CPU includes worker threads; peak RSS is the process's lifetime maximum. */
export async function measureFunction<T>(fn: () => Promise<T> | T): Promise<Measurement & { value: T }> {
  const cpuBefore = process.cpuUsage();
  const machineBefore = cpuTimes();
  const started = performance.now();
  const value = await fn();
  const wallSeconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  return {
    value,
    wallSeconds,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    rssSource: 'process max',
    machineBusyCores: machineBusyCores(machineBefore),
  };
}
