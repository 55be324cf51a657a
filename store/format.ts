import { createHash, randomBytes } from 'node:crypto';
import { BackendAuthError, BackendError, BackendUnreachableError, InvalidInputError, NoSuchBucketError, NotAStoreError, NotAnObjectError, StoreReadError, UnsupportedFormatError, errnoOf, storeReadError } from './errors.js';
import { describeValue } from './describe.js';
import { parseSize } from './size.js';
import { isCompression, type Compression } from './compression.js';
import { objectName, type Backend } from './backend/backend.js';
import { isCipher, type Cipher } from './crypto.js';

export const FORMAT_NAME = 'chunkvault';
/**
 * 2: records may be zstd frames and carry a level and the settled flag; the format file may
 * hold the store's compression settings.
 * 3: packs end in a record table (pack-table.ts), which an older header walk would take for damage.
 * A version 1 or 2 store is read as it is and upgraded the first time it takes one of these (a
 * zstd record, a new pack), so an older chunkvault refuses it instead of misreading it.
 */
export const FORMAT_VERSION = 3;
/** An encrypted store (store/crypto.ts) is version 4 from its init: no older chunkvault takes its sealed objects for plain ones. */
export const ENCRYPTED_FORMAT_VERSION = 4;
const NEWEST_VERSION = ENCRYPTED_FORMAT_VERSION;
export const FORMAT_FILE = 'chunkvault.json';
export const MIN_CHUNK_SIZE = 64 * 1024;
export const MAX_CHUNK_SIZE = 8 * 1024 * 1024;
export const DEFAULT_CHUNK_SIZE = 1024 * 1024;
/** A format file holds four short fields: anything far larger is not one. */
const MAX_FORMAT_FILE_BYTES = 64 * 1024;
/** What to do about a format file that exists but is not a valid one. */
const NOT_VALID = 'check the store path, or restore this file from a copy of the store';

/** gc's standing order to recompress old data (`config --gc-recompress`). */
export interface RecompressPolicy {
  compression: Compression;
  /** Packs younger than this are left as they are. */
  olderThanSeconds: number;
}

export interface StoreFormat {
  format: typeof FORMAT_NAME;
  version: number;
  chunkSize: number;
  created: string;
  /** What backups compress with unless --compression says otherwise; LZ4 when absent. */
  compression?: Compression;
  /** What every gc recompresses, when set. */
  recompress?: RecompressPolicy | null;
  /**
   * Random, set at init: names the store's cache directory on each host, so that two stores never
   * share one and a store copied to another prefix keeps its own. Older stores have none (storeId).
   */
  id?: string;
  /** Set at init for an encrypted store (version 4): its AEAD; the master key is in keys/, wrapped by passphrases. */
  encryption?: { cipher: Cipher };
}

const STORE_ID = /^[0-9a-f]{32}$/;

/** The store's id; a store from before ids is named by its location, which is all that tells it apart. */
export function storeId(format: StoreFormat, location: string): string {
  return format.id ?? createHash('sha256').update(location).digest('hex').slice(0, 32);
}

function isChunkSize(size: unknown): size is number {
  return typeof size === 'number' && Number.isInteger(size) && size >= MIN_CHUNK_SIZE && size <= MAX_CHUNK_SIZE && (size & (size - 1)) === 0;
}

export function parseChunkSize(text: string): number {
  const size = parseSize(text, '--chunk-size');
  if (!isChunkSize(size)) {
    throw new InvalidInputError(`--chunk-size: ${text} must be a power of two from 64K to 8M`, { value: text });
  }
  return size;
}

export function newFormat(chunkSize: number, created: Date, compression: Compression, cipher: Cipher | null = null): StoreFormat {
  const format: StoreFormat = { format: FORMAT_NAME, version: FORMAT_VERSION, chunkSize, created: created.toISOString(), compression, recompress: null, id: randomBytes(16).toString('hex') };
  return cipher === null ? format : { ...format, version: ENCRYPTED_FORMAT_VERSION, encryption: { cipher } };
}

export function encodeFormat(format: StoreFormat): string {
  return JSON.stringify(format, null, 2) + '\n';
}

function isRecompressPolicy(value: unknown): value is RecompressPolicy {
  const policy = value as RecompressPolicy;
  return typeof policy === 'object' && policy !== null && isCompression(policy.compression) && Number.isSafeInteger(policy.olderThanSeconds) && policy.olderThanSeconds >= 0;
}

/** The version 2 settings, where the file has them: checked like every other field. */
function checkSettings(parsed: Record<string, unknown>, file: string): void {
  if (parsed.compression !== undefined && !isCompression(parsed.compression)) {
    throw new UnsupportedFormatError(`${file}: invalid compression ${describeValue(parsed.compression)}; ${NOT_VALID}`, { file });
  }
  if (parsed.recompress !== undefined && parsed.recompress !== null && !isRecompressPolicy(parsed.recompress)) {
    throw new UnsupportedFormatError(`${file}: invalid recompress ${describeValue(parsed.recompress)}; ${NOT_VALID}`, { file });
  }
  if (parsed.id !== undefined && !(typeof parsed.id === 'string' && STORE_ID.test(parsed.id))) {
    throw new UnsupportedFormatError(`${file}: invalid id ${describeValue(parsed.id)} (32 hex digits); ${NOT_VALID}`, { file });
  }
  checkEncryption(parsed, file);
}

/** Version 4 and only version 4 names a cipher: an encrypted store never reads as a plain one, nor the other way round. */
function checkEncryption(parsed: Record<string, unknown>, file: string): void {
  const encryption = parsed.encryption as { cipher?: unknown } | undefined;
  if (parsed.version === ENCRYPTED_FORMAT_VERSION) {
    if (typeof encryption !== 'object' || encryption === null || !isCipher(encryption.cipher)) {
      throw new UnsupportedFormatError(`${file}: version ${ENCRYPTED_FORMAT_VERSION} without a valid encryption cipher (${describeValue(encryption)}); ${NOT_VALID}`, { file });
    }
  } else if (encryption !== undefined) {
    throw new UnsupportedFormatError(`${file}: encryption in a version ${describeValue(parsed.version)} store; ${NOT_VALID}`, { file });
  }
}

function parseObject(text: string, file: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new NotAStoreError(`${file} is not valid JSON; ${NOT_VALID}`, { file });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new NotAStoreError(`${file} holds ${describeValue(parsed)}, not a JSON object; ${NOT_VALID}`, { file });
  }
  return parsed as Record<string, unknown>;
}

/** Only a whole number above every version this code knows is a newer format; anything else is no version at all. */
function checkVersion(version: unknown, file: string): number {
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 1) {
    throw new UnsupportedFormatError(`${file}: invalid version ${describeValue(version)} (a version is a whole number, 1 or more); ${NOT_VALID}`, {
      file,
      version: describeValue(version),
    });
  }
  if (version > NEWEST_VERSION) {
    throw new UnsupportedFormatError(`${file}: store format version ${version} is newer than this chunkvault supports (${NEWEST_VERSION}); upgrade chunkvault`, { file, version });
  }
  return version;
}

/** Refuses what is not a store, and stores written by an unknown or newer format. */
export function decodeFormat(text: string, location: string): StoreFormat {
  const file = objectName({ location }, FORMAT_FILE);
  const parsed = parseObject(text, file);
  if (parsed.format !== FORMAT_NAME) {
    throw new UnsupportedFormatError(`${file}: unknown store format ${describeValue(parsed.format)} (expected "${FORMAT_NAME}"); ${NOT_VALID}`, { file, format: describeValue(parsed.format) });
  }
  const version = checkVersion(parsed.version, file);
  if (!isChunkSize(parsed.chunkSize)) {
    throw new UnsupportedFormatError(
      `${file}: invalid chunk size ${describeValue(parsed.chunkSize)} (expected a power of two from ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE} bytes); ${NOT_VALID}`,
      { file, chunkSize: describeValue(parsed.chunkSize) },
    );
  }
  checkSettings(parsed, file);
  return { ...(parsed as unknown as StoreFormat), version, chunkSize: parsed.chunkSize };
}

/** Why the format file could not be read (`err`, from the backend), as the error to stop with. */
function unreadableFormat(err: unknown, dir: string, file: string): Error {
  // ENOTDIR: the store path, or a directory on the way to it, is a file.
  if (errnoOf(err) === 'ENOTDIR') return notAStore(dir);
  if (err instanceof NotAnObjectError) return new NotAStoreError(`${file} is ${String(err.data.kind)}, not a regular file; ${NOT_VALID}`, { store: dir, file });
  // A backend's own errors (no bucket, refused credentials, no answer) already say what to do.
  if (err instanceof BackendError || err instanceof BackendAuthError || err instanceof NoSuchBucketError || err instanceof BackendUnreachableError) return err;
  if (errnoOf(err) === 'EACCES') {
    return new StoreReadError(`store ${dir} is not readable (EACCES): cannot read ${file}; run chunkvault as the store's owner`, { store: dir, file, code: 'EACCES' }, err);
  }
  return storeReadError(file, err);
}

function notAStore(dir: string): NotAStoreError {
  return new NotAStoreError(`${dir} is not a chunkvault store (no ${FORMAT_FILE}; create one with 'chunkvault init')`, { store: dir });
}

/** The format file's bytes; its size is checked first, so that something huge in its place is never read. */
async function readFormatBytes(backend: Backend, dir: string, file: string): Promise<Buffer> {
  const info = await backend.stat(FORMAT_FILE);
  if (info && info.size > MAX_FORMAT_FILE_BYTES) throw new NotAStoreError(`${file} has ${info.size} bytes, far too many for a format file; ${NOT_VALID}`, { store: dir, file });
  const bytes = info && (await backend.get(FORMAT_FILE));
  if (!bytes) throw notAStore(dir);
  return bytes;
}

export async function readFormat(backend: Backend): Promise<StoreFormat> {
  const dir = backend.location;
  const file = objectName(backend, FORMAT_FILE);
  let bytes: Buffer;
  try {
    bytes = await readFormatBytes(backend, dir, file);
  } catch (err) {
    throw err instanceof NotAStoreError ? err : unreadableFormat(err, dir, file);
  }
  return decodeFormat(bytes.toString('utf8'), dir);
}

export function writeFormat(backend: Backend, format: StoreFormat): Promise<void> {
  return backend.put(FORMAT_FILE, Buffer.from(encodeFormat(format)));
}
