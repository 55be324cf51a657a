/**
 * The master key of an encrypted store, wrapped by passphrases: `keys/<id>.json`, one object per
 * passphrase, each the master key sealed (AES-256-GCM) with a key that scrypt derives from its
 * passphrase, the scrypt parameters beside it. These and the format file are the only objects of
 * an encrypted store that are not sealed with the master key.
 */
import { randomBytes, scrypt as scryptCallback, type ScryptOptions } from 'node:crypto';
import { ChunkvaultError, InvalidInputError, KeyFileError, SealBrokenError, WrongPasswordError, storeReadError } from './errors.js';
import { MASTER_KEY_BYTES, Sealer } from './crypto.js';
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

function checkPassword(password: string): void {
  if (password.length === 0) throw new InvalidInputError('the passphrase is empty', {});
}

/** Wraps `master` with a new passphrase as a new key object; returns its id. */
export async function addKey(backend: Backend, master: Buffer, password: string, params: ScryptParams = DEFAULT_SCRYPT): Promise<string> {
  checkPassword(password);
  const id = randomBytes(8).toString('hex');
  const salt = randomBytes(16);
  const wrapped = new Sealer('aes-256-gcm', await scrypt(password, salt, params)).seal(master, Buffer.from(id));
  const file: KeyFile = { version: KEY_FILE_VERSION, kdf: 'scrypt', scrypt: params, salt: salt.toString('base64'), created: new Date().toISOString(), wrapped: wrapped.toString('base64') };
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
  if (file?.version !== KEY_FILE_VERSION || file.kdf !== 'scrypt' || !isScryptParams(file.scrypt) || typeof file.salt !== 'string' || typeof file.wrapped !== 'string') {
    throw new KeyFileError(`${name} is not a chunkvault key file: the key is damaged`, { key: id });
  }
  return file;
}

/** The master key, from whichever key object `password` opens. */
export async function unlockMaster(backend: Backend, password: string): Promise<{ master: Buffer; keyId: string }> {
  const ids = await listKeyIds(backend);
  if (ids.length === 0) throw new KeyFileError(`${objectName(backend, KEYS_PREFIX)} holds no key: the store cannot be opened`, {});
  let damaged: KeyFileError | null = null;
  for (const id of ids) {
    let file: KeyFile;
    try {
      file = await readKeyFile(backend, id);
    } catch (err) {
      if (!(err instanceof KeyFileError)) throw err;
      damaged = err;
      continue;
    }
    const master = await openKey(file, id, password);
    if (master) return { master, keyId: id };
  }
  // Only when no intact key is left is a damaged one the answer: another passphrase may still open an intact one.
  if (damaged && ids.length === 1) throw damaged;
  const opens = ids.length === 1 ? "it does not open the store's key" : `it opens none of the store's ${ids.length} keys`;
  throw new WrongPasswordError(`wrong passphrase: ${opens}`, { keys: ids.length });
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
