/**
 * The format views in the mount's tree (see engine/views):
 *
 *   <id>/<label>.vhd | .vmdk | .qcow2     beside <label>.img, in every restore point directory
 *   diff/<older>..<newer>/<label>.qcow2    the newer disk as changes over the older's .img
 *
 * diff/ lists each restore point's parent..child pair and each pair of consecutive restore
 * points of one name; any other pair of one name resolves when looked up.
 */
import type { RestorePoint } from '../store/catalog.js';
import { diffProblem, type ViewSpec } from '../engine/views/index.js';
import { IMAGE_SUFFIX, type DirNode, type Node } from './tree.js';

export const DIFF = 'diff';
const QCOW2_SUFFIX = '.qcow2';
const PAIR_PATTERN = /^([0-9a-f]{16})\.\.([0-9a-f]{16})$/;

export interface ViewNode {
  kind: 'view';
  mtime: Date;
  spec: ViewSpec;
  /** Where the mount shows it first, for the log: one problem reached through by-name is still one. */
  path: string;
}

export function viewEntries(point: RestorePoint): [string, ViewNode][] {
  const mtime = new Date(point.time);
  return point.disks.flatMap(({ label }): [string, ViewNode][] => {
    const at = (suffix: string): string => `/${point.id}/${label}${suffix}`;
    return [
      [label + '.vhd', { kind: 'view', mtime, spec: { format: 'vhd', point, label }, path: at('.vhd') }],
      [label + '.vmdk', { kind: 'view', mtime, spec: { format: 'vmdk', point, label, extentFile: label + IMAGE_SUFFIX }, path: at('.vmdk') }],
      [label + QCOW2_SUFFIX, { kind: 'view', mtime, spec: { format: 'qcow2', point, label }, path: at(QCOW2_SUFFIX) }],
    ];
  });
}

function pairName(older: RestorePoint, newer: RestorePoint): string {
  return `${older.id}..${newer.id}`;
}

/** Says why a name is not there, for the names that exist but cannot be shown. */
export type Absence = (reason: string) => void;

function pairDir(older: RestorePoint, newer: RestorePoint): DirNode {
  const mtime = new Date(newer.time);
  const diffNode = (label: string): ViewNode => ({
    kind: 'view',
    mtime,
    spec: { format: 'qcow2-diff', point: newer, label, base: older, backingFile: `../../${older.id}/${label}${IMAGE_SUFFIX}` },
    path: `/${DIFF}/${pairName(older, newer)}/${label}${QCOW2_SUFFIX}`,
  });
  const labels = newer.disks.map((d) => d.label).filter((label) => diffProblem(older, newer, label) === null);
  return {
    kind: 'dir',
    mtime,
    entries: new Map(labels.map((label) => [label + QCOW2_SUFFIX, diffNode(label)])),
    resolve(name, absent) {
      if (!name.endsWith(QCOW2_SUFFIX)) return null;
      const label = name.slice(0, -QCOW2_SUFFIX.length);
      if ([older, newer].some((p) => p.disks.some((d) => d.label === label))) absent(`no ${name} in /${DIFF}/${pairName(older, newer)}: ${diffProblem(older, newer, label)}`);
      return null;
    },
  };
}

/** points newest first, as Catalog.list returns them. */
export function diffDir(points: RestorePoint[]): DirNode {
  const byId = new Map(points.map((p) => [p.id, p]));
  const pairs = new Map<string, DirNode>();
  const add = (older: RestorePoint, newer: RestorePoint): void => {
    if (older.name === newer.name && !pairs.has(pairName(older, newer))) pairs.set(pairName(older, newer), pairDir(older, newer));
  };
  for (const point of points) {
    const parent = point.parent === null ? undefined : byId.get(point.parent);
    if (parent) add(parent, point);
  }
  const previous = new Map<string, RestorePoint>();
  for (const point of [...points].reverse()) {
    const before = previous.get(point.name);
    if (before) add(before, point);
    previous.set(point.name, point);
  }
  return {
    kind: 'dir',
    mtime: points.length > 0 ? new Date(points[0].time) : new Date(0),
    entries: new Map(pairs),
    resolve(name, absent): Node | null {
      const [, olderId, newerId] = PAIR_PATTERN.exec(name) ?? [];
      const older = byId.get(olderId);
      const newer = byId.get(newerId);
      if (!older || !newer) return null;
      if (older.name !== newer.name) {
        absent(`no /${DIFF}/${name}: restore points ${older.id} (${older.name}) and ${newer.id} (${newer.name}) have different names`);
        return null;
      }
      return pairDir(older, newer);
    },
  };
}
