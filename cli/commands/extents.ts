import type { Command } from 'commander';
import { fileExtentMap, type FileExtentMap } from '../../engine/index.js';
import { formatBytes } from '../../store/size.js';
import { printJson, printLines, table } from '../output.js';

function describe(map: FileExtentMap): string[] {
  const data = map.extents.reduce((sum, e) => sum + e.length, 0);
  const rows = map.extents.map((e) => [String(e.offset), String(e.length), String(e.sourceOffset)]);
  return [
    `${map.file}: ${formatBytes(map.size)}, ${formatBytes(data)} of data in ${map.extents.length} extents on ${map.device}`,
    ...table([['OFFSET', 'LENGTH', 'DEVICE OFFSET'], ...rows]),
  ];
}

export function register(program: Command): void {
  program
    .command('extents')
    .description("print a file's extents on its filesystem's block device: the --extents table to back it up from that device (or a snapshot of it)")
    .argument('<file>', 'a regular file on a mounted filesystem')
    .option('--json', 'the table as JSON, ready for backup --extents')
    .action(async (file: string, options: { json?: boolean }) => {
      const map = await fileExtentMap(file);
      if (options.json) printJson(map);
      else printLines(describe(map));
    });
}
