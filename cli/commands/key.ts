import type { Command } from 'commander';
import { addPassword, addPasswordFromExport, changePassword, exportKey, listKeys, removeKey, type KeyInfo } from '../../engine/index.js';
import { oneLine, printJson, printLines, table } from '../output.js';
import { newPasswordSource } from '../password.js';
import { storeAccess, storeDir, withStore, type StoreOptions } from '../store-option.js';

interface KeyFlags extends StoreOptions {
  json?: boolean;
  newPasswordFile?: string;
}

function kdfOf(key: KeyInfo): string {
  return key.kdf ? `${key.kdf.name} N=${key.kdf.N} r=${key.kdf.r} p=${key.kdf.p}` : '';
}

function keyRows(keys: KeyInfo[]): string[] {
  const rows = keys.map((k) => (k.problem ? [k.id, 'DAMAGED', '', '', oneLine(k.problem)] : [`${k.id}${k.current ? ' *' : ''}`, k.created ?? '', oneLine(k.host ?? '?'), oneLine(k.user ?? '?'), kdfOf(k)]));
  return [...table([['ID', 'CREATED', 'HOST', 'USER', 'KDF'], ...rows]), '(* opened by the passphrase given)'];
}

/** The options every key command has: the store's, --json, and where a new passphrase comes from. */
function keyCommand(parent: Command, name: string, description: string, withNewPassword: boolean): Command {
  const command = withStore(parent.command(name).description(description)).option('--json', 'machine-readable output');
  if (!withNewPassword) return command;
  return command.option('--new-password-file <file>', "the new key's passphrase: the file's first line (default: $CHUNKVAULT_NEW_PASSWORD, else asked twice on a terminal)");
}

export function register(program: Command): void {
  const key = program.command('key').description("an encrypted store's passphrases: list, add, remove, passwd, export");

  keyCommand(key, 'list', 'list the keys (one per passphrase) that open the master key', false).action(async (options: KeyFlags) => {
    const keys = await listKeys(storeDir(options), storeAccess(options));
    if (options.json) printJson(keys);
    else printLines(keyRows(keys));
  });

  keyCommand(key, 'add', 'add a passphrase (a new key for the same master key)', true)
    .option('--from-export <file>', 'take the master key from a `key export` file instead of the current passphrase: the way back in when every passphrase is lost')
    .action(async (options: KeyFlags & { fromExport?: string }) => {
      const newPassword = newPasswordSource(options.newPasswordFile);
      const id = options.fromExport === undefined
        ? await addPassword(storeDir(options), storeAccess(options), newPassword)
        : await addPasswordFromExport(storeDir(options), storeAccess(options), options.fromExport, newPassword);
      if (options.json) printJson({ added: id });
      else printLines([`added key ${id}`]);
    });

  keyCommand(key, 'remove', 'remove a key; the passphrase given must open another key, and the only key is never removed', false)
    .argument('<id>', 'the key, as key list shows it')
    .action(async (id: string, options: KeyFlags) => {
      await removeKey(storeDir(options), storeAccess(options), id);
      if (options.json) printJson({ removed: id });
      else printLines([`removed key ${id}`]);
    });

  keyCommand(key, 'passwd', 'change the passphrase: add a key for the new one, then remove the key the old one opened', true).action(async (options: KeyFlags) => {
    const change = await changePassword(storeDir(options), storeAccess(options), newPasswordSource(options.newPasswordFile));
    if (options.json) printJson(change);
    else printLines([`added key ${change.added}, removed key ${change.removed}`]);
  });

  keyCommand(key, 'export', 'write the master key to a new file (mode 0600) for a paper backup; anyone holding it can read the store', false)
    .requiredOption('--to <file>', 'the file to create (never overwritten)')
    .action(async (options: KeyFlags & { to: string }) => {
      await exportKey(storeDir(options), storeAccess(options), options.to);
      if (options.json) printJson({ exported: options.to });
      else printLines([`wrote the master key to ${options.to}: keep it offline; key add --from-export ${options.to} regains access`]);
    });
}
