/**
 * Passphrases: from a file's first line, from the environment, or typed on the terminal. Typed
 * ones are read with the terminal in raw mode, so nothing is echoed, and never pass through argv.
 */
import { promises as fs } from 'node:fs';
import { InterruptedError, InvalidInputError, PasswordRequiredError, errnoOf } from '../engine/errors.js';

export type PasswordSource = () => Promise<string>;

/** The file's first line, without its line ending: what `echo secret > file` wrote. */
async function passwordFromFile(option: string, file: string): Promise<string> {
  const text = await fs.readFile(file, 'utf8').catch((err: unknown) => {
    throw new InvalidInputError(`${option}: cannot read ${file} (${errnoOf(err) ?? String(err)})`, { file });
  });
  return text.split(/\r?\n/)[0];
}

const BACKSPACES = new Set(['\x7f', '\b']);

/** Reads one line from the terminal on stdin without echoing it; the prompt goes to stderr. */
function promptHidden(prompt: string): Promise<string> {
  const input = process.stdin;
  return new Promise((resolve, reject) => {
    let typed: string[] = [];
    const finish = (error: Error | null): void => {
      input.off('data', onData);
      input.setRawMode(false);
      input.pause();
      process.stderr.write('\n');
      if (error) reject(error);
      else resolve(typed.join(''));
    };
    const onData = (data: Buffer): void => {
      for (const char of data.toString('utf8')) {
        if (char === '\r' || char === '\n') return finish(null);
        // Raw mode turns Ctrl-C and Ctrl-D into characters: they stop the prompt as they would a shell's.
        if (char === '\x03') return finish(new InterruptedError('SIGINT'));
        if (char === '\x04') return finish(new PasswordRequiredError('no passphrase typed (end of input)', {}));
        if (BACKSPACES.has(char)) typed = typed.slice(0, -1);
        else if (char >= ' ') typed.push(char);
      }
    };
    // Raw mode before the prompt: whatever is typed once the prompt shows is never echoed.
    input.setRawMode(true);
    input.on('data', onData);
    input.resume();
    process.stderr.write(prompt);
  });
}

/** A new passphrase typed twice; a mismatch is refused, before anything is written. */
async function promptNew(what: string): Promise<string> {
  const first = await promptHidden(`${what}: `);
  const again = await promptHidden(`repeat ${what}: `);
  if (first !== again) throw new InvalidInputError(`the two ${what}s typed differ: nothing was changed`, {});
  return first;
}

function terminal(): boolean {
  return process.stdin.isTTY === true;
}

/** A store's passphrase: --password-file, else $CHUNKVAULT_PASSWORD, else the terminal; none when there is no terminal. */
export function passwordSource(file: string | undefined): PasswordSource | undefined {
  if (file !== undefined) return () => passwordFromFile('--password-file', file);
  const fromEnv = process.env.CHUNKVAULT_PASSWORD;
  if (fromEnv !== undefined) return () => Promise.resolve(fromEnv);
  if (terminal()) return () => promptHidden('passphrase: ');
  return undefined;
}

/** The first passphrase of a new store: as passwordSource, but typed twice on a terminal. */
export function initPasswordSource(file: string | undefined): PasswordSource | undefined {
  if (file === undefined && process.env.CHUNKVAULT_PASSWORD === undefined && terminal()) return () => promptNew('passphrase');
  return passwordSource(file);
}

/** A new key's passphrase: --new-password-file, else $CHUNKVAULT_NEW_PASSWORD, else typed twice on the terminal. */
export function newPasswordSource(file: string | undefined): PasswordSource {
  if (file !== undefined) return () => passwordFromFile('--new-password-file', file);
  const fromEnv = process.env.CHUNKVAULT_NEW_PASSWORD;
  if (fromEnv !== undefined) return () => Promise.resolve(fromEnv);
  if (terminal()) return () => promptNew('new passphrase');
  return () => Promise.reject(new PasswordRequiredError('a new passphrase is needed: --new-password-file, CHUNKVAULT_NEW_PASSWORD, or a terminal', {}));
}
