import type { Command } from 'commander';
import { InvalidInputError } from '../engine/errors.js';
import { passwordSource } from './password.js';
import { openStore, type Store, type StoreAccess } from '../engine/index.js';
import { S3Backend } from '../store/backend/s3.js';
import type { S3Stats } from '../store/backend/s3-client.js';

export interface StoreOptions {
  store?: string;
  s3Endpoint?: string;
  s3Region?: string;
  cacheDir?: string;
  passwordFile?: string;
}

export function withStore(command: Command): Command {
  return command
    .option('--store <dir|s3://BUCKET/PREFIX>', 'store directory or S3 location (default: $CHUNKVAULT_STORE)')
    .option('--s3-endpoint <url>', 'S3 endpoint of an s3:// store (default: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, ~/.aws/config)')
    .option('--s3-region <region>', 'S3 region of an s3:// store (default: $AWS_REGION, ~/.aws/config, us-east-1)')
    .option('--cache-dir <dir>', "this host's index cache of an s3:// store (default: ${XDG_CACHE_HOME:-~/.cache}/chunkvault/<store id>)")
    .option('--password-file <file>', "an encrypted store's passphrase: the file's first line (default: $CHUNKVAULT_PASSWORD, else asked on a terminal)");
}

export function storeDir(options: StoreOptions): string {
  const dir = options.store ?? process.env.CHUNKVAULT_STORE;
  if (!dir) throw new InvalidInputError('no store given: pass --store DIR or set CHUNKVAULT_STORE (a directory or s3://BUCKET/PREFIX)', {});
  return dir;
}

export function storeAccess(options: StoreOptions): StoreAccess {
  return { endpoint: options.s3Endpoint, region: options.s3Region, cacheDir: options.cacheDir, password: passwordSource(options.passwordFile) };
}

export function openStoreFrom(options: StoreOptions): Promise<Store> {
  return openStore(storeDir(options), storeAccess(options));
}

/**
 * What `--json` adds about the store's requests: `{ backend: {requests, bytesSent, bytesReceived, retries} }`
 * for an s3 store (this process's requests, worker threads' included where they report them), nothing for a
 * local one, whose file I/O is not counted.
 */
export function backendReport(store: Store): { backend?: S3Stats } {
  return store.backend instanceof S3Backend ? { backend: store.backend.stats() } : {};
}

/** The same counters as one human line (none for a local store). */
export function backendLine(store: Store): string[] {
  const { backend } = backendReport(store);
  if (backend === undefined) return [];
  const requests = Object.entries(backend.requests).map(([kind, n]) => `${kind} ${n}`).join(', ');
  return [`  backend: ${requests}; sent ${backend.bytesSent} B, received ${backend.bytesReceived} B, ${backend.retries} retries`];
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
