/**
 * Mounts for tests: always the real CLI in a child process (the process serving FUSE must
 * never be the one blocking on the mount), always unmounted in teardown, even on failure.
 */
import type { Test } from 'tap';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { Store } from '../../engine/index.js';
import { CLI, hasCommand, isRoot, requireCapability } from '../helpers/index.js';

export interface RunningMount {
  child: ChildProcess;
  /** Everything the mount printed on stderr so far. */
  stderr(): string;
  /** Exit code once the process ended. */
  exited: Promise<number | null>;
}

/** FUSE tests need /dev/fuse, fusermount and root (mount -o ro of what is inside, losetup). */
export function canMount(t: Test): boolean {
  return requireCapability(t, existsSync('/dev/fuse') && hasCommand('fusermount') && isRoot(), 'needs root, /dev/fuse and fusermount (fuse, libfuse2)');
}

export function isMountpoint(path: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((line) => line.split(' ')[4] === path);
}

function forceUnmount(path: string): void {
  if (isMountpoint(path)) execFileSync('fusermount', ['-uz', path], { stdio: 'ignore' });
}

/** A CLI child process serving a FUSE mount, what it printed so far, and its exit code once it ended. */
export interface Serving {
  child: ChildProcess;
  output: { stdout: string; stderr: string };
  exited: Promise<number | null>;
}

/** Starts `chunkvault ARGS` serving `mountpoint`; in teardown it is stopped (TERM, then KILL) and its mount detached. */
export function spawnServing(t: Test, args: string[], mountpoint: string, env: Record<string, string> = {}): Serving {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  const output = { stdout: '', stderr: '' };
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    forceUnmount(mountpoint);
  });
  child.stdout!.on('data', (d) => (output.stdout += d));
  child.stderr!.on('data', (d) => (output.stderr += d));
  return { child, output, exited };
}

/** Starts `chunkvault mount` and resolves once it printed `mounted at MOUNTPOINT`. */
export function startMount(t: Test, store: string, mountpoint: string, extra: string[] = []): Promise<RunningMount> {
  const { child, output, exited } = spawnServing(t, ['mount', '--store', store, mountpoint, ...extra], mountpoint);
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', () => {
      if (output.stdout.includes(`mounted at ${mountpoint}\n`)) resolve({ child, stderr: () => output.stderr, exited });
    });
    exited.then((code) => reject(new Error(`mount exited ${code} before it was ready: ${output.stderr}`)));
  });
}

/** Waits until `check` holds, polling; fails after timeoutMs. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The errno code an action failed with; undefined when it succeeded. */
export async function errorCode(action: Promise<unknown>): Promise<string | undefined> {
  try {
    await action;
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code;
  }
}

/** How many mounts are registered in the store's locks. */
export async function mountLocks(store: string): Promise<number> {
  return (await (await Store.open(store)).locks()).filter((l) => l.command === 'mount').length;
}
