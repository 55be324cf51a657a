/**
 * The partition files of a restore point's directory, `<label>.p<N>.img`. A store can hold
 * thousands of restore points: a point's tables are read only once its directory is listed or
 * a name in it that the tree lacks is looked up (not when the root is listed, nor when the
 * directory itself or its disk image is stat'ed or opened), then kept while the point exists. A table that cannot be read (damaged chunks, both
 * GPT headers damaged) just means no partition files for that disk, and is logged once; a busy
 * index or an unreadable map is not kept, so the next lookup tries again.
 */
import { DamagedDataError } from '../engine/errors.js';
import { readerBytes } from '../engine/byte-reader.js';
import { readPartitionTable, type Partition } from '../engine/partitions.js';
import type { RestorePoint } from '../store/catalog.js';
import type { ImageFiles } from './image-file.js';
import { IMAGE_SUFFIX, addPartitionFiles, type DirNode, type Node } from './tree.js';

interface DiskPartitions {
  label: string;
  partitions: Partition[];
}

/** The restore point directory `path` is in (a lookup below it), or is (a listing of it). */
function pointDirOf(root: DirNode, path: string, listing: boolean): DirNode | null {
  let node: Node = root;
  for (const part of path.split('/').filter((p) => p !== '')) {
    if (node.kind !== 'dir') return null;
    if (node.point) return node;
    const next = node.entries.get(part);
    if (!next) return null;
    node = next;
  }
  return listing && node.kind === 'dir' && node.point ? node : null;
}

export class PartitionFiles {
  private readonly tables = new Map<string, Promise<DiskPartitions[]>>();
  private readonly filled = new WeakSet<DirNode>();
  private root: DirNode | null = null;

  constructor(
    private readonly images: ImageFiles,
    private readonly log: (line: string) => void,
  ) {}

  /** Before a lookup (`listing` false) or a listing of `path`: the partition files of the restore point it is in. Never rejects. */
  async addFor(root: DirNode, path: string, listing: boolean): Promise<void> {
    this.forgetPointsNotIn(root);
    const dir = pointDirOf(root, path, listing);
    if (!dir || this.filled.has(dir)) return;
    const point = dir.point!;
    let tables: DiskPartitions[];
    try {
      tables = await this.tablesOf(point);
    } catch (err) {
      // The disk images themselves are still served; their open says what is wrong.
      this.log(`partition tables of /${point.id}: ${err instanceof Error ? err.message : String(err)}; tried again on the next lookup`);
      return;
    }
    for (const { label, partitions } of tables) addPartitionFiles(dir, point, label, partitions.filter((p) => !p.extended));
    this.filled.add(dir);
  }

  /** A rebuilt tree has new directories; the tables of restore points still in it are kept. */
  private forgetPointsNotIn(root: DirNode): void {
    if (root === this.root) return;
    this.root = root;
    for (const id of this.tables.keys()) if (!root.entries.has(id)) this.tables.delete(id);
  }

  private tablesOf(point: RestorePoint): Promise<DiskPartitions[]> {
    let tables = this.tables.get(point.id);
    if (!tables) {
      tables = this.readTables(point);
      this.tables.set(point.id, tables);
      tables.catch(() => this.tables.get(point.id) === tables && this.tables.delete(point.id));
    }
    return tables;
  }

  private async readTables(point: RestorePoint): Promise<DiskPartitions[]> {
    const found: DiskPartitions[] = [];
    for (const { label } of point.disks) found.push({ label, partitions: await this.readTable(point, label) });
    return found;
  }

  private async readTable(point: RestorePoint, label: string): Promise<Partition[]> {
    const where = `partition table of /${point.id}/${label}${IMAGE_SUFFIX}`;
    try {
      const reader = await this.images.readerOf(point, label);
      const table = await readPartitionTable(readerBytes(reader), reader.size);
      for (const problem of table.problems) this.log(`${where}: ${problem}`);
      return table.partitions;
    } catch (err) {
      if (!(err instanceof DamagedDataError)) throw err;
      this.log(`${where}: ${err.message}; no partition files for it`);
      return [];
    }
  }
}
