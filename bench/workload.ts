/**
 * Reproducible benchmark workloads, generated here, never downloaded:
 * - a VM-like disk: a sparse raw image holding a real ext4 filesystem built with
 *   `mkfs.ext4 -d` from system files on this machine, then "a day of changes" made through a
 *   loop mount (deletions, new files, in-place rewrites), with the exact changed blocks
 *   recorded as a CBT list by comparing the two images block by block;
 * - synthetic disks from a seed with chosen size, allocated share, duplicate share,
 *   compressibility and change rate, whose CBT list is what the generator wrote.
 * Generated files are cached in the work directory under a manifest of their spec.
 * Synthetic disks are byte-identical across runs; two builds of the VM-like disk hold the
 * same files at the same places and differ only in inode change times (mkfs.ext4 -d copies
 * them from the staged copies).
 */
import { execFileSync } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { constants as fsConstants, promises as fs } from 'node:fs';
import { join, dirname } from 'node:path';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
/** ext4 block size of the VM-like disk, and the granularity of its CBT list. */
export const BLOCK = 4 * KiB;
/** Synthetic disks are made of units: each is a hole, unique data, or a copy of an earlier unit. */
export const UNIT = MiB;

export interface Range {
  offset: number;
  length: number;
}

export interface SyntheticSpec {
  kind: 'synthetic';
  name: string;
  size: number;
  seed: number;
  /** Share of units holding data; the rest are holes. */
  allocatedShare: number;
  /** Share of data units that repeat an earlier unit byte for byte. */
  duplicateShare: number;
  /** Share of every 4 KiB page that is text LZ4 compresses well; the rest is random. */
  compressibility: number;
  /** Share of data units partly rewritten in the changed image; 0: no changed image. */
  changeRate: number;
}

export interface Ext4Spec {
  kind: 'ext4';
  name: string;
  size: number;
  seed: number;
  /** Share of the image filled with file data from `roots`. */
  fillShare: number;
  roots: string[];
  /** The day of changes, as shares of the base files (by count) and of the image size (new files). */
  deleteShare: number;
  rewriteShare: number;
  newShare: number;
}

export type WorkloadSpec = SyntheticSpec | Ext4Spec;

export interface DiskWorkload {
  spec: WorkloadSpec;
  /** The disk image a full backup reads. */
  base: string;
  /** The same disk after changes, and its CBT file {"changed":[{offset,length}]}; null without changes. */
  changed: string | null;
  cbt: string | null;
  size: number;
  /** Bytes the generator put in the image (file data for ext4, data units for synthetic). */
  dataBytes: number;
  /** Bytes the image occupies on disk (st_blocks), which is what a sparse-aware reader reads. */
  allocatedBytes: number;
  changedBytes: number;
  changedRanges: number;
  details: Record<string, number>;
}

export type ProfileName = 'quick' | 'default' | 'full';

export interface Profile {
  name: ProfileName;
  vm: Ext4Spec;
  synthetic: SyntheticSpec;
  /** A large mostly sparse source for the peak RSS goal (< 300 MB for 8 GiB). */
  large: SyntheticSpec;
}

const SYSTEM_ROOTS = ['/usr/bin', '/usr/share', '/usr/lib'];

function vm(name: string, size: number): Ext4Spec {
  return { kind: 'ext4', name, size, seed: 1, fillShare: 0.5, roots: SYSTEM_ROOTS, deleteShare: 0.03, rewriteShare: 0.02, newShare: 0.02 };
}

function synthetic(name: string, size: number, changeRate: number, allocatedShare = 0.6): SyntheticSpec {
  return { kind: 'synthetic', name, size, seed: 7, allocatedShare, duplicateShare: 0.15, compressibility: 0.5, changeRate };
}

export const PROFILES: Record<ProfileName, Profile> = {
  quick: { name: 'quick', vm: vm('vm-quick', 48 * MiB), synthetic: synthetic('synthetic-quick', 32 * MiB, 0.1), large: synthetic('large-quick', 256 * MiB, 0, 0.25) },
  default: { name: 'default', vm: vm('vm-3g', 3 * GiB), synthetic: synthetic('synthetic-1g', GiB, 0.05), large: synthetic('large-8g', 8 * GiB, 0, 0.375) },
  full: { name: 'full', vm: vm('vm-8g', 8 * GiB), synthetic: synthetic('synthetic-4g', 4 * GiB, 0.05), large: synthetic('large-8g', 8 * GiB, 0, 0.5) },
};

/** Seeded PRNG (mulberry32): the same seed draws the same decisions on every machine. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Seeded random bytes (AES-CTR keystream), fast enough for GiB of workload. */
export function seededBytes(seed: string, length: number): Buffer {
  const key = createHash('sha256').update(`chunkvault-bench-${seed}`).digest().subarray(0, 16);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(length));
}

const TEXT = Buffer.from(
  Array.from({ length: 20000 }, (_, i) => `${String(i).padStart(6, '0')} INFO disk-worker[${i % 7}] flushed extent ${(i * 4099) % 100003} in ${i % 97} ms\n`).join(''),
).subarray(0, UNIT);

/** One unit of data: each 4 KiB page starts with text and ends with random bytes. */
export function unitData(spec: SyntheticSpec, content: string, length = UNIT): Buffer {
  const data = seededBytes(`${spec.seed}:${content}`, length);
  const textBytes = Math.round(spec.compressibility * BLOCK);
  for (let page = 0; page < length; page += BLOCK) TEXT.copy(data, page, page % TEXT.byteLength, (page % TEXT.byteLength) + Math.min(textBytes, length - page));
  return data;
}

export function mergeRanges(ranges: Range[]): Range[] {
  const sorted = [...ranges].sort((a, b) => a.offset - b.offset);
  const merged: Range[] = [];
  for (const r of sorted) {
    const last = merged[merged.length - 1];
    if (last && r.offset <= last.offset + last.length) last.length = Math.max(last.length, r.offset + r.length - last.offset);
    else merged.push({ ...r });
  }
  return merged;
}

async function allocatedBytes(path: string): Promise<number> {
  return (await fs.stat(path)).blocks * 512;
}

async function writeCbt(path: string, changed: Range[]): Promise<void> {
  await fs.writeFile(path, JSON.stringify({ changed }) + '\n');
}

function copySparse(from: string, to: string): void {
  execFileSync('cp', ['--sparse=always', from, to]);
}

/** Which unit holds what: null for a hole, otherwise the name of the content it is generated from. */
export function syntheticLayout(spec: SyntheticSpec): (string | null)[] {
  const draw = random(spec.seed);
  const units = Math.ceil(spec.size / UNIT);
  const layout: (string | null)[] = [];
  const unique: string[] = [];
  for (let i = 0; i < units; i++) {
    const allocated = draw() < spec.allocatedShare;
    const duplicate = draw() < spec.duplicateShare;
    const pick = draw();
    // The last unit may be short: its content is its own, never a (longer) copy.
    if (!allocated) layout.push(null);
    else if (duplicate && unique.length > 0 && (i + 1) * UNIT <= spec.size) layout.push(unique[Math.floor(pick * unique.length)]);
    else {
      layout.push(`u${i}`);
      if ((i + 1) * UNIT <= spec.size) unique.push(`u${i}`);
    }
  }
  return layout;
}

/** Rewrites: within a chosen data unit, a 64 KiB-aligned run of 64 KiB..UNIT bytes. */
export function syntheticChanges(spec: SyntheticSpec, layout: (string | null)[]): Range[] {
  const draw = random(spec.seed + 1);
  const step = 64 * KiB;
  const ranges: Range[] = [];
  layout.forEach((content, i) => {
    const hit = draw();
    const start = Math.floor(draw() * (UNIT / step)) * step;
    const length = step * (1 + Math.floor(draw() * ((UNIT - start) / step)));
    if (content === null || hit >= spec.changeRate) return;
    const offset = i * UNIT + start;
    const end = Math.min(offset + length, spec.size);
    if (end > offset) ranges.push({ offset, length: end - offset });
  });
  return ranges;
}

async function buildSynthetic(spec: SyntheticSpec, dir: string): Promise<DiskWorkload> {
  const layout = syntheticLayout(spec);
  const base = join(dir, `${spec.name}.img`);
  const handle = await fs.open(base, 'w');
  let dataBytes = 0;
  try {
    await handle.truncate(spec.size);
    for (let i = 0; i < layout.length; i++) {
      const content = layout[i];
      if (content === null) continue;
      const data = unitData(spec, content, Math.min(UNIT, spec.size - i * UNIT));
      await handle.write(data, 0, data.byteLength, i * UNIT);
      dataBytes += data.byteLength;
    }
  } finally {
    await handle.close();
  }
  const units = layout.filter((c) => c !== null);
  const details = { units: layout.length, dataUnits: units.length, duplicateUnits: units.length - new Set(units).size };
  if (spec.changeRate === 0) {
    return { spec, base, changed: null, cbt: null, size: spec.size, dataBytes, allocatedBytes: await allocatedBytes(base), changedBytes: 0, changedRanges: 0, details };
  }
  const changed = join(dir, `${spec.name}-changed.img`);
  copySparse(base, changed);
  const ranges = syntheticChanges(spec, layout);
  const out = await fs.open(changed, 'r+');
  try {
    for (const r of ranges) await out.write(seededBytes(`${spec.seed}:change:${r.offset}`, r.length), 0, r.length, r.offset);
  } finally {
    await out.close();
  }
  const cbt = join(dir, `${spec.name}-changed.cbt.json`);
  const merged = mergeRanges(ranges);
  await writeCbt(cbt, merged);
  return {
    spec,
    base,
    changed,
    cbt,
    size: spec.size,
    dataBytes,
    allocatedBytes: await allocatedBytes(base),
    changedBytes: merged.reduce((s, r) => s + r.length, 0),
    changedRanges: merged.length,
    details,
  };
}

interface SystemFile {
  path: string;
  rel: string;
  size: number;
}

/** System files in a stable order (sorted walk), until `bytes` are collected. */
async function collectFiles(roots: string[], bytes: number): Promise<SystemFile[]> {
  const files: SystemFile[] = [];
  let total = 0;
  const walk = async (root: string, rel: string): Promise<void> => {
    const entries = await fs.readdir(join(root, rel), { withFileTypes: true }).catch(() => []);
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      if (total >= bytes) return;
      const sub = join(rel, entry.name);
      if (entry.isDirectory()) await walk(root, sub);
      else if (entry.isFile()) {
        const stats = await fs.stat(join(root, sub)).catch(() => null);
        if (!stats || stats.size === 0 || stats.size > 256 * MiB) continue;
        files.push({ path: join(root, sub), rel: join(root.replace(/^\//, '').replace(/\//g, '_'), sub), size: stats.size });
        total += stats.size;
      }
    }
  };
  for (const root of roots) await walk(root, '');
  return files;
}

/** Copies (clones where the filesystem can): hard links would touch the system files' ctime. */
async function stage(files: SystemFile[], into: string): Promise<void> {
  for (const file of files) {
    const to = join(into, file.rel);
    await fs.mkdir(dirname(to), { recursive: true });
    await fs.copyFile(file.path, to, fsConstants.COPYFILE_FICLONE);
  }
}

const FS_UUID = '6b1f3c2e-1d7a-4c55-9d10-0c0ffee0b0a7';

function mkfsExt4(image: string, size: number, fromDir: string): void {
  execFileSync(
    'mkfs.ext4',
    ['-q', '-F', '-b', String(BLOCK), '-U', FS_UUID, '-E', `lazy_itable_init=0,lazy_journal_init=0,hash_seed=${FS_UUID}`, '-d', fromDir, image, `${size / KiB}K`],
    // A fixed clock makes the metadata of two builds of the same files equal.
    { stdio: 'pipe', env: { ...process.env, E2FSPROGS_FAKE_TIME: '1700000000' } },
  );
}

async function withLoopMount<T>(image: string, mountpoint: string, use: () => Promise<T>): Promise<T> {
  await fs.mkdir(mountpoint, { recursive: true });
  try {
    execFileSync('mount', ['-o', 'loop', image, mountpoint], { stdio: 'pipe' });
  } catch (err) {
    throw new Error(`the day of changes needs a loop mount (root and loop devices): mount -o loop ${image} failed: ${(err as { stderr?: Buffer }).stderr?.toString().trim() ?? err}`);
  }
  try {
    return await use();
  } finally {
    execFileSync('umount', [mountpoint], { stdio: 'pipe' });
    await fs.rmdir(mountpoint);
  }
}

/** A day on a VM: some files deleted, some new, some rewritten in place at random 4 KiB blocks. */
async function dayOfChanges(spec: Ext4Spec, files: SystemFile[], newFiles: SystemFile[], root: string): Promise<Record<string, number>> {
  const draw = random(spec.seed);
  let deleted = 0;
  let rewrittenFiles = 0;
  let rewrittenBlocks = 0;
  for (const file of files) {
    const roll = draw();
    const path = join(root, file.rel);
    if (roll < spec.deleteShare) {
      await fs.rm(path);
      deleted++;
    } else if (roll < spec.deleteShare + spec.rewriteShare && file.size >= BLOCK) {
      const blocks = Math.max(1, Math.floor((file.size / BLOCK) * 0.1));
      const handle = await fs.open(path, 'r+');
      try {
        for (let b = 0; b < blocks; b++) {
          const at = Math.floor(draw() * Math.floor(file.size / BLOCK)) * BLOCK;
          await handle.write(seededBytes(`${spec.seed}:rewrite:${file.rel}:${b}`, BLOCK), 0, BLOCK, at);
        }
      } finally {
        await handle.close();
      }
      rewrittenFiles++;
      rewrittenBlocks += blocks;
    }
  }
  for (const file of newFiles) {
    const to = join(root, 'new', file.rel);
    await fs.mkdir(dirname(to), { recursive: true });
    await fs.copyFile(file.path, to);
  }
  execFileSync('sync');
  return { deletedFiles: deleted, rewrittenFiles, rewrittenBlocks, newFiles: newFiles.length, newBytes: newFiles.reduce((s, f) => s + f.size, 0) };
}

/** The exact changed-block list: every BLOCK of `b` that differs from `a`, merged into ranges. */
export async function diffBlocks(a: string, b: string, block = BLOCK): Promise<Range[]> {
  const [ha, hb] = [await fs.open(a, 'r'), await fs.open(b, 'r')];
  const ranges: Range[] = [];
  try {
    const size = (await hb.stat()).size;
    const step = 8 * MiB;
    const [ba, bb] = [Buffer.alloc(step), Buffer.alloc(step)];
    for (let at = 0; at < size; at += step) {
      const length = Math.min(step, size - at);
      ba.fill(0);
      await ha.read(ba, 0, length, at);
      await hb.read(bb, 0, length, at);
      if (ba.subarray(0, length).equals(bb.subarray(0, length))) continue;
      for (let off = 0; off < length; off += block) {
        const end = Math.min(off + block, length);
        if (!ba.subarray(off, end).equals(bb.subarray(off, end))) ranges.push({ offset: at + off, length: end - off });
      }
    }
  } finally {
    await ha.close();
    await hb.close();
  }
  return mergeRanges(ranges);
}

async function buildExt4(spec: Ext4Spec, dir: string): Promise<DiskWorkload> {
  const fill = Math.floor(spec.size * spec.fillShare);
  const all = await collectFiles(spec.roots, fill + Math.floor(spec.size * spec.newShare));
  let sum = 0;
  const cut = all.findIndex((f) => (sum += f.size) > fill);
  const files = cut < 0 ? all : all.slice(0, cut);
  let room = Math.floor(spec.size * spec.newShare);
  const newFiles = (cut < 0 ? [] : all.slice(cut)).filter((f) => f.size <= room && (room -= f.size) >= 0);
  const staging = join(dir, `${spec.name}.staging`);
  const base = join(dir, `${spec.name}.img`);
  await fs.rm(staging, { recursive: true, force: true });
  try {
    await stage(files, staging);
    mkfsExt4(base, spec.size, staging);
  } finally {
    await fs.rm(staging, { recursive: true, force: true });
  }
  const changed = join(dir, `${spec.name}-changed.img`);
  copySparse(base, changed);
  const day = await withLoopMount(changed, join(dir, `${spec.name}.mnt`), () => dayOfChanges(spec, files, newFiles, join(dir, `${spec.name}.mnt`)));
  const ranges = await diffBlocks(base, changed);
  const cbt = join(dir, `${spec.name}-changed.cbt.json`);
  await writeCbt(cbt, ranges);
  return {
    spec,
    base,
    changed,
    cbt,
    size: spec.size,
    dataBytes: files.reduce((s, f) => s + f.size, 0),
    allocatedBytes: await allocatedBytes(base),
    changedBytes: ranges.reduce((s, r) => s + r.length, 0),
    changedRanges: ranges.length,
    details: { files: files.length, ...day },
  };
}

async function cached(spec: WorkloadSpec, dir: string): Promise<DiskWorkload | null> {
  try {
    const workload = JSON.parse(await fs.readFile(join(dir, `${spec.name}.json`), 'utf8')) as DiskWorkload;
    if (JSON.stringify(workload.spec) !== JSON.stringify(spec)) return null;
    for (const path of [workload.base, workload.changed, workload.cbt]) if (path) await fs.access(path);
    return workload;
  } catch {
    return null;
  }
}

/** Builds a workload into `dir`, or reuses the one built there from the same spec. */
export async function buildWorkload(spec: WorkloadSpec, dir: string): Promise<DiskWorkload> {
  await fs.mkdir(dir, { recursive: true });
  const reuse = await cached(spec, dir);
  if (reuse) return reuse;
  const workload = spec.kind === 'ext4' ? await buildExt4(spec, dir) : await buildSynthetic(spec, dir);
  await fs.writeFile(join(dir, `${spec.name}.json`), JSON.stringify(workload, null, 2) + '\n');
  return workload;
}

/** The non-zero BLOCKs of an image, up to `limit` bytes from its start: what hashing and LZ4 see. */
export async function sampleData(path: string, limit: number): Promise<Buffer> {
  const handle = await fs.open(path, 'r');
  const parts: Buffer[] = [];
  let total = 0;
  try {
    const buffer = Buffer.alloc(8 * MiB);
    const zero = Buffer.alloc(BLOCK);
    for (let at = 0; total < limit; at += buffer.byteLength) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.byteLength, at);
      if (bytesRead === 0) break;
      for (let off = 0; off + BLOCK <= bytesRead && total < limit; off += BLOCK) {
        const block = buffer.subarray(off, off + BLOCK);
        if (block.equals(zero)) continue;
        parts.push(Buffer.from(block));
        total += BLOCK;
      }
    }
  } finally {
    await handle.close();
  }
  return Buffer.concat(parts);
}
