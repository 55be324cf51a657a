/** Human or --json output, and the one place that turns errors into messages and exit codes. */
import { ChunkvaultError } from '../engine/errors.js';

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

export function printLines(lines: string[]): void {
  if (lines.length > 0) process.stdout.write(lines.join('\n') + '\n');
}

export function table(rows: string[][]): string[] {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]))).join('  '));
}

/** Control characters a user put in a name or path are shown escaped: a message stays one line and cannot drive the terminal. */
export function oneLine(text: string): string {
  return text.replace(/[\x00-\x1f\x7f]/g, (c) => JSON.stringify(c).slice(1, -1));
}

/** Errors the user can act on print one line; anything else is a bug and says so. */
export function reportError(err: unknown, debug: boolean): number {
  if (err instanceof ChunkvaultError) {
    process.stderr.write(`chunkvault: ${oneLine(err.message)}\n`);
    if (debug) process.stderr.write(`${err.stack}\n`);
    return err.exitCode;
  }
  const e = err as NodeJS.ErrnoException;
  process.stderr.write(`chunkvault: ${oneLine(e?.message ?? String(err))}\n`);
  if (debug) process.stderr.write(`${e?.stack}\n`);
  else if (!e?.code) process.stderr.write('chunkvault: this is a bug; run again with --debug for the stack trace\n');
  return 2;
}
