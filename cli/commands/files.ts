import type { Command } from 'commander';
import { InvalidInputError } from '../../engine/errors.js';
import { formatBytes } from '../../store/size.js';
import { oneLine, printJson, printLines, table } from '../output.js';
import { backendReport, openStoreFrom, positiveInt, withStore, type StoreOptions } from '../store-option.js';
import type { FileEntry, OpenFilesystem } from '../../fuse/files.js';

interface FilesFlags extends StoreOptions {
  get?: boolean;
  to?: string;
  timeout?: number;
  json?: boolean;
}

const TYPE_CHARS: Record<FileEntry['type'], string> = { file: '-', dir: 'd', symlink: 'l', char: 'c', block: 'b', fifo: 'p', socket: 's' };

/** `ls -l` style: drwxr-xr-x, with s/S and t/T for setuid, setgid and sticky. */
export function modeString(type: FileEntry['type'], mode: number): string {
  const triplet = (bits: number, special: boolean, mark: string): string =>
    (bits & 4 ? 'r' : '-') + (bits & 2 ? 'w' : '-') + (special ? (bits & 1 ? mark : mark.toUpperCase()) : bits & 1 ? 'x' : '-');
  return TYPE_CHARS[type] + triplet(mode >> 6, (mode & 0o4000) !== 0, 's') + triplet(mode >> 3, (mode & 0o2000) !== 0, 's') + triplet(mode, (mode & 0o1000) !== 0, 't');
}

function listing(entries: FileEntry[]): string[] {
  if (entries.length === 0) return [];
  return table(
    entries.map((e) => [
      modeString(e.type, e.mode),
      String(e.uid),
      String(e.gid),
      String(e.size).padStart(12),
      e.mtime.slice(0, 19).replace('T', ' '),
      oneLine(e.name) + (e.target === null ? '' : ` -> ${oneLine(e.target)}`),
    ]),
  );
}

function describe(fs: OpenFilesystem): Record<string, unknown> {
  return { restorePoint: fs.point.id, disk: fs.disk, partition: fs.partition ?? null, filesystem: fs.type, reader: fs.reader };
}

/** Until the work has torn everything down, SIGINT and SIGTERM only ask it to stop. */
async function stoppable<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const stop = (signal: NodeJS.Signals): void => controller.abort(signal);
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  try {
    return await work(controller.signal);
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

export function register(program: Command): void {
  withStore(program.command('files').description('list, or extract with --get, the files inside a disk image of a restore point'))
    .argument('<target>', 'REF[:LABEL[:pN]]: restore point (id, id prefix, latest, NAME@latest), disk label, partition')
    .argument('[paths...]', 'a directory to list (default /); with --get, the files and trees to extract')
    .option('--get', 'extract PATH... into --to DIR, keeping modes, owners, times, symlinks, hard links and holes')
    .option('--to <dir>', 'where --get puts what it extracts (created if absent; nothing in it is overwritten)')
    .option('--timeout <seconds>', 'how long the filesystem reader may take to open, list, or copy nothing (default: 60)', positiveInt('--timeout'))
    .option('--json', 'machine-readable output (with --get: the sha256 of every regular file written)')
    .action(async (targetText: string, pathTexts: string[], options: FilesFlags) => {
      if (options.get && (pathTexts.length === 0 || options.to === undefined)) throw new InvalidInputError('files --get: give the PATHs to extract and --to DIR', {});
      if (!options.get && options.to !== undefined) throw new InvalidInputError('files: --to goes with --get', {});
      if (!options.get && pathTexts.length > 1) throw new InvalidInputError('files: list one PATH at a time (or extract several with --get)', {});
      // fuse-native is loaded only by the commands that serve FUSE.
      const { checkTargetDir, fsPath, parseFilesTarget, withFilesystem } = await import('../../fuse/files.js');
      const target = parseFilesTarget(targetText);
      const paths = pathTexts.length === 0 ? ['/'] : pathTexts.map(fsPath);
      const store = await openStoreFrom(options);
      const dir = options.get ? await checkTargetDir(store, options.to!, paths) : null;
      const timeoutMs = options.timeout === undefined ? undefined : options.timeout * 1000;
      await stoppable((signal) =>
        withFilesystem(store, target, { timeoutMs, signal }, async (fs) => {
          if (dir === null) {
            const entries = await fs.list(paths[0]);
            return options.json ? printJson({ ...describe(fs), path: paths[0], entries, ...backendReport(store) }) : printLines(listing(entries));
          }
          const files = await fs.extract(paths, dir, options.json === true);
          if (options.json) return printJson({ ...describe(fs), to: dir, files, ...backendReport(store) });
          const bytes = files.reduce((sum, f) => sum + f.size, 0);
          printLines([`extracted ${paths.join(' ')} (${files.length} files, ${formatBytes(bytes)}) from ${fs.type} on restore point ${fs.point.id} disk ${fs.disk} to ${dir}`]);
        }),
      );
    });
}
