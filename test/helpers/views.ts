/** View files without FUSE, and what qemu-img says of view files. */
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { promisify } from 'node:util';
import type { ViewLayout } from '../../engine/views/index.js';
import { hasCommand } from './index.js';

const run = promisify(execFile);

/** Disk bytes [at, at + length), for disks too big for a buffer. */
export type DiskBytes = (at: number, length: number) => Buffer;

/** A view layout as a file's bytes, with the disk bytes taken from a buffer: what the mount serves, without FUSE. */
export function materialize(layout: ViewLayout, disk: Buffer | DiskBytes): Buffer {
  const bytesOf: DiskBytes = typeof disk === 'function' ? disk : (from, length) => disk.subarray(from, from + length);
  const out = Buffer.alloc(layout.size);
  let at = 0;
  for (const piece of layout.pieces(0, layout.size)) {
    if (piece.kind === 'disk') bytesOf(piece.at, piece.length).copy(out, at);
    else if (piece.kind === 'bytes') piece.data.copy(out, at);
    at += piece.kind === 'bytes' ? piece.data.byteLength : piece.length;
  }
  if (at !== layout.size) throw new Error(`pieces cover ${at} of ${layout.size} bytes`);
  return out;
}

export async function writeView(path: string, layout: ViewLayout, disk: Buffer | DiskBytes): Promise<void> {
  await fs.writeFile(path, materialize(layout, disk));
}

export interface QemuMapEntry {
  start: number;
  length: number;
  depth: number;
  present?: boolean;
  zero: boolean;
  data: boolean;
  offset?: number;
}

export type Range = [number, number];

export function hasQemuImg(): boolean {
  return hasCommand('qemu-img');
}

export async function qemuImg(args: string[]): Promise<string> {
  const { stdout } = await run('qemu-img', args, { maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

/** One qemu-io command on a qcow2 file opened read-only: its output. */
export async function qemuIo(file: string, command: string): Promise<string> {
  const { stdout } = await run('qemu-io', ['-r', '-f', 'qcow2', '-c', command, file]);
  return stdout;
}

/** `qemu-img info` of a file read as `format`: its virtual size. */
export async function virtualSize(file: string, format: string): Promise<number> {
  return (JSON.parse(await qemuImg(['info', '--output=json', '-f', format, file])) as { 'virtual-size': number })['virtual-size'];
}

export async function qemuMap(file: string, format = 'qcow2'): Promise<QemuMapEntry[]> {
  return JSON.parse(await qemuImg(['map', '--output=json', '-f', format, file])) as QemuMapEntry[];
}

/** `qemu-img check --output=json`: what it counted wrong (corruptions, leaks, check errors). */
export async function checkProblems(file: string, format = 'qcow2'): Promise<Record<string, number>> {
  const report = JSON.parse(await qemuImg(['check', '--output=json', '-f', format, file])) as Record<string, unknown>;
  const problems: Record<string, number> = {};
  for (const key of ['corruptions', 'leaks', 'check-errors', 'corruptions-fixed', 'leaks-fixed']) if (typeof report[key] === 'number' && report[key] !== 0) problems[key] = report[key] as number;
  return problems;
}

function merged(ranges: Range[]): Range[] {
  const out: Range[] = [];
  for (const [start, end] of ranges) {
    const last = out[out.length - 1];
    if (last && last[1] === start) last[1] = end;
    else out.push([start, end]);
  }
  return out;
}

/** The byte ranges of map entries `pick` selects, adjacent ones merged. */
export function mapRanges(entries: QemuMapEntry[], pick: (entry: QemuMapEntry) => boolean): Range[] {
  return merged(entries.filter(pick).map((e): Range => [e.start, e.start + e.length]));
}

/** The byte ranges of the slots `pick` selects, clipped at `size`, adjacent ones merged. */
export function slotRanges(slots: number, chunkSize: number, size: number, pick: (slot: number) => boolean): Range[] {
  const ranges: Range[] = [];
  for (let slot = 0; slot < slots; slot++) if (pick(slot)) ranges.push([slot * chunkSize, Math.min(size, (slot + 1) * chunkSize)]);
  return merged(ranges);
}
