import type { Command } from 'commander';
import { listContents, type DiskContents, type FilesystemInfo, type PointContents } from '../../engine/index.js';
import { formatBytes } from '../../store/size.js';
import { oneLine, printJson, printLines, table } from '../output.js';
import { backendReport, openStoreFrom, withStore, type StoreOptions } from '../store-option.js';

function filesystemText(fs: FilesystemInfo | null): string {
  if (fs === null) return '-';
  return [fs.type, fs.label === undefined ? '' : `"${oneLine(fs.label)}"`, fs.uuid ?? ''].filter((s) => s !== '').join(' ');
}

function diskLines(disk: DiskContents): string[] {
  const head = `disk ${oneLine(disk.label)}  ${formatBytes(disk.size)}  ${disk.scheme === 'none' ? `no partition table  ${filesystemText(disk.filesystem)}` : disk.scheme}`;
  const rows = disk.partitions.map((p) => [String(p.number), oneLine(p.type), String(p.start / 512), formatBytes(p.size), p.name === undefined ? '' : oneLine(p.name), filesystemText(p.filesystem)]);
  const problems = disk.problems.map((p) => `  PROBLEM ${p.partition === null ? '' : `partition ${p.partition}: `}${oneLine(p.problem)}`);
  const partitions = rows.length === 0 ? [] : table([['  #', 'TYPE', 'START', 'SIZE', 'NAME', 'FILESYSTEM'], ...rows.map(([n, ...rest]) => [`  ${n}`, ...rest])]);
  return [head, ...partitions, ...problems];
}

function describe(contents: PointContents): string[] {
  return [`restore point ${contents.id} (${oneLine(contents.name)}, ${contents.time})`, ...contents.disks.flatMap(diskLines)];
}

export function register(program: Command): void {
  withStore(program.command('ls').description("list a restore point's disks, their partitions and filesystems"))
    .argument('<ref>', 'restore point: id, id prefix, latest or NAME@latest')
    .option('--disk <label>', 'only this disk')
    .option('--json', 'machine-readable output')
    .action(async (ref: string, options: StoreOptions & { disk?: string; json?: boolean }) => {
      const store = await openStoreFrom(options);
      const contents = await listContents(store, ref, options.disk);
      if (options.json) printJson({ ...contents, ...backendReport(store) });
      else printLines(describe(contents));
    });
}
