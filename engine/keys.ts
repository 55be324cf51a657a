/**
 * Key management of an encrypted store: the passphrases that wrap its one master key. Every
 * change asks for what it needs (the current passphrase, the new one) and checks it before it
 * writes, so a refusal leaves the store as it was. These commands read only the format file and
 * keys/: they need neither the index nor the store's data locks. A change holds a `keys` lock,
 * which only another change waits for, from before it lists the keys until it has written.
 */
import { promises as fs } from 'node:fs';
import { backendAt } from '../store/backend/open.js';
import { readFormat, type StoreFormat } from '../store/format.js';
import { acquireLock } from '../store/lock.js';
import { checkPassword, decodeKeyExport, deleteKey, encodeKeyExport, keysOpenedBy, readKeyFile, unlockMaster, addKey, type ScryptParams } from '../store/keys.js';
import type { Backend } from '../store/backend/backend.js';
import { InvalidInputError, KeyFileError, KeyInUseError, LastKeyError, PasswordRequiredError, UnknownKeyError, errnoOf } from './errors.js';
import type { StoreAccess } from './index.js';

/** What `key list` shows of one key object; `problem` instead of the rest when it is damaged. */
export interface KeyInfo {
  id: string;
  /** Whether the passphrase given opens this key. */
  current: boolean;
  created?: string;
  host?: string;
  user?: string;
  kdf?: { name: 'scrypt' } & ScryptParams;
  problem?: string;
}

/** A passphrase for a new key: `key add`, `key passwd`, `--from-export`. */
export type NewPassword = () => Promise<string>;

interface EncryptedStore {
  backend: Backend;
  format: StoreFormat & { encryption: NonNullable<StoreFormat['encryption']> };
}

/** Runs `work` on the store at `location`, which must be encrypted; closes its backend after. */
async function withEncryptedStore<T>(location: string, access: StoreAccess, work: (store: EncryptedStore) => Promise<T>): Promise<T> {
  const backend = backendAt(location, access);
  try {
    const format = await readFormat(backend);
    if (!format.encryption) throw new InvalidInputError(`${backend.location} is not encrypted: it has no keys`, { store: backend.location });
    return await work({ backend, format: { ...format, encryption: format.encryption } });
  } finally {
    await backend.close();
  }
}

/** As withEncryptedStore, for `command`, which changes the keys: under the store's keys lock. */
function changingKeys<T>(command: string, location: string, access: StoreAccess, work: (store: EncryptedStore) => Promise<T>): Promise<T> {
  return withEncryptedStore(location, access, async (store) => {
    const lock = await acquireLock(store.backend, command, { kind: 'keys' });
    try {
      return await work(store);
    } finally {
      await lock.release();
    }
  });
}

async function currentPassword(store: EncryptedStore, access: StoreAccess): Promise<string> {
  if (!access.password) throw new PasswordRequiredError(`${store.backend.location} is encrypted: give its passphrase (CHUNKVAULT_PASSWORD, --password-file, or a terminal)`, { store: store.backend.location });
  const password = await access.password();
  checkPassword(password);
  return password;
}

async function checkedNewPassword(newPassword: NewPassword): Promise<string> {
  const password = await newPassword();
  checkPassword(password);
  return password;
}

async function describeKey(backend: Backend, id: string, opened: string[]): Promise<KeyInfo> {
  try {
    const file = await readKeyFile(backend, id);
    return { id, current: opened.includes(id), created: file.created, host: file.host, user: file.user, kdf: { name: 'scrypt', ...file.scrypt } };
  } catch (err) {
    if (!(err instanceof KeyFileError)) throw err;
    return { id, current: false, problem: err.message };
  }
}

/** Every key object, marked where the passphrase opens it; oldest first. */
export async function listKeys(location: string, access: StoreAccess): Promise<KeyInfo[]> {
  return withEncryptedStore(location, access, async (store) => {
    const { keyIds, allIds } = await keysOpenedBy(store.backend, await currentPassword(store, access));
    const keys = await Promise.all(allIds.map((id) => describeKey(store.backend, id, keyIds)));
    return keys.sort((a, b) => (a.created ?? '').localeCompare(b.created ?? '') || a.id.localeCompare(b.id));
  });
}

/** A new key for the master key the current passphrase opens; returns its id. */
export async function addPassword(location: string, access: StoreAccess, newPassword: NewPassword, scrypt?: ScryptParams): Promise<string> {
  return changingKeys('key add', location, access, async (store) => {
    const { master } = await unlockMaster(store.backend, await currentPassword(store, access));
    return addKey(store.backend, master, await checkedNewPassword(newPassword), scrypt);
  });
}

/**
 * Removes key `id`. The rule: the passphrase given must open a key other than `id`, so whoever
 * removes a key shows they keep a way in; the store's only key is never removed.
 */
export async function removeKey(location: string, access: StoreAccess, id: string): Promise<void> {
  return changingKeys(`key remove ${id}`, location, access, async (store) => {
    const { keyIds, allIds: ids } = await keysOpenedBy(store.backend, await currentPassword(store, access));
    if (!ids.includes(id)) throw new UnknownKeyError(`no key ${id} in ${store.backend.location} (key list shows its keys)`, { key: id });
    if (ids.length === 1) throw new LastKeyError(`key ${id} is the store's only key: without it nothing opens the store (key add another first)`, { key: id });
    if (keyIds.every((k) => k === id)) {
      throw new KeyInUseError(`key ${id} is the one this passphrase opens: give the passphrase of another key to remove it, or use key passwd`, { key: id });
    }
    await deleteKey(store.backend, id);
  });
}

/**
 * Replaces the key the current passphrase opens by one for the new passphrase: the new key is
 * written first and the old one deleted after, so a crash between leaves both, each opening the store.
 */
export async function changePassword(location: string, access: StoreAccess, newPassword: NewPassword, scrypt?: ScryptParams): Promise<{ added: string; removed: string }> {
  return changingKeys('key passwd', location, access, async (store) => {
    const { master, keyId } = await unlockMaster(store.backend, await currentPassword(store, access));
    const added = await addKey(store.backend, master, await checkedNewPassword(newPassword), scrypt);
    await deleteKey(store.backend, keyId);
    return { added, removed: keyId };
  });
}

/** Writes the master key to a new file `to` (mode 0600, never over an existing file). */
export async function exportKey(location: string, access: StoreAccess, to: string): Promise<void> {
  return withEncryptedStore(location, access, async (store) => {
    const { master } = await unlockMaster(store.backend, await currentPassword(store, access));
    const file = await fs.open(to, 'wx', 0o600).catch((err: unknown) => {
      const why = errnoOf(err) === 'EEXIST' ? 'it exists, and an export never overwrites a file' : (errnoOf(err) ?? String(err));
      throw new InvalidInputError(`--to ${to}: ${why}`, { file: to });
    });
    try {
      await file.writeFile(encodeKeyExport(store.format.id ?? '', store.format.encryption.cipher, master));
      await file.sync();
    } finally {
      await file.close();
    }
  });
}

/** A new key from an export file: the way back in when every passphrase is lost. Needs no current passphrase. */
export async function addPasswordFromExport(location: string, access: StoreAccess, exportFile: string, newPassword: NewPassword, scrypt?: ScryptParams): Promise<string> {
  return changingKeys('key add --from-export', location, access, async (store) => {
    const text = await fs.readFile(exportFile, 'utf8').catch((err: unknown) => {
      throw new InvalidInputError(`--from-export: cannot read ${exportFile} (${errnoOf(err) ?? String(err)})`, { file: exportFile });
    });
    const exported = decodeKeyExport(text, exportFile);
    if (exported.store !== store.format.id || exported.cipher !== store.format.encryption.cipher) {
      throw new InvalidInputError(`${exportFile} is the key of store ${exported.store}, not of ${store.backend.location} (${store.format.id})`, { file: exportFile });
    }
    return addKey(store.backend, exported.master, await checkedNewPassword(newPassword), scrypt);
  });
}
