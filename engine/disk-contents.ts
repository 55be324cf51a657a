/**
 * What `ls` shows of a restore point: per disk its partition table, its partitions and the
 * filesystem in each (or in the whole disk when it has no table). Read as the mount reads,
 * through the verified DiskReader: a damaged chunk is a DamagedDataError naming restore
 * point, disk and offset; a damaged table or superblock is only a problem listed beside the rest.
 */
import type { Store } from '../store/store.js';
import type { RestorePoint } from '../store/catalog.js';
import { ChunkFetcher, DiskReader, type ChunkCache } from './reader.js';
import { WorkerPool } from './pool.js';
import { resolveRef } from './refs.js';
import { pickDisk } from './restore.js';
import { readerBytes, windowBytes, withHead, type ReadBytes } from './byte-reader.js';
import { identifyFilesystem, isDamaged, type FilesystemInfo } from './filesystems.js';
import { readPartitionTable, type Partition, type TableScheme } from './partitions.js';

export interface PartitionContents extends Partition {
  filesystem: FilesystemInfo | null;
}

export interface ContentsProblem {
  /** The partition the problem is in; null for the disk's table or the whole disk. */
  partition: number | null;
  problem: string;
}

export interface DiskContents {
  label: string;
  size: number;
  scheme: TableScheme;
  /** The filesystem of an unpartitioned disk; null on a partitioned one. */
  filesystem: FilesystemInfo | null;
  partitions: PartitionContents[];
  problems: ContentsProblem[];
}

export interface PointContents {
  id: string;
  name: string;
  time: string;
  disks: DiskContents[];
}

/** Enough of a disk's start for an MBR, a GPT header and its usual 16 KiB of entries, in one read. */
const TABLE_HEAD_BYTES = 64 * 1024;
/** How long reading a disk waits for the index while a backup holds it. */
const INDEX_WAIT_MS = 10_000;

/** Nothing is read twice but the start of a disk, which withHead keeps: decoded chunks are left to the GC. */
const NO_CACHE: ChunkCache = { get: () => undefined, has: () => false, set: () => [] };

async function probe(read: ReadBytes, partition: number | null, problems: ContentsProblem[]): Promise<FilesystemInfo | null> {
  const found = await identifyFilesystem(read);
  if (found === null) return null;
  if (!isDamaged(found)) return found;
  problems.push({ partition, problem: found.damaged });
  return null;
}

async function diskContents(reader: DiskReader): Promise<DiskContents> {
  const read = withHead(readerBytes(reader), TABLE_HEAD_BYTES);
  const table = await readPartitionTable(read, reader.size);
  const problems: ContentsProblem[] = table.problems.map((problem) => ({ partition: null, problem }));
  const partitions: PartitionContents[] = [];
  for (const partition of table.partitions) {
    const filesystem = partition.extended ? null : await probe(windowBytes(read, partition.start, partition.size), partition.number, problems);
    partitions.push({ ...partition, filesystem });
  }
  const filesystem = table.scheme === 'none' ? await probe(read, null, problems) : null;
  return { label: reader.disk.label, size: reader.size, scheme: table.scheme, filesystem, partitions, problems };
}

/** The disks of `ref` (only `label` when given), read under a lock that keeps gc off their packs. */
export async function listContents(store: Store, ref: string, label?: string): Promise<PointContents> {
  const { points, damaged } = await store.catalog.list();
  const point: RestorePoint = resolveRef(points, ref, damaged);
  const labels = label === undefined ? point.disks.map((d) => d.label) : [pickDisk(point, label).label];
  const lock = await store.lock(`ls ${point.id}`, { pins: [point.id] });
  const pool = new WorkerPool(store.backend, 1, store.keys);
  try {
    const fetcher = new ChunkFetcher(pool, NO_CACHE);
    const disks: DiskContents[] = [];
    for (const disk of labels) disks.push(await diskContents(await DiskReader.open(store, point, disk, fetcher, INDEX_WAIT_MS)));
    return { id: point.id, name: point.name, time: point.time, disks };
  } finally {
    await pool.close();
    await lock.release();
  }
}
