/**
 * A store served through bench/faulty-fs: real backups made in a BACKING directory, then the
 * store path the CLI gets as --store is a FUSE passthrough of it whose faults a test switches
 * on and off with setRules. Paths in rules are inside the store: `^/catalog/<id>\.json$`.
 */
import type { Test } from 'tap';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFaultyFs, type FaultRule, type FaultyFs } from '../../bench/faulty-fs.js';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { initStore, runBackup } from '../../engine/index.js';
import { restoresIdentically, seededBytes, sha256File, treeDigest } from './index.js';

export type { FaultRule } from '../../bench/faulty-fs.js';

export interface Point {
  id: string;
  time: string;
  /** The image it was made from, and its sha256. */
  image: string;
  sha256: string;
}

export interface FaultyStore {
  /** The work directory (images, restores). */
  dir: string;
  /** The store on disk, below the faults: what treeDigest is taken of. */
  backing: string;
  /** The store through faulty-fs: the --store of every command under test. */
  store: string;
  /** The restore points, oldest first, all of name NAME. */
  points: Point[];
  fs: FaultyFs;
  setRules(rules: FaultRule[]): Promise<void>;
}

export const NAME = 'vm';
const IMAGE_BYTES = 1024 * 1024;
const CHUNK = 64 * 1024;

export interface FaultyStoreOptions {
  /** How many backups (each a new version of one 1 MiB image, 64 KiB chunks); 3 by default. */
  backups?: number;
  seed?: number;
}

/** A regular expression matching exactly `path` (inside the store). */
export function exactly(path: string): string {
  return `^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`;
}

/**
 * Makes `count` real backups into a new store, in this process (what the CLI calls, without
 * a Node start each); each changes two chunks of the last image, so every restore point has
 * chunks of its own and shares the rest.
 */
export async function backups(dir: string, store: string, count: number): Promise<Point[]> {
  const opened = await initStore(store, '64K');
  const image = Buffer.from(seededBytes(1, IMAGE_BYTES));
  const points: Point[] = [];
  for (let n = 0; n < count; n++) {
    seededBytes(1000 + n, CHUNK).copy(image, ((2 * n) % 16) * CHUNK);
    seededBytes(2000 + n, 100).copy(image, ((2 * n + 1) % 16) * CHUNK + 7);
    const path = join(dir, `image-${n}.img`);
    await fs.writeFile(path, image);
    const time = new Date(Date.UTC(2026, 0, 1) + n * 3_600_000).toISOString();
    const { id } = await runBackup(opened, { sources: [`disk=${path}`], name: NAME, time, threads: 1 });
    points.push({ id, time, image: path, sha256: await sha256File(path) });
  }
  return points;
}

export async function faultyStore(t: Test, options: FaultyStoreOptions = {}): Promise<FaultyStore> {
  const dir = await fs.mkdtemp(join(tmpdir(), 'cv-faulty-'));
  const backing = join(dir, 'backing');
  const store = join(dir, 'store');
  let server: FaultyFs | null = null;
  // One teardown, in order: the mount goes before the directory under it is removed.
  t.teardown(async () => {
    await server?.stop();
    await fs.rm(dir, { recursive: true, force: true });
  });
  const points = await backups(dir, backing, options.backups ?? 3);
  await fs.mkdir(store);
  server = await startFaultyFs(backing, store, join(dir, 'rules.json'), options.seed ?? 1);
  const served = server;
  return { dir, backing, store, points, fs: served, setRules: (rules) => served.setRules(rules) };
}

interface Level {
  open(): Promise<void>;
  close(): Promise<void>;
  iterator(): AsyncIterable<[Buffer, Buffer]>;
}
const { ClassicLevel } = createRequire(import.meta.url)('classic-level') as { ClassicLevel: new (dir: string, options: object) => Level };

/**
 * Everything a store holds, as one digest: treeDigest's, but with the index as its entries, not
 * its files, which LevelDB rewrites on every open, even by a command that then stops without a
 * write; lock files are left out, as treeDigest leaves them out.
 */
export async function storeState(store: string): Promise<string> {
  const hash = createHash('sha256');
  for (const entry of (await fs.readdir(store, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    if (entry.name === 'index' || entry.name === 'locks') continue;
    const path = join(store, entry.name);
    hash.update(`${entry.name}\0${entry.isDirectory() ? await treeDigest(path) : await sha256File(path)}\n`);
  }
  const db = new ClassicLevel(join(store, 'index'), { keyEncoding: 'buffer', valueEncoding: 'buffer' });
  await db.open();
  try {
    for await (const [key, value] of db.iterator()) hash.update(`${key.toString('hex')}=${value.toString('hex')}\n`);
  } finally {
    await db.close();
  }
  return hash.digest('hex');
}

/** With faults off, every restore point restores byte-identical to its image (through the mount). */
export async function allRestoreIdentically(t: Test, s: FaultyStore, points = s.points): Promise<void> {
  await s.setRules([]);
  for (const point of points) {
    const out = join(s.dir, `restored-${point.id}.img`);
    await restoresIdentically(t, s.store, point.id, point.image, out);
    await fs.rm(out);
  }
}
