/**
 * The storage seam: everything a store holds (format file, packs, catalog, maps, locks and pins)
 * is an object under a key behind this interface. Keys are relative, '/'-separated
 * (`packs/<name>.pack`, `catalog/<id>.json`, `maps/<id>/<label>.map`). The local directory
 * (fs.ts) and S3-compatible object storage (s3.ts) implement it; every backend passes the
 * same conformance suite (test/store/backend/conformance.ts).
 *
 * Absence has one spelling: an operation on a missing object fails with an error whose errno is
 * ENOENT (isAbsent in ../errors.ts) or returns null where the signature says so. Every other
 * failure (I/O, permissions, throttling, a network error after the retries) is thrown as it is:
 * callers turn it into StoreReadError and stop; nothing is ever acted on as absent.
 */

export interface ObjectInfo {
  key: string;
  size: number;
  /** Last written, in ms since the epoch: gc's age margins and recompression by age use it. */
  mtimeMs: number;
}

/** A large object written front to back (a pack): appended in order, then finished. */
export interface Upload {
  /** Bytes appended so far. */
  readonly size: number;
  /** Copies `buffers`: they may change once this returns. Calls must not overlap. */
  append(buffers: Buffer[]): Promise<void>;
  /**
   * Makes every appended byte durable and the object readable under its key. Nothing may
   * reference the object before this returns; some backends show it earlier (fs), some only now (s3).
   */
  finish(): Promise<void>;
  /** Gives up: what was appended is removed, or left for gc to reclaim. */
  abort(): Promise<void>;
}

/**
 * A local file the caller writes freely (random writes, sparse: a chunk map being filled in any
 * slot order) that becomes the object `key` on commit, whole or not at all.
 */
export interface Staged {
  readonly path: string;
  /** The file becomes the object durably (fs: fsync, rename, fsync of the directory; s3: an upload). */
  commit(): Promise<void>;
  discard(): Promise<void>;
}

export interface Backend {
  /** Where the store is, for messages: a directory, or s3://bucket/prefix. Never credentials. */
  readonly location: string;
  /**
   * The local directory that holds the store, when it is one: the filesystem whose free space a
   * backup checks, that holds the index and the space reserve. Null for remote backends.
   */
  readonly localDir: string | null;

  /** The whole object, or null when it is absent. */
  get(key: string): Promise<Buffer | null>;
  /**
   * Reads bytes of the object from `offset` into `into` until it is full or the object ends;
   * returns how many. An absent object throws ENOENT.
   */
  readInto(key: string, offset: number, into: Buffer): Promise<number>;
  /** Size and time of the object, or null when it is absent. */
  stat(key: string): Promise<ObjectInfo | null>;
  /**
   * Every object whose key starts with `prefix` (a prefix ending in '/' lists that "directory"
   * recursively), sorted by key. A listing that fails part-way throws: never a partial list.
   */
  list(prefix: string): Promise<ObjectInfo[]>;

  /** Creates or replaces the object, atomically (readers see the old or the new one whole) and durably. */
  put(key: string, data: Uint8Array): Promise<void>;
  /**
   * Creates the object only when no object has the key, atomically and durably: false, and
   * nothing written, when one exists. Commit points and locks, where two writers must not
   * overwrite each other.
   */
  create(key: string, data: Uint8Array): Promise<boolean>;
  /** Deletes the objects for good (durable on return); absent ones are fine. */
  delete(keys: string[]): Promise<void>;

  /** Starts a large object written front to back; `key` must not exist. */
  upload(key: string): Promise<Upload>;
  /** A local file to write freely that becomes `key` on commit (see Staged). */
  stage(key: string): Promise<Staged>;

  /**
   * Writes that were started and never finished, by killed or failed processes, that are older than
   * `olderThanMs`: multipart uploads the server keeps (and bills) until aborted, files staged on this
   * host. Backends whose leftovers are ordinary objects (fs: temp files, see Store.tmpFiles) have none.
   */
  staleWrites?(olderThanMs: number): Promise<StaleWrite[]>;
  /** Aborts or removes them; ones already gone are fine. */
  removeStaleWrites?(writes: StaleWrite[]): Promise<void>;

  /** Requests and bytes so far, where the backend counts them (s3); worker threads' are added with addStats. */
  stats?(): BackendStats;
  /** Adds what another thread's copy of this backend counted. */
  addStats?(stats: BackendStats): void;

  /** How worker threads open this backend for themselves (plain data, sent to them). */
  readonly spec: BackendSpec;
  /** Ends connections and the like; the backend is not used afterwards. */
  close(): Promise<void>;
}

export interface StaleWrite {
  kind: 'upload' | 'staged';
  /** The object key an upload was for, or the staged file's path. */
  key: string;
  /** The multipart upload's id ('' for a staged file). */
  id: string;
  startedMs: number;
}

export interface BackendStats {
  /** By kind: get, range, head, put, create, list, delete, createMultipart, uploadPart... */
  requests: Record<string, number>;
  retries: number;
  bytesSent: number;
  bytesReceived: number;
}

/** What `now` counted since `before` (both of one backend). */
export function statsSince(now: BackendStats, before: BackendStats): BackendStats {
  const requests: Record<string, number> = {};
  for (const [kind, n] of Object.entries(now.requests)) if (n !== (before.requests[kind] ?? 0)) requests[kind] = n - (before.requests[kind] ?? 0);
  return { requests, retries: now.retries - before.retries, bytesSent: now.bytesSent - before.bytesSent, bytesReceived: now.bytesReceived - before.bytesReceived };
}

export function addStats(into: BackendStats, more: BackendStats): void {
  for (const [kind, n] of Object.entries(more.requests)) into.requests[kind] = (into.requests[kind] ?? 0) + n;
  into.retries += more.retries;
  into.bytesSent += more.bytesSent;
  into.bytesReceived += more.bytesReceived;
}

/** What a worker thread needs to open the same backend: structured-clonable, no secrets printed from it. */
export type BackendSpec = { kind: 'fs'; dir: string } | { kind: 's3'; options: Record<string, unknown> };

/** How messages name the object `key` (or the prefix it lists): below the backend's location. */
export function objectName(backend: Pick<Backend, 'location'>, key: string): string {
  return key === '' ? backend.location : `${backend.location}/${key.replace(/\/$/, '')}`;
}
