import { InvalidInputError } from './errors.js';
import { LABEL_PATTERN as LABEL, NAME_PATTERN as NAME } from '../store/catalog.js';

export function checkLabel(label: string): string {
  if (!LABEL.test(label)) {
    throw new InvalidInputError(`disk label '${label}' is invalid: use letters, digits, '.', '_' or '-', starting with a letter or digit`, { label });
  }
  return label;
}

export function checkName(name: string): string {
  if (!NAME.test(name) || name.includes('@latest')) {
    throw new InvalidInputError(`name '${name}' is invalid: use letters, digits and . _ - : +, starting with a letter or digit`, { name });
  }
  return name;
}

/** Date.parse rolls 2026-02-30 over into March: the date written must exist. */
function isCalendarDate(text: string): boolean {
  const [y, m, d] = text.slice(0, 10).split('-').map(Number);
  const date = new Date(0);
  // Not Date.UTC(y, ...): it takes years 0-99 for 1900-1999.
  date.setUTCFullYear(y, m - 1, d);
  return date.getUTCFullYear() === y && date.getUTCMonth() === m - 1 && date.getUTCDate() === d;
}

export function parseTime(text: string): string {
  const ms = Date.parse(text);
  if (!/^\d{4}-\d{2}-\d{2}/.test(text) || Number.isNaN(ms) || !isCalendarDate(text)) {
    throw new InvalidInputError(`--time: '${text}' is not an ISO 8601 date and time (e.g. 2026-11-20T23:00:00Z)`, { value: text });
  }
  return new Date(ms).toISOString();
}
