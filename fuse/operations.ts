/** The FUSE callbacks: lookups in the tree, reads through the open images. Read-only by mount option. */
import { StoreBusyError } from '../engine/errors.js';
import { Fuse, type Attributes, type FuseOperations } from './fuse-native.js';
import { IMAGE_SUFFIX, isLiveDir, lookup, mayAppear, partitionFileName, type ImageNode, type LiveTree, type Node } from './tree.js';
import type { ImageFiles } from './image-file.js';
import { PartitionFiles } from './partitions.js';
import { pointsOf, type ViewFiles } from './view-file.js';
import type { ViewNode } from './view-tree.js';
import type { RestorePoint } from '../store/catalog.js';
import type { OpenPins } from './pins.js';

const ST_RDONLY = 1;

const MODES = { dir: 0o040555, image: 0o100444, view: 0o100444, link: 0o120777 } as const;

/** `viewSize`: what a view's layout says, for a view node. */
function attributes(node: Node, viewSize = 0): Attributes {
  const size = node.kind === 'image' ? node.size : node.kind === 'view' ? viewSize : node.kind === 'link' ? Buffer.byteLength(node.target) : 4096;
  return {
    mode: MODES[node.kind],
    size,
    blocks: Math.ceil(size / 512),
    nlink: node.kind === 'dir' ? 2 : 1,
    mtime: node.mtime,
    atime: node.mtime,
    ctime: node.mtime,
    uid: process.getuid?.() ?? 0,
    gid: process.getgid?.() ?? 0,
  };
}

/** A path only the mount itself looks up, to learn that the mount on its mountpoint is still this one. */
export interface Probe {
  readonly path: string;
  answered(): void;
}

export function operations(tree: LiveTree, images: ImageFiles, views: ViewFiles, log: (line: string) => void, probe: Probe, pins: OpenPins): FuseOperations {
  const reported = new Set<string>();
  /** The restore points each open handle pinned. */
  const pinnedBy = new Map<number, string[]>();
  // Kernel retries repeat a failing request: each problem is logged once.
  const report = (message: string): void => {
    if (reported.has(message)) return;
    reported.add(message);
    log(message);
  };
  const messageOf = (err: unknown): string => (err instanceof Error ? err.message : String(err));
  const partitions = new PartitionFiles(images, report);

  /**
   * The tree lags the catalog by up to a poll: prune removes a point's catalog entry, then its
   * maps, so an image that failed to open while its point is no longer listed was pruned, not damaged.
   */
  const isRemoved = async (points: RestorePoint[]): Promise<boolean> => {
    await tree.fresh();
    return points.some((point) => lookup(tree.current, point.id) === null);
  };

  /** Logged under the file's own path: the same damage reached through by-name is one problem. */
  const openErrno = (path: string, err: unknown): number => {
    report(`cannot open ${path}: ${messageOf(err)}`);
    return err instanceof StoreBusyError ? Fuse.EBUSY : Fuse.EIO;
  };

  /** ENOENT for a file whose restore point was pruned meanwhile, else the open's errno, logged. */
  const failedOpen = (points: RestorePoint[], path: string, err: unknown, cb: (errno: number) => void): void => {
    isRemoved(points).then(
      (removed) => cb(removed ? Fuse.ENOENT : openErrno(path, err)),
      (listErr) => (report(messageOf(listErr)), cb(Fuse.EIO)),
    );
  };

  /**
   * A disk reader resolved by an earlier look (its partition table, a view's size) outlives a
   * prune until the tree catches up: the catalog says whether the points are still there.
   */
  const stillListed = async (points: RestorePoint[]): Promise<void> => {
    for (const point of points) if (await images.isPruned(point)) throw new Error(`restore point ${point.id} was pruned`);
  };

  const opened = (node: ImageNode | ViewNode): { handle: Promise<number>; points: RestorePoint[]; path: string } => {
    const file =
      node.kind === 'image'
        ? { open: () => images.open(node), points: [node.point], path: `/${node.point.id}/${node.partition ? partitionFileName(node.label, node.partition.number) : node.label + IMAGE_SUFFIX}` }
        : { open: () => views.open(node), points: pointsOf(node), path: node.path };
    // Pinned first, then checked in the catalog (gc reads them the other way round: see gc.ts markLive).
    const ids = file.points.map((p) => p.id);
    const handle = pins.add(ids).then(async () => {
      try {
        const fd = await stillListed(file.points).then(file.open);
        pinnedBy.set(fd, ids);
        return fd;
      } catch (err) {
        await pins.remove(ids).catch((pinErr: Error) => report(`unpinning: ${pinErr.message}`));
        throw err;
      }
    });
    return { handle, points: file.points, path: file.path };
  };

  /** A name the tree lacks may be a partition file of a table not read yet; any other name costs no table read. */
  const lookupWithPartitions = async (path: string): Promise<Node | null> => {
    const node = lookup(tree.current, path);
    if (node) return node;
    await partitions.addFor(tree.current, path, false);
    return lookup(tree.current, path);
  };

  /** A name that is not there may be a restore point committed a moment ago. */
  const find = async (path: string): Promise<Node | null> => {
    const node = await lookupWithPartitions(path);
    if (node || !mayAppear(path)) return node;
    await tree.fresh();
    await partitions.addFor(tree.current, path, false);
    return lookup(tree.current, path, report);
  };

  return {
    getattr(path, cb) {
      if (path === probe.path) return (probe.answered(), cb(Fuse.ENOENT));
      find(path).then(
        (node) => {
          if (node?.kind !== 'view') return node ? cb(0, attributes(node)) : cb(Fuse.ENOENT);
          // A view's size comes from its layout, which reads the map: it can fail like an open.
          views.size(node).then(
            (size) => cb(0, attributes(node, size)),
            (err) => failedOpen(pointsOf(node), node.path, err, cb),
          );
        },
        (err) => (report(messageOf(err)), cb(Fuse.EIO)),
      );
    },

    readdir(path, cb) {
      (isLiveDir(path) ? tree.fresh() : Promise.resolve())
        .then(() => partitions.addFor(tree.current, path, true))
        .then(() => {
          const node = lookup(tree.current, path);
          if (!node) return cb(Fuse.ENOENT);
          if (node.kind !== 'dir') return cb(Fuse.EINVAL);
          cb(0, ['.', '..', ...node.entries.keys()]);
        })
        .catch((err) => (report(messageOf(err)), cb(Fuse.EIO)));
    },

    readlink(path, cb) {
      const node = lookup(tree.current, path);
      if (node?.kind === 'link') cb(0, node.target);
      else cb(node ? Fuse.EINVAL : Fuse.ENOENT);
    },

    open(path, _flags, cb) {
      // The kernel may open a name it looked up before the tree was rebuilt without a partition file.
      void lookupWithPartitions(path).then((node) => {
        if (node?.kind !== 'image' && node?.kind !== 'view') return cb(node ? Fuse.EINVAL : Fuse.ENOENT);
        const file = opened(node);
        file.handle.then(
          (handle) => cb(0, handle),
          (err) => failedOpen(file.points, file.path, err, cb),
        );
      });
    },

    read(_path, fd, buf, len, pos, cb) {
      const handle = images.handle(fd);
      if (!handle) return cb(Fuse.EBADF);
      handle.read(buf, len, pos).then(cb, (err) => (report(`${messageOf(err)}; reads of it fail with EIO`), cb(Fuse.EIO)));
    },

    release(_path, fd, cb) {
      images.release(fd);
      const ids = pinnedBy.get(fd) ?? [];
      pinnedBy.delete(fd);
      pins.remove(ids).then(
        () => cb(0),
        (err: Error) => (report(`unpinning: ${err.message}`), cb(0)),
      );
    },

    statfs(_path, cb) {
      cb(0, { bsize: 4096, frsize: 4096, blocks: 0, bfree: 0, bavail: 0, files: 0, ffree: 0, favail: 0, fsid: 0, flag: ST_RDONLY, namemax: 255 });
    },
  };
}
