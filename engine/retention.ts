/**
 * Retention: a pure function from restore points and a policy to keep/remove decisions
 * with reasons. No I/O; prune.ts applies the result.
 *
 * Semantics (documented for users in `chunkvault prune --help`):
 * - Points are grouped by name; each group is decided on its own, newest first (by
 *   snapshot time; equal times: the larger id counts as newer).
 * - `--keep-last N` keeps the N newest points.
 * - `--keep-hourly/daily/weekly/monthly/yearly N` keeps the newest point of each of the N
 *   most recent buckets that hold a point (hour, day, ISO 8601 week, month, year), in the
 *   local time of the process (TZ). Each rule has its own bucket namespace and counts on
 *   its own, so one point may be kept by several rules. In the hour repeated when clocks
 *   go back, both hours share one local hourly bucket.
 * - `--keep-within DURATION` keeps every point younger than DURATION, measured back from
 *   the newest point of the group. DURATION combines `<n>y` years, `<n>m` months,
 *   `<n>w` weeks, `<n>d` days, `<n>h` hours (e.g. `6y`, `18m`, `1y6m`, `36h`); years,
 *   months and days are calendar steps in local time, hours are exact.
 * - A held point is always kept (reason `held`) and takes no slot in any rule.
 */
import { InvalidInputError } from './errors.js';

export interface RetentionPolicy {
  last?: number;
  hourly?: number;
  daily?: number;
  weekly?: number;
  monthly?: number;
  yearly?: number;
  /** A DURATION, e.g. `6y`. */
  within?: string;
}

export interface RetentionPoint {
  id: string;
  name: string;
  /** ISO 8601 snapshot time. */
  time: string;
  held: boolean;
}

export type RetentionAction = 'keep' | 'remove';

export interface RetentionDecision {
  id: string;
  name: string;
  time: string;
  action: RetentionAction;
  reasons: string[];
}

export interface Duration {
  years: number;
  months: number;
  weeks: number;
  days: number;
  hours: number;
}

const BUCKET_RULES = ['hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const;
type BucketRule = (typeof BUCKET_RULES)[number];
const COUNT_RULES = ['last', ...BUCKET_RULES] as const;

/** Any instant of our era: a duration that leads from it to a valid date is usable for centuries. */
const DURATION_REFERENCE = Date.UTC(2000, 0, 1);
const DURATION = /^(?:(\d+)y)?(?:(\d+)m)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?$/;

export function parseDuration(text: string): Duration {
  const m = DURATION.exec(text.trim());
  const [years, months, weeks, days, hours] = (m ? m.slice(1) : []).map((n) => Number(n ?? 0));
  if (!m || years + months + weeks + days + hours === 0) {
    throw new InvalidInputError(`--keep-within: '${text}' is not a duration (e.g. 6y, 18m, 2w, 3d, 12h, 1y6m: y years, m months, w weeks, d days, h hours)`, { value: text });
  }
  const duration = { years, months, weeks, days, hours };
  // Past the range of a date, the cut-off is no instant at all: every comparison with it fails and nothing would be kept.
  if (!Number.isFinite(subtractDuration(DURATION_REFERENCE, duration))) {
    throw new InvalidInputError(`--keep-within: '${text}' reaches back further than any date (over 270,000 years)`, { value: text });
  }
  return duration;
}

/** Rejects policies that keep nothing or have impossible counts, before anything is read. */
export function checkPolicy(policy: RetentionPolicy): void {
  for (const rule of COUNT_RULES) {
    const n = policy[rule];
    if (n !== undefined && (!Number.isSafeInteger(n) || n < 0)) {
      throw new InvalidInputError(`--keep-${rule}: '${n}' is not a whole number of restore points`, { rule, value: n });
    }
  }
  if (policy.within !== undefined) parseDuration(policy.within);
  if (COUNT_RULES.every((rule) => !policy[rule]) && policy.within === undefined) {
    throw new InvalidInputError('prune needs a policy: give at least one of --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly, --keep-within', {});
  }
}

const pad = (n: number, width = 2): string => String(n).padStart(width, '0');

/** ISO 8601 week-numbering year and week of a calendar date: the week of its Thursday. */
export function isoWeek(year: number, month: number, day: number): { year: number; week: number } {
  const date = Date.UTC(year, month, day);
  const mondayBased = (new Date(date).getUTCDay() + 6) % 7;
  const thursday = new Date(date + (3 - mondayBased) * 86_400_000);
  const weekYear = thursday.getUTCFullYear();
  return { year: weekYear, week: 1 + Math.floor((thursday.getTime() - Date.UTC(weekYear, 0, 1)) / (7 * 86_400_000)) };
}

/** The bucket of an instant under each rule, in local time: also the reason text. */
export function bucketKey(rule: BucketRule, ms: number): string {
  const t = new Date(ms);
  const [y, mo, d] = [t.getFullYear(), t.getMonth(), t.getDate()];
  const date = `${pad(y, 4)}-${pad(mo + 1)}-${pad(d)}`;
  switch (rule) {
    case 'hourly':
      return `${date}T${pad(t.getHours())}`;
    case 'daily':
      return date;
    case 'weekly': {
      const w = isoWeek(y, mo, d);
      return `${pad(w.year, 4)}-W${pad(w.week)}`;
    }
    case 'monthly':
      return `${pad(y, 4)}-${pad(mo + 1)}`;
    case 'yearly':
      return pad(y, 4);
  }
}

/** The instant DURATION before `ms`, stepping calendar units in local time. */
export function subtractDuration(ms: number, d: Duration): number {
  const t = new Date(ms);
  t.setFullYear(t.getFullYear() - d.years, t.getMonth() - d.months, t.getDate() - 7 * d.weeks - d.days);
  return t.getTime() - d.hours * 3_600_000;
}

interface Candidate {
  point: RetentionPoint;
  ms: number;
  reasons: string[];
}

function newestFirst(a: Candidate, b: Candidate): number {
  return b.ms - a.ms || (a.point.id < b.point.id ? 1 : a.point.id > b.point.id ? -1 : 0);
}

/** Decides one group; `points` all share a name. */
function decideGroup(points: RetentionPoint[], policy: RetentionPolicy): RetentionDecision[] {
  const all = points.map((point): Candidate => ({ point, ms: Date.parse(point.time), reasons: [] })).sort(newestFirst);
  const unheld = all.filter((c) => !c.point.held);
  for (const c of all) if (c.point.held) c.reasons.push('held');
  unheld.slice(0, policy.last ?? 0).forEach((c) => c.reasons.push('last'));
  for (const rule of BUCKET_RULES) {
    const limit = policy[rule] ?? 0;
    const seen = new Set<string>();
    for (const c of unheld) {
      if (seen.size >= limit) break;
      const key = bucketKey(rule, c.ms);
      if (seen.has(key)) continue;
      seen.add(key);
      c.reasons.push(`${rule} ${key}`);
    }
  }
  if (policy.within !== undefined && all.length > 0) {
    const cutoff = subtractDuration(all[0].ms, parseDuration(policy.within));
    for (const c of unheld) if (c.ms > cutoff) c.reasons.push(`within ${policy.within.trim()}`);
  }
  return all.map(({ point, reasons }) => ({ id: point.id, name: point.name, time: point.time, action: reasons.length > 0 ? 'keep' : 'remove', reasons }));
}

/** Decisions for every point: groups by name (ascending), each newest first. */
export function applyRetention(points: RetentionPoint[], policy: RetentionPolicy): RetentionDecision[] {
  checkPolicy(policy);
  const groups = new Map<string, RetentionPoint[]>();
  for (const point of points) {
    const group = groups.get(point.name) ?? [];
    group.push(point);
    groups.set(point.name, group);
  }
  return Array.from(groups.keys())
    .sort()
    .flatMap((name) => decideGroup(groups.get(name)!, policy));
}
