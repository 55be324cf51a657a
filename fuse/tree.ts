/**
 * What the mount shows, as plain objects built from the catalog (no kernel needed to test):
 *
 *   <id>/<label>.img                      every restore point and disk
 *   <id>/<label>.p<N>.img                 its partitions, added once the table is read (fuse/partitions.ts)
 *   by-name/<name>/<time>/<label>.img     the same files, grouped by name
 *   by-name/<name>/latest -> <time>       the newest restore point of the name
 *
 * and the format and differential views of fuse/view-tree.ts.
 */
import type { RestorePoint } from '../store/catalog.js';
import { DIFF, diffDir, viewEntries, type Absence, type ViewNode } from './view-tree.js';

export const IMAGE_SUFFIX = '.img';
export const BY_NAME = 'by-name';
export const LATEST = 'latest';

export interface DirNode {
  kind: 'dir';
  mtime: Date;
  entries: Map<string, Node>;
  /** Set on a restore point's own directory. */
  point?: RestorePoint;
  /** Names not listed that still resolve on lookup; `absent` says why a name that exists cannot. */
  resolve?(name: string, absent: Absence): Node | null;
}

export interface ImageNode {
  kind: 'image';
  mtime: Date;
  point: RestorePoint;
  label: string;
  size: number;
  /** A partition of the disk: the file is the disk's bytes [start, start + size). */
  partition?: { number: number; start: number };
}

export interface LinkNode {
  kind: 'link';
  mtime: Date;
  target: string;
}

export type Node = DirNode | ImageNode | LinkNode | ViewNode;

function dir(mtime: Date, entries: [string, Node][] = []): DirNode {
  return { kind: 'dir', mtime, entries: new Map(entries) };
}

function pointDir(point: RestorePoint): DirNode {
  const mtime = new Date(point.time);
  return dir(mtime, [
    ...point.disks.map((d): [string, Node] => [d.label + IMAGE_SUFFIX, { kind: 'image', mtime, point, label: d.label, size: d.size }]),
    ...viewEntries(point),
  ]);
}

export function partitionFileName(label: string, number: number): string {
  return `${label}.p${number}${IMAGE_SUFFIX}`;
}

/** The partition files of one disk, in a restore point's directory. */
export function addPartitionFiles(pointDir: DirNode, point: RestorePoint, label: string, partitions: { number: number; start: number; size: number }[]): void {
  const mtime = new Date(point.time);
  for (const { number, start, size } of partitions) {
    pointDir.entries.set(partitionFileName(label, number), { kind: 'image', mtime, point, label, size, partition: { number, start } });
  }
}

/**
 * How by-name/ (and files/) spell snapshot times: as restore points have them
 * (`2026-12-01T21:00:00.000Z`), or colon-free in ISO 8601's basic format
 * (`20261201T210000.000Z`), since qemu reads a relative backing path with a colon as a protocol.
 */
export type TimeNames = 'iso' | 'colon-free';

export function timeEntryName(time: string, names: TimeNames): string {
  return names === 'iso' ? time : time.replace(/[-:]/g, '');
}

/** by-name/<name>/: one directory per snapshot time (the id breaks ties), and `latest`. */
function nameDir(points: RestorePoint[], dirs: Map<string, DirNode>, names: TimeNames): DirNode {
  const newest = new Date(points[0].time);
  const named = dir(newest);
  for (const point of points) {
    const time = timeEntryName(point.time, names);
    const entry = named.entries.has(time) ? `${time}_${point.id}` : time;
    named.entries.set(entry, dirs.get(point.id)!);
  }
  const [newestEntry] = named.entries.keys();
  named.entries.set(LATEST, { kind: 'link', mtime: newest, target: newestEntry });
  return named;
}

/** points newest first, as Catalog.list returns them. */
export function buildTree(points: RestorePoint[], names: TimeNames = 'iso'): DirNode {
  const newest = points.length > 0 ? new Date(points[0].time) : new Date(0);
  const dirs = new Map(points.map((p) => [p.id, { ...pointDir(p), point: p }]));
  const byName = new Map<string, RestorePoint[]>();
  for (const point of points) byName.set(point.name, [...(byName.get(point.name) ?? []), point]);
  const byNameDir = dir(newest, [...byName].map(([name, list]) => [name, nameDir(list, dirs, names)]));
  return dir(newest, [...dirs, [BY_NAME, byNameDir], [DIFF, diffDir(points)]]);
}

export function lookup(root: DirNode, path: string, absent: Absence = () => undefined): Node | null {
  let node: Node = root;
  for (const part of path.split('/')) {
    if (part === '') continue;
    if (node.kind !== 'dir') return null;
    const next: Node | null | undefined = node.entries.get(part) ?? node.resolve?.(part, absent);
    if (!next) return null;
    node = next;
  }
  return node;
}

/**
 * The tree of a live store: rebuilt when the set of restore points changes, so new
 * restore points appear and pruned ones disappear without remounting.
 */
export class LiveTree {
  private root: DirNode = buildTree([]);
  private ids = '';
  private refreshing: Promise<void> | null = null;
  private queued: Promise<void> | null = null;

  constructor(
    private readonly listPoints: () => Promise<RestorePoint[]>,
    private readonly onChange: (points: RestorePoint[]) => void = () => undefined,
    private readonly names: TimeNames = 'iso',
  ) {}

  get current(): DirNode {
    return this.root;
  }

  /** One catalog listing at a time; callers arriving meanwhile share it. */
  refresh(): Promise<void> {
    this.refreshing ??= this.reload().finally(() => (this.refreshing = null));
    return this.refreshing;
  }

  /**
   * A listing that starts after this call, for a lookup that missed or a directory listing:
   * one under way may have begun before the restore point they look for was committed.
   */
  fresh(): Promise<void> {
    this.queued ??= (this.refreshing ?? Promise.resolve())
      .catch(() => undefined)
      .then(() => {
        this.queued = null;
        return this.refresh();
      });
    return this.queued;
  }

  private async reload(): Promise<void> {
    const points = await this.listPoints();
    const ids = points.map((p) => p.id).join(',');
    if (ids === this.ids) return;
    this.ids = ids;
    this.root = buildTree(points, this.names);
    this.onChange(points);
  }
}

function parts(path: string): string[] {
  return path.split('/').filter((p) => p !== '');
}

/** Paths under which a restore point committed after the last listing can appear. */
export function mayAppear(path: string): boolean {
  const [first] = parts(path);
  return first === undefined || first === BY_NAME || first === DIFF || /^[0-9a-f]{16}$/.test(first);
}

/** Directories whose entries change with the catalog: the root, by-name, by-name/<name> and diff. */
export function isLiveDir(path: string): boolean {
  const [first, ...rest] = parts(path);
  return first === undefined || (first === BY_NAME && rest.length <= 1) || (first === DIFF && rest.length === 0);
}
