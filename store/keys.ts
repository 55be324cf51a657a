/**
 * The master key of an encrypted store, wrapped by passphrases: `keys/<id>.json`, one object per
 * passphrase, each the master key sealed (AES-256-GCM) with a key that scrypt derives from its
 * passphrase, the scrypt parameters beside it. These and the format file are the only objects of
 * an encrypted store that are not sealed with the master key.
 */
import { createHash, randomBytes, scrypt as scryptCallback, type ScryptOptions } from 'node:crypto';
import { hostname, userInfo } from 'node:os';
import { ChunkvaultError, InvalidInputError, KeyFileError, SealBrokenError, WrongPasswordError, storeReadError } from './errors.js';
import { MASTER_KEY_BYTES, Sealer, isCipher, type Cipher } from './crypto.js';
import { objectName, type Backend } from './backend/backend.js';

export const KEYS_PREFIX = 'keys/';
const KEY_SUFFIX = '.json';
const KEY_FILE_VERSION = 1;
/** N = 2^15, r = 8: 32 MiB and about a tenth of a second here, restic's order of cost. */
export const DEFAULT_SCRYPT = { N: 2 ** 15, r: 8, p: 1 } as const;
export type ScryptParams = { N: number; r: number; p: number };

export interface KeyFile {
  version: typeof KEY_FILE_VERSION;
  kdf: 'scrypt';
  scrypt: ScryptParams;
  salt: string;
  created: string;
  /** Who added the key, for `key list`: the host and user that ran `init` or `key add`. */
  host?: string;
  user?: string;
  /** The master key, sealed with the passphrase's key; its associated data is the key's id. */
  wrapped: string;
}

export function keyObject(id: string): string {
  return `${KEYS_PREFIX}${id}${KEY_SUFFIX}`;
}

function scrypt(password: string, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  const options: ScryptOptions = { ...params, maxmem: 256 * params.N * params.r };
  return new Promise((resolve, reject) => scryptCallback(password, salt, 32, options, (err, key) => (err ? reject(err) : resolve(key))));
}

/** An empty passphrase would wrap the master key with a key anyone can derive. */
export function checkPassword(password: string): void {
  if (password.length === 0) throw new InvalidInputError('the passphrase is empty', {});
}

/** The user running this process, or its uid where the system has no name for it. */
function userName(): string {
  try {
    return userInfo().username;
  } catch {
    return String(process.getuid?.() ?? 'unknown');
  }
}

/** Wraps `master` with a new passphrase as a new key object; returns its id. */
export async function addKey(backend: Backend, master: Buffer, password: string, params: ScryptParams = DEFAULT_SCRYPT): Promise<string> {
  checkPassword(password);
  const id = randomBytes(8).toString('hex');
  const salt = randomBytes(16);
  const wrapped = new Sealer('aes-256-gcm', await scrypt(password, salt, params)).seal(master, Buffer.from(id));
  const file: KeyFile = { version: KEY_FILE_VERSION, kdf: 'scrypt', scrypt: params, salt: salt.toString('base64'), created: new Date().toISOString(), host: hostname(), user: userName(), wrapped: wrapped.toString('base64') };
  if (!(await backend.create(keyObject(id), Buffer.from(JSON.stringify(file, null, 2) + '\n')))) throw new ChunkvaultError(`key ${id} already exists`, { id });
  return id;
}

/** The ids of the store's key objects. */
export async function listKeyIds(backend: Backend): Promise<string[]> {
  const objects = await backend.list(KEYS_PREFIX).catch((err: unknown) => {
    throw storeReadError(objectName(backend, KEYS_PREFIX), err);
  });
  return objects.map((o) => o.key.slice(KEYS_PREFIX.length)).filter((n) => n.endsWith(KEY_SUFFIX) && !n.includes('/')).map((n) => n.slice(0, -KEY_SUFFIX.length));
}

function isScryptParams(value: unknown): value is ScryptParams {
  const p = value as ScryptParams;
  return typeof p === 'object' && p !== null && [p.N, p.r, p.p].every((n) => Number.isSafeInteger(n) && n > 0) && (p.N & (p.N - 1)) === 0 && p.N <= 2 ** 22 && p.r <= 32 && p.p <= 16;
}

function optionalStrings(...values: unknown[]): boolean {
  return values.every((v) => v === undefined || typeof v === 'string');
}

export async function readKeyFile(backend: Backend, id: string): Promise<KeyFile> {
  const name = objectName(backend, keyObject(id));
  const bytes = await backend.get(keyObject(id)).catch((err: unknown) => {
    throw storeReadError(name, err);
  });
  if (!bytes) throw new KeyFileError(`${name} is gone`, { key: id });
  let file: KeyFile;
  try {
    file = JSON.parse(bytes.toString('utf8')) as KeyFile;
  } catch {
    throw new KeyFileError(`${name} is not valid JSON: the key is damaged`, { key: id });
  }
  if (file?.version !== KEY_FILE_VERSION || file.kdf !== 'scrypt' || !isScryptParams(file.scrypt) || typeof file.salt !== 'string' || typeof file.wrapped !== 'string' || !optionalStrings(file.host, file.user)) {
    throw new KeyFileError(`${name} is not a chunkvault key file: the key is damaged`, { key: id });
  }
  return file;
}

/** Each key object that reads as one, and the last damaged one met (the answer when no intact key is left). */
async function readableKeys(backend: Backend): Promise<{ ids: string[]; intact: { id: string; file: KeyFile }[]; damaged: KeyFileError | null }> {
  const ids = await listKeyIds(backend);
  if (ids.length === 0) throw new KeyFileError(`${objectName(backend, KEYS_PREFIX)} holds no key: the store cannot be opened`, {});
  const intact: { id: string; file: KeyFile }[] = [];
  let damaged: KeyFileError | null = null;
  for (const id of ids) {
    try {
      intact.push({ id, file: await readKeyFile(backend, id) });
    } catch (err) {
      if (!(err instanceof KeyFileError)) throw err;
      damaged = err;
    }
  }
  return { ids, intact, damaged };
}

function wrongPassword(ids: string[], damaged: KeyFileError | null): Error {
  // Only when no intact key is left is a damaged one the answer: another passphrase may still open an intact one.
  if (damaged && ids.length === 1) return damaged;
  const opens = ids.length === 1 ? "it does not open the store's key" : `it opens none of the store's ${ids.length} keys`;
  return new WrongPasswordError(`wrong passphrase: ${opens}`, { keys: ids.length });
}

/** The master key, from whichever key object `password` opens first. */
export async function unlockMaster(backend: Backend, password: string): Promise<{ master: Buffer; keyId: string }> {
  const { ids, intact, damaged } = await readableKeys(backend);
  for (const { id, file } of intact) {
    const master = await openKey(file, id, password);
    if (master) return { master, keyId: id };
  }
  throw wrongPassword(ids, damaged);
}

/** The master key and every key object `password` opens: `key remove` needs to know whether it opens more than one. */
export async function keysOpenedBy(backend: Backend, password: string): Promise<{ master: Buffer; keyIds: string[]; allIds: string[] }> {
  const { ids, intact, damaged } = await readableKeys(backend);
  const opened = await Promise.all(intact.map(async ({ id, file }) => ({ id, master: await openKey(file, id, password) })));
  const hits = opened.filter((o): o is { id: string; master: Buffer } => o.master !== null);
  if (hits.length === 0) throw wrongPassword(ids, damaged);
  return { master: hits[0].master, keyIds: hits.map((h) => h.id), allIds: ids };
}

/** Deletes one key object; the callers have checked that another key still opens the store. */
export async function deleteKey(backend: Backend, id: string): Promise<void> {
  await backend.delete([keyObject(id)]);
}

const EXPORT_FORMAT = 'chunkvault-key-export';

/** `key export`: the master key itself, for a paper backup; `check` catches a copy typed back wrong. */
export interface KeyExport {
  format: typeof EXPORT_FORMAT;
  version: 1;
  store: string;
  cipher: Cipher;
  master: string;
  check: string;
}

function exportCheck(masterHex: string): string {
  return createHash('sha256').update(`${EXPORT_FORMAT} ${masterHex}`).digest('hex').slice(0, 8);
}

export function encodeKeyExport(storeId: string, cipher: Cipher, master: Buffer): string {
  const hex = master.toString('hex');
  const file: KeyExport = { format: EXPORT_FORMAT, version: 1, store: storeId, cipher, master: hex, check: exportCheck(hex) };
  return JSON.stringify(file, null, 2) + '\n';
}

/** The export's store id, cipher and master key; `name` is how messages call the file. */
export function decodeKeyExport(text: string, name: string): { store: string; cipher: Cipher; master: Buffer } {
  let file: KeyExport;
  try {
    file = JSON.parse(text) as KeyExport;
  } catch {
    throw new InvalidInputError(`${name} is not a chunkvault key export (not JSON)`, { file: name });
  }
  const hex = typeof file?.master === 'string' ? file.master.replace(/\s+/g, '').toLowerCase() : '';
  if (file?.format !== EXPORT_FORMAT || file.version !== 1 || typeof file.store !== 'string' || !isCipher(file.cipher) || !/^[0-9a-f]{64}$/.test(hex)) {
    throw new InvalidInputError(`${name} is not a chunkvault key export`, { file: name });
  }
  if (file.check !== exportCheck(hex)) throw new InvalidInputError(`${name}: the master key does not match its check value ${describeCheck(file.check)}: it was copied wrong`, { file: name });
  return { store: file.store, cipher: file.cipher, master: Buffer.from(hex, 'hex') };
}

function describeCheck(check: unknown): string {
  return typeof check === 'string' ? `'${check.slice(0, 16)}'` : '(none)';
}

async function openKey(file: KeyFile, id: string, password: string): Promise<Buffer | null> {
  const key = await scrypt(password, Buffer.from(file.salt, 'base64'), file.scrypt);
  try {
    const master = new Sealer('aes-256-gcm', key).open(Buffer.from(file.wrapped, 'base64'), Buffer.from(id));
    return master.byteLength === MASTER_KEY_BYTES ? master : null;
  } catch (err) {
    if (err instanceof SealBrokenError) return null;
    throw err;
  }
}
