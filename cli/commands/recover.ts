import type { Command } from 'commander';
import { promises as fs } from 'node:fs';
import { DEFAULT_CACHE_BYTES } from '../../fuse/chunk-cache.js';
import { InvalidInputError, describeSession, listSessions, openStore, sessionAt, type HydrationProgress, type SessionListing, type SessionRecord, type Store } from '../../engine/index.js';
import type { ServeOptions, ServingSession } from '../../fuse/recovery.js';
import { formatBytes, parseSize } from '../../store/size.js';
import { printJson, printLines, table } from '../output.js';
import { progress } from '../progress.js';
import { openStoreFrom, storeAccess, withStore, type StoreOptions } from '../store-option.js';

interface RecoverFlags extends StoreOptions {
  disk?: string;
  to?: string;
  maxRate?: string;
  state?: string;
  cache?: string;
  list?: boolean;
  stop?: string;
  resume?: string;
  discard?: string;
  json?: boolean;
}

/** JSON progress lines at most this often. */
const JSON_PROGRESS_MS = 1000;

function maxRate(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const rate = Number(text);
  if (text.trim() === '' || !Number.isFinite(rate)) throw new InvalidInputError(`--max-rate: '${text}' is not a number of MB/s`, { flag: '--max-rate', value: text });
  return rate;
}

/** Which of the five things the command was asked to do; more than one, or none, is refused. */
function action(ref: string | undefined, dir: string | undefined, options: RecoverFlags): 'start' | 'list' | 'stop' | 'resume' | 'discard' {
  const asked = (['list', 'stop', 'resume', 'discard'] as const).filter((a) => options[a] !== undefined);
  if (ref !== undefined || dir !== undefined) {
    if (asked.length > 0) throw new InvalidInputError(`recover REF DIR starts a session; --${asked[0]} takes no REF (nothing was done)`, {});
    if (dir === undefined) throw new InvalidInputError('recover REF --disk LABEL DIR: DIR, the directory to serve the image in, is missing', {});
    return 'start';
  }
  if (asked.length !== 1) throw new InvalidInputError('recover needs REF --disk LABEL DIR to start a session, or one of --list, --stop DIR, --resume DIR, --discard DIR', {});
  return asked[0];
}

/** A session's own store; a --store that names another is refused. */
async function storeOf(record: SessionRecord, options: StoreOptions): Promise<Store> {
  const given = options.store ?? process.env.CHUNKVAULT_STORE;
  if (given !== undefined && (await fs.realpath(given).catch(() => given)) !== record.store) {
    throw new InvalidInputError(`the session on ${record.mountpoint} belongs to the store ${record.store}, not ${given}`, { store: given });
  }
  return openStore(record.store, storeAccess(options));
}

function describeListing(s: SessionListing): string[] {
  return [s.mountpoint, s.status + (s.pid ? ` (pid ${s.pid})` : ''), s.restorePoint, s.disk, formatBytes(s.size), formatBytes(s.bytesWritten), s.target ? `${formatBytes(s.bytesHydrated)}${s.hydrated ? ' (complete)' : ''}` : '-', s.target ?? '-'];
}

function printList(sessions: SessionListing[], json: boolean): void {
  if (json) return printJson(sessions);
  if (sessions.length === 0) return printLines(['no recovery sessions']);
  printLines(table([['DIR', 'STATUS', 'RESTORE POINT', 'DISK', 'SIZE', 'WRITTEN', 'HYDRATED', 'TARGET'], ...sessions.map(describeListing)]));
}

function jsonLine(value: unknown): void {
  process.stdout.write(JSON.stringify(value) + '\n');
}

function rateOf(p: HydrationProgress): number {
  return p.bytesHydrated / 1e6 / Math.max(p.seconds, 1e-9);
}

/** What serving prints: human lines (progress on a TTY) or JSON lines. */
function reporter(json: boolean): { progress(p: HydrationProgress): void; hydrated(p: HydrationProgress, target: string): void } {
  if (json) {
    let last = 0;
    return {
      progress(p) {
        // The 'hydrated' line reports the end.
        if (p.complete || Date.now() - last < JSON_PROGRESS_MS) return;
        last = Date.now();
        const rate = rateOf(p);
        jsonLine({ event: 'progress', ...p, mbps: rate, etaSeconds: rate > 0 ? (p.size - p.bytesPresent) / 1e6 / rate : null });
      },
      hydrated: (p, target) => jsonLine({ event: 'hydrated', target, ...p, mbps: rateOf(p) }),
    };
  }
  const bar = progress('hydrate');
  return {
    progress: (p) => bar.update(p.bytesHydrated, p.bytesHydrated + p.size - p.bytesPresent),
    hydrated(p, target) {
      bar.done();
      printLines([`hydrated: ${target} holds the whole disk now (${formatBytes(p.bytesHydrated)} copied in ${p.seconds.toFixed(1)} s, ${rateOf(p).toFixed(0)} MB/s); point the VM at it and --stop the session`]);
    },
  };
}

type Recovery = typeof import('../../fuse/recovery.js');
type Starter = (recovery: Recovery, options: ServeOptions) => Promise<ServingSession>;

/** Starts or resumes serving, prints what it serves and its hydration, and returns once unmounted. */
async function serve(options: RecoverFlags, start: Starter): Promise<void> {
  const cacheBytes = options.cache === undefined ? DEFAULT_CACHE_BYTES : parseSize(options.cache, '--cache');
  const json = options.json === true;
  const report = reporter(json);
  // fuse-native is loaded only by the commands that serve FUSE.
  const recovery = await import('../../fuse/recovery.js');
  const { serveUntilSignalled } = await import('../../fuse/mount.js');
  const session = await start(recovery, { cacheBytes, maxRateMBps: maxRate(options.maxRate), onProgress: (p) => report.progress(p) });
  const { record } = session;
  if (json) jsonLine({ event: 'serving', image: session.image, mountpoint: record.mountpoint, state: record.state, restorePoint: record.point, disk: record.label, size: record.size, target: record.target });
  else printLines([`serving ${session.image} (restore point ${record.point} disk ${record.label}, ${formatBytes(record.size)}; state in ${record.state}${record.target ? `; hydrating into ${record.target}` : ''})`]);
  session.hydration?.then((p) => p.complete && report.hydrated(p, record.target!), () => undefined);
  await serveUntilSignalled(session);
  if (json) jsonLine({ event: 'stopped', mountpoint: record.mountpoint, state: record.state });
  // As for mount: fuse-native may keep a native handle referenced after an unmount from outside.
  process.exit(0);
}

async function stopOrDiscard(dir: string, options: RecoverFlags, discard: boolean): Promise<void> {
  const record = await sessionAt(dir);
  const store = await storeOf(record, options);
  const { stopRecovery, discardRecovery } = await import('../../fuse/recovery.js');
  if (discard) await discardRecovery(store, record);
  else await stopRecovery(store, record);
  if (options.json) return printJson(discard ? { discarded: record.mountpoint, state: record.state, target: record.target } : await describeSession(store, record));
  printLines([discard ? `discarded the session on ${record.mountpoint}: ${record.state} is deleted${record.target ? `; ${record.target} is kept` : ''}` : `stopped the session on ${record.mountpoint}; its state is kept in ${record.state} (--resume ${record.mountpoint} serves it again)`]);
}

export function register(program: Command): void {
  withStore(program.command('recover').description('serve a disk of a restore point as a writable image at once (a recovery session), optionally copying it onto TARGET meanwhile'))
    .argument('[ref]', 'restore point: id, id prefix, latest or NAME@latest')
    .argument('[dir]', 'an existing empty directory to serve DIR/<label>.img in')
    .option('--disk <label>', 'which disk, when the restore point has several')
    .option('--to <target>', 'file or block device: guest writes go there, and the rest of the disk is copied there in the background (hydration)')
    .option('--max-rate <MB/s>', "cap on hydration's pace")
    .option('--state <dir>', 'where the session keeps its delta and bitmaps (created; default: DIR.chunkvault-session beside DIR)')
    .option('--cache <size>', `memory for decoded chunks (default: ${formatBytes(DEFAULT_CACHE_BYTES)})`)
    .option('--list', 'list the recovery sessions of the store')
    .option('--stop <dir>', 'unmount the session on DIR and keep its state')
    .option('--resume <dir>', 'serve the session on DIR again (after --stop, a crash or a reboot)')
    .option('--discard <dir>', 'stop the session on DIR and delete its state (a TARGET is kept)')
    .option('--json', 'machine-readable output (JSON lines while serving)')
    .action(async (ref: string | undefined, dir: string | undefined, options: RecoverFlags) => {
      switch (action(ref, dir, options)) {
        case 'start': {
          const store = await openStoreFrom(options);
          return serve(options, (recovery, serveOptions) => recovery.startRecovery(store, { ref: ref!, label: options.disk, mountpoint: dir!, state: options.state, target: options.to }, serveOptions));
        }
        case 'list':
          return printList(await listSessions(await openStoreFrom(options)), options.json === true);
        case 'resume': {
          const record = await sessionAt(options.resume!);
          const store = await storeOf(record, options);
          return serve(options, (recovery, serveOptions) => recovery.resumeRecovery(store, record, serveOptions));
        }
        case 'stop':
          return stopOrDiscard(options.stop!, options, false);
        case 'discard':
          return stopOrDiscard(options.discard!, options, true);
      }
    });
}
