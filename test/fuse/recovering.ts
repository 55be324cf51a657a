/**
 * Recovery sessions for tests: the real CLI in a child process, a private session registry
 * per test (CHUNKVAULT_SESSIONS), and in teardown the child stopped and its mount detached.
 */
import type { Test } from 'tap';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { cli, tempDir, type CliResult } from '../helpers/index.js';
import { spawnServing } from './mounting.js';

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
  const { child, output, exited } = spawnServing(t, ['recover', ...args], mountpoint, env);
  const events = (): Record<string, unknown>[] =>
    output.stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', () => {
      const serving = /^serving (\S+) \(/m.exec(output.stdout)?.[1] ?? (events().find((e) => e.event === 'serving')?.image as string | undefined);
      if (serving) resolve({ child, image: serving, stdout: () => output.stdout, stderr: () => output.stderr, events, exited });
    });
    exited.then((code) => reject(new Error(`recover exited ${code} before it served: ${output.stderr}`)));
  });
}
