/**
 * Plain text: `OFFSET LENGTH` in bytes per line, decimal or 0x hex, separated by spaces or
 * tabs; `#` starts a comment to the end of the line; blank lines are skipped.
 */
import { InvalidInputError } from './errors.js';
import { parseNumber, significantLines, type CbtInput, type Parsed } from './cbt-input.js';

export function parseTextList(input: CbtInput, file: string): Parsed {
  const changed = significantLines(input.text, true).map(({ line, number }) => {
    const where = `line ${number}`;
    const fields = line.split(/\s+/);
    if (fields.length !== 2) throw new InvalidInputError(`${file}: ${where}: expected OFFSET LENGTH, got ${JSON.stringify(line.slice(0, 60))}`, { file, where });
    return { offset: parseNumber(fields[0], file, `${where} offset`, 0, true), length: parseNumber(fields[1], file, `${where} length`, 1, true), where };
  });
  return { changed, discarded: [], warnings: [] };
}
