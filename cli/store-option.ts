import type { Command } from 'commander';
import { InvalidInputError } from '../engine/errors.js';
import { openStore, type Store } from '../engine/index.js';

export interface StoreOptions {
  store?: string;
}

export function withStore(command: Command): Command {
  return command.option('--store <dir>', 'store directory (default: $CHUNKVAULT_STORE)');
}

export function storeDir(options: StoreOptions): string {
  const dir = options.store ?? process.env.CHUNKVAULT_STORE;
  if (!dir) throw new InvalidInputError('no store given: pass --store DIR or set CHUNKVAULT_STORE', {});
  return dir;
}

export function openStoreFrom(options: StoreOptions): Promise<Store> {
  return openStore(storeDir(options));
}

/** Parses a positive integer option, for commander. */
export function positiveInt(what: string, max = Number.MAX_SAFE_INTEGER): (text: string) => number {
  return (text) => {
    const n = Number(text);
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1) throw new InvalidInputError(`${what}: '${text}' is not a positive whole number`, { value: text });
    if (n > max) throw new InvalidInputError(`${what}: '${text}' is more than ${max}`, { value: text, max });
    return n;
  };
}

/** Worker threads: each one is a thread and buffers; far more than cores only costs memory (and piscina would try to start them all). */
export const MAX_THREADS = 256;
export const threadCount = positiveInt('--threads', MAX_THREADS);
