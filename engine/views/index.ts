/**
 * Format views of a restore point's disk, generated from its chunk map and catalog entry:
 * fixed VHD, monolithicFlat VMDK and qcow2, and qcow2 differences between two restore points.
 * Layouts only say where each byte comes from; whoever serves them reads the disk bytes.
 */
import type { Store } from '../../store/store.js';
import type { RestorePoint } from '../../store/catalog.js';
import { readMapOrDamage } from '../locate.js';
import type { ViewLayout } from './layout.js';
import { Qcow2Layout } from './qcow2.js';
import { diffStates, fullStates } from './slots.js';
import { derivedUuid, VhdLayout } from './vhd.js';
import { VmdkLayout } from './vmdk.js';

export type { Piece, ViewLayout } from './layout.js';

export const VIEW_FORMATS = ['vhd', 'vmdk', 'qcow2'] as const;
export type ViewFormat = (typeof VIEW_FORMATS)[number];

export type ViewSpec =
  | { format: 'vhd'; point: RestorePoint; label: string }
  /** `extentFile`: the raw image as the descriptor names it, relative to the descriptor. */
  | { format: 'vmdk'; point: RestorePoint; label: string; extentFile: string }
  | { format: 'qcow2'; point: RestorePoint; label: string }
  /** The newer point over `base`, whose raw image qemu opens as `backingFile` (relative to the view). */
  | { format: 'qcow2-diff'; point: RestorePoint; label: string; base: RestorePoint; backingFile: string };

function diskSize(point: RestorePoint, label: string): number {
  const disk = point.disks.find((d) => d.label === label);
  if (!disk) throw new Error(`restore point ${point.id} has no disk '${label}'`);
  return disk.size;
}

/**
 * Why `newer` cannot be shown as a difference over `older` for this disk, or null when it can:
 * slots compare only between disks of one name, size and chunk size.
 */
export function diffProblem(older: RestorePoint, newer: RestorePoint, label: string): string | null {
  if (older.name !== newer.name) return `restore points ${older.id} (${older.name}) and ${newer.id} (${newer.name}) have different names`;
  for (const point of [older, newer]) if (!point.disks.some((d) => d.label === label)) return `restore point ${point.id} has no disk '${label}'`;
  const [a, b] = [diskSize(older, label), diskSize(newer, label)];
  if (a !== b) return `disk '${label}' is ${a} bytes in ${older.id} and ${b} bytes in ${newer.id}`;
  if (older.chunkSize !== newer.chunkSize) return `restore points ${older.id} and ${newer.id} have different chunk sizes (${older.chunkSize} and ${newer.chunkSize})`;
  return null;
}

/** Reads the maps a view needs (qcow2 only); a map that cannot be read is DamagedDataError. */
export async function openLayout(store: Store, spec: ViewSpec): Promise<ViewLayout> {
  const { point, label } = spec;
  const size = diskSize(point, label);
  switch (spec.format) {
    case 'vhd':
      return new VhdLayout(size, new Date(point.time), derivedUuid('chunkvault vhd', point.id, label));
    case 'vmdk':
      return new VmdkLayout(size, spec.extentFile, derivedUuid('chunkvault vmdk', point.id, label).readUInt32BE(0));
    case 'qcow2':
      return new Qcow2Layout({ diskSize: size, chunkSize: point.chunkSize, states: fullStates(await readMapOrDamage(store, point, label)) });
    case 'qcow2-diff': {
      const problem = diffProblem(spec.base, point, label);
      if (problem) throw new Error(problem);
      const [older, newer] = await Promise.all([readMapOrDamage(store, spec.base, label), readMapOrDamage(store, point, label)]);
      return new Qcow2Layout({ diskSize: size, chunkSize: point.chunkSize, states: diffStates(older, newer), backing: { file: spec.backingFile, format: 'raw' } });
    }
  }
}
