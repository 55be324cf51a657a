/** A file whose every read fails with EIO, served by test/fixtures/eio-fs.mjs from its own process. */
import { spawn } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { Test } from 'tap';
import { ROOT, hasCommand, isRoot } from './index.js';

const EIO_FS = join(ROOT, 'test', 'fixtures', 'eio-fs.mjs');

export function canServeEio(): boolean {
  return isRoot() && existsSync('/dev/fuse') && hasCommand('fusermount');
}

/** Mounts the fixture on `mountpoint` (created) and returns the path of its `size`-byte file; unmounted at teardown. */
export async function eioFile(t: Test, mountpoint: string, size: number): Promise<string> {
  await fs.mkdir(mountpoint, { recursive: true });
  const child = spawn(process.execPath, [EIO_FS, mountpoint, String(size)], { stdio: ['ignore', 'pipe', 'pipe'] });
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
    child.once('exit', (code) => reject(new Error(`eio-fs exited ${code}: ${stderr}`)));
  });
  return join(mountpoint, 'eio.bin');
}
