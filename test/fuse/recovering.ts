/**
 * Recovery sessions for tests: the real CLI in a child process, a private session registry
 * per test (CHUNKVAULT_SESSIONS), and in teardown the child stopped and its mount detached.
 */
import type { Test } from 'tap';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { CLI, cli, tempDir, type CliResult } from '../helpers/index.js';
import { isMountpoint } from './mounting.js';

export interface RunningSession {
  child: ChildProcess;
  image: string;
  stdout(): string;
  stderr(): string;
  /** The JSON lines printed so far (with --json). */
  events(): Record<string, unknown>[];
  exited: Promise<number | null>;
}

export interface SessionEnv {
  /** The environment every command of the test runs with: its own session registry. */
  env: Record<string, string>;
  run(args: string[]): Promise<CliResult>;
  /** Starts `chunkvault recover ARGS` and resolves once it serves DIR/<label>.img. */
  start(args: string[], mountpoint: string): Promise<RunningSession>;
}

export async function sessionEnv(t: Test): Promise<SessionEnv> {
  const env = { CHUNKVAULT_SESSIONS: join(await tempDir(t, 'cv-sessions-'), 'registry') };
  return { env, run: (args) => cli(args, env), start: (args, mountpoint) => startRecover(t, args, mountpoint, env) };
}

function startRecover(t: Test, args: string[], mountpoint: string, env: Record<string, string>): Promise<RunningSession> {
  const child = spawn(process.execPath, [CLI, 'recover', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let stdout = '';
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    }
    if (isMountpoint(mountpoint)) execFileSync('fusermount', ['-uz', mountpoint], { stdio: 'ignore' });
  });
  child.stderr!.on('data', (d) => (stderr += d));
  const events = (): Record<string, unknown>[] =>
    stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      stdout += d;
      const serving = /^serving (\S+) \(/m.exec(stdout)?.[1] ?? (events().find((e) => e.event === 'serving')?.image as string | undefined);
      if (serving) resolve({ child, image: serving, stdout: () => stdout, stderr: () => stderr, events, exited });
    });
    exited.then((code) => reject(new Error(`recover exited ${code} before it served: ${stderr}`)));
  });
}
