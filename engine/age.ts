/** Ages like `7d`: how old data must be before gc recompresses it (--older-than). */
import { InvalidInputError } from './errors.js';

const UNIT_SECONDS: Record<string, number> = { s: 1, h: 3600, d: 86_400, w: 7 * 86_400 };
/** A century: older than any pack, and far from overflowing a date. */
const MAX_AGE_SECONDS = 100 * 365 * 86_400;

/** `0`, or whole numbers of s, h, d and w (`7d`, `2w`, `1d12h`), in seconds. */
export function parseAge(text: string, option: string): number {
  const parts = text.trim() === '0' ? [] : [...text.trim().matchAll(/(\d+)([shdw])/g)];
  const whole = parts.map((p) => p[0]).join('');
  if (text.trim() !== '0' && (parts.length === 0 || whole !== text.trim())) {
    throw new InvalidInputError(`${option}: '${text}' is not an age (e.g. 7d, 2w, 12h, 1d12h, or 0: s seconds, h hours, d days, w weeks)`, { option, value: text });
  }
  const seconds = parts.reduce((sum, p) => sum + Number(p[1]) * UNIT_SECONDS[p[2]], 0);
  if (!Number.isSafeInteger(seconds) || seconds > MAX_AGE_SECONDS) throw new InvalidInputError(`${option}: '${text}' is more than a century`, { option, value: text });
  return seconds;
}
