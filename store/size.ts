import { InvalidInputError } from './errors.js';

const UNITS: Record<string, number> = { '': 1, B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/** Parses `1M`, `256K`, `4GiB`, `65536` into bytes; rejects anything else with the option's name. */
export function parseSize(text: string, what: string): number {
  const m = /^(\d+)\s*([KMGT]?)(?:I?B)?$/i.exec(String(text).trim());
  if (!m) throw new InvalidInputError(`${what}: '${text}' is not a size (use bytes or a K, M, G, T suffix)`, { what, value: text });
  const bytes = Number(m[1]) * UNITS[m[2].toUpperCase()];
  if (!Number.isSafeInteger(bytes)) throw new InvalidInputError(`${what}: '${text}' is too large`, { what, value: text });
  return bytes;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
}
