/**
 * Every failure a user can cause or meet has a class with a stable code, structured data and,
 * where another error led to it, that error as `cause`. Below engine/ and store/ alike.
 * The CLI prints `message` (and exits with `exitCode`); `--json` prints toJSON().
 */
export type ErrorData = Record<string, unknown>;

export class ChunkvaultError extends Error {
  readonly code: string = 'CV_ERROR';
  readonly exitCode: number = 2;
  constructor(message: string, readonly data: ErrorData = {}, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = new.target.name;
  }
  toJSON(): { code: string; message: string; data: ErrorData } {
    return { code: this.code, message: this.message, data: this.data };
  }
}

/** Bad arguments, sizes, refs, JSON lists: rejected before anything is written. */
export class InvalidInputError extends ChunkvaultError {
  override readonly code = 'CV_INVALID_INPUT';
}
export class SourceError extends ChunkvaultError {
  override readonly code = 'CV_SOURCE';
}
export class TargetError extends ChunkvaultError {
  override readonly code = 'CV_TARGET';
}
export class NotAStoreError extends ChunkvaultError {
  override readonly code = 'CV_NOT_A_STORE';
}
export class StoreExistsError extends ChunkvaultError {
  override readonly code = 'CV_STORE_EXISTS';
}
export class UnsupportedFormatError extends ChunkvaultError {
  override readonly code = 'CV_UNSUPPORTED_FORMAT';
}
export class UnknownRefError extends ChunkvaultError {
  override readonly code = 'CV_UNKNOWN_REF';
}
export class AmbiguousRefError extends ChunkvaultError {
  override readonly code = 'CV_AMBIGUOUS_REF';
}
/** A restore point id that already has a catalog entry: a commit never overwrites one. */
export class RestorePointExistsError extends ChunkvaultError {
  override readonly code = 'CV_RESTORE_POINT_EXISTS';
}
/** A store object's key names something other than a regular file (a directory, a FIFO, a device): never read, never absent. */
export class NotAnObjectError extends ChunkvaultError {
  override readonly code = 'CV_NOT_AN_OBJECT';
}
export class StoreBusyError extends ChunkvaultError {
  override readonly code = 'CV_STORE_BUSY';
  override readonly exitCode = 3;
}
/** A long command whose lock could not be renewed for its lease: stopped rather than run unprotected from gc. */
export class LeaseLostError extends ChunkvaultError {
  override readonly code = 'CV_LEASE_LOST';
}
/** A chunk whose bytes are missing or do not match their id: never served as data. */
export class DamagedDataError extends ChunkvaultError {
  override readonly code = 'CV_DAMAGED';
  override readonly exitCode = 1;
}
/** The store's directory refuses writes (permissions, a read-only filesystem). */
export class StoreNotWritableError extends ChunkvaultError {
  override readonly code = 'CV_STORE_NOT_WRITABLE';
}
export class NoSpaceError extends ChunkvaultError {
  override readonly code = 'CV_NO_SPACE';
}
/** A mountpoint that is missing, not a directory, not empty, already mounted, or not ours. */
export class MountpointError extends ChunkvaultError {
  override readonly code = 'CV_MOUNTPOINT';
}
/** A filesystem inside a disk image that no reader here can read, or whose reader failed or hung. */
export class FilesystemError extends ChunkvaultError {
  override readonly code = 'CV_FILESYSTEM';
  override readonly exitCode = 1;
}
/** SIGINT or SIGTERM stopped a command after it tore down what it had set up; exits 128 + the signal's number. */
export class InterruptedError extends ChunkvaultError {
  override readonly code = 'CV_INTERRUPTED';
  override readonly exitCode: number;
  constructor(signal: string) {
    super(`interrupted by ${signal}`, { signal });
    this.exitCode = 128 + (signal === 'SIGINT' ? 2 : 15);
  }
}
/**
 * An object of the store exists, or may, but could not be read or listed (EIO, EMFILE, EACCES,
 * a short read...). Never "absent": the command that meets it stops and changes nothing.
 */
export class StoreReadError extends ChunkvaultError {
  override readonly code = 'CV_STORE_READ';
}

/** The errno of a failed system call, when it has one. */
export function errnoOf(err: unknown): string | undefined {
  // Reading what is not a file fails with this errno; messages name it as they name any other.
  if (err instanceof NotAnObjectError) return err.data.errno as string;
  return (err as NodeJS.ErrnoException | null)?.code;
}

/** Only "no such file" means absent (invariant 6). */
export function isAbsent(err: unknown): boolean {
  return errnoOf(err) === 'ENOENT';
}

/** The error an operation on an absent store object fails with, where the backend said so by returning null. */
export function absentObject(key: string): Error {
  return Object.assign(new Error(`${key} does not exist`), { code: 'ENOENT' });
}

/** `what` (a path, or a name for it; `object`, the path) could not be read: the error to stop with. */

export function storeReadError(what: string, err: unknown, object = what): StoreReadError {
  const code = errnoOf(err) ?? (err instanceof Error ? err.message : String(err));
  return new StoreReadError(`cannot read ${what} (${code}); stopped, nothing was changed`, { object, code }, err);
}

/**
 * The chunk index does not account for a chunk a restore point uses that a pack gc would
 * delete holds: the index is incomplete (lost, rolled back, an interrupted rebuild).
 */
export class IndexIncompleteError extends ChunkvaultError {
  override readonly code = 'CV_INDEX_INCOMPLETE';
  override readonly exitCode = 1;
}

/**
 * Errors of an object-store backend (S3). Their messages name the store's location and endpoint,
 * never credentials; `data` holds what was asked and what the server answered.
 */
/** The server refused the credentials (unknown access key, bad signature, access denied). */
export class BackendAuthError extends ChunkvaultError {
  override readonly code = 'CV_BACKEND_AUTH';
}
/** The bucket the store's location names does not exist at the endpoint. */
export class NoSuchBucketError extends ChunkvaultError {
  override readonly code = 'CV_NO_SUCH_BUCKET';
}
/** The endpoint could not be reached (refused, reset, timed out) after the bounded retries. */
export class BackendUnreachableError extends ChunkvaultError {
  override readonly code = 'CV_BACKEND_UNREACHABLE';
}
/** Any other answer the backend cannot act on (a 4xx it does not expect, 5xx after the retries). */
export class BackendError extends ChunkvaultError {
  override readonly code = 'CV_BACKEND';
}

/**
 * Recovery sessions (engine/session*.ts): no session at a DIR, one there already, one serving
 * still, a TARGET another session writes. The session's own files are left as they were.
 */
export class SessionError extends ChunkvaultError {
  override readonly code = 'CV_SESSION';
}

/** A sealed object that does not open: damaged, swapped, replayed elsewhere, or sealed with another key. */
export class SealBrokenError extends ChunkvaultError {
  override readonly code = 'CV_SEAL_BROKEN';
}
/** No passphrase given opens any of an encrypted store's keys. */
export class WrongPasswordError extends ChunkvaultError {
  override readonly code = 'CV_WRONG_PASSWORD';
}
/** The store is encrypted and no passphrase was given. */
export class PasswordRequiredError extends ChunkvaultError {
  override readonly code = 'CV_PASSWORD_REQUIRED';
}
/** A key object that is not one: damaged, or not written by chunkvault. */
export class KeyFileError extends ChunkvaultError {
  override readonly code = 'CV_KEY_DAMAGED';
}
/** `key remove` of the store's only key: without it no passphrase opens the store. */
export class LastKeyError extends ChunkvaultError {
  override readonly code = 'CV_LAST_KEY';
}
/** `key remove` of the key the given passphrase opens, when that passphrase opens no other. */
export class KeyInUseError extends ChunkvaultError {
  override readonly code = 'CV_KEY_IN_USE';
}
/** A key id the store has no key object for. */
export class UnknownKeyError extends ChunkvaultError {
  override readonly code = 'CV_KEY_UNKNOWN';
}
