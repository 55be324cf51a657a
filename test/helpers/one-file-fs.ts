/** Disks that misbehave, served by test/fixtures/one-file-fs.mjs from its own process: slow reads, or reads that fail with EIO. */
import { spawn } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import { ROOT, hasCommand, isRoot } from './index.js';

const ONE_FILE_FS = join(ROOT, 'test', 'fixtures', 'one-file-fs.mjs');

export function canServeFuse(): boolean {
  return isRoot() && existsSync('/dev/fuse') && hasCommand('fusermount');
}

/** Mounts the fixture on `mountpoint` (created) with its arguments and returns the path of its file; unmounted at teardown. */
async function serve(t: Test, mountpoint: string, args: string[], name: string): Promise<string> {
  await fs.mkdir(mountpoint, { recursive: true });
  const child = spawn(process.execPath, [ONE_FILE_FS, mountpoint, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  );
  await new Promise<void>((resolve, reject) => {
    child.stdout.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`one-file-fs ${args[0]} exited ${code}: ${stderr}`)));
  });
  return join(mountpoint, name);
}

/** A `size`-byte file whose every read fails with EIO. */
export function eioFile(t: Test, mountpoint: string, size: number): Promise<string> {
  return serve(t, mountpoint, ['eio', String(size)], 'eio.bin');
}

/** `file` with `delayMs` added to every read. */
export function slowFile(t: Test, file: string, mountpoint: string, delayMs: number): Promise<string> {
  return serve(t, mountpoint, ['slow', file, String(delayMs)], 'slow.img');
}
