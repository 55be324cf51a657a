/**
 * Retention decisions on hand-built calendars, in local time Europe/Berlin (DST changes on
 * the last Sundays of March and October). Small calendars have literal expectations; the
 * large one (hundreds of points over five years) is checked against an independent oracle
 * that uses Intl for local time and the ordinal-day formula for ISO weeks.
 */
process.env.TZ = 'Europe/Berlin';

import t from 'tap';
import { applyRetention, bucketKey, isoWeek, parseDuration, type RetentionDecision, type RetentionPoint, type RetentionPolicy } from '../../engine/retention.js';

let serial = 0;
/** Ids sort like the catalog's: time first, then a counter, so equal times still differ. */
function point(time: string, options: { name?: string; held?: boolean; id?: string } = {}): RetentionPoint {
  const ms = Date.parse(time);
  const id = options.id ?? ms.toString(16).padStart(12, '0') + (serial++ % 65536).toString(16).padStart(4, '0');
  return { id, name: options.name ?? 'vm', time: new Date(ms).toISOString(), held: options.held ?? false };
}

function daily(from: string, to: string, atUtc: string): RetentionPoint[] {
  const points: RetentionPoint[] = [];
  for (let ms = Date.parse(`${from}T${atUtc}Z`); ms <= Date.parse(`${to}T${atUtc}Z`); ms += 86_400_000) points.push(point(new Date(ms).toISOString()));
  return points;
}

/** time (ISO, UTC) -> reasons, for the kept points only; everything else must be removed. */
function kept(decisions: RetentionDecision[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const d of decisions) if (d.action === 'keep') out[d.time] = d.reasons;
  return out;
}

t.test('ISO 8601 weeks at year boundaries', async (t) => {
  const cases: [number, number, number, string][] = [
    [2020, 11, 31, '2020-W53'],
    [2021, 0, 3, '2020-W53'],
    [2021, 0, 4, '2021-W01'],
    [2024, 11, 29, '2024-W52'],
    [2024, 11, 30, '2025-W01'],
    [2015, 11, 31, '2015-W53'],
    [2016, 0, 3, '2015-W53'],
    [2008, 11, 29, '2009-W01'],
    [2010, 0, 3, '2009-W53'],
    [2027, 0, 1, '2026-W53'],
    [2026, 10, 20, '2026-W47'],
    [2020, 2, 16, '2020-W12'],
  ];
  for (const [y, m, d, expected] of cases) {
    const w = isoWeek(y, m, d);
    t.equal(`${w.year}-W${String(w.week).padStart(2, '0')}`, expected, `${y}-${m + 1}-${d}`);
  }
});

t.test('bucket keys are local time (Europe/Berlin), not UTC', async (t) => {
  t.equal(bucketKey('daily', Date.parse('2021-03-27T23:30:00Z')), '2021-03-28', 'CET +1 crosses midnight');
  t.equal(bucketKey('hourly', Date.parse('2021-06-30T22:15:00Z')), '2021-07-01T00', 'CEST +2');
  t.equal(bucketKey('monthly', Date.parse('2021-06-30T22:15:00Z')), '2021-07');
  t.equal(bucketKey('yearly', Date.parse('2020-12-31T23:30:00Z')), '2021');
  t.equal(bucketKey('weekly', Date.parse('2024-12-29T23:30:00Z')), '2025-W01', 'Sunday 23:30 UTC is Monday in Berlin');
});

t.test('durations', async (t) => {
  t.same(parseDuration('6y'), { years: 6, months: 0, weeks: 0, days: 0, hours: 0 });
  t.same(parseDuration('1y6m2w3d12h'), { years: 1, months: 6, weeks: 2, days: 3, hours: 12 });
  for (const bad of ['', '0d', '6', 'y', '3x', '1d1y', '-1d', '1.5d', '6 y']) t.throws(() => parseDuration(bad), { code: 'CV_INVALID_INPUT' }, `'${bad}'`);
});

t.test('empty and impossible policies are refused', async (t) => {
  const points = [point('2026-01-01T00:00:00Z')];
  for (const policy of [{}, { last: 0, daily: 0 }] as RetentionPolicy[]) t.throws(() => applyRetention(points, policy), { code: 'CV_INVALID_INPUT', message: /needs a policy/ });
  t.throws(() => applyRetention(points, { daily: -1 }), { code: 'CV_INVALID_INPUT' });
  t.throws(() => applyRetention(points, { daily: 1.5 }), { code: 'CV_INVALID_INPUT' });
  t.throws(() => applyRetention(points, { within: '6 years' }), { code: 'CV_INVALID_INPUT' });
});

interface Case {
  name: string;
  points: RetentionPoint[];
  policy: RetentionPolicy;
  kept: Record<string, string[]>;
}

const CASES: Case[] = [
  {
    name: 'weekly, monthly and yearly across 2020/2021 (ISO week 53), each rule in its own namespace',
    points: daily('2020-12-20', '2021-01-10', '12:00:00'),
    policy: { weekly: 3, monthly: 2, yearly: 2 },
    kept: {
      '2021-01-10T12:00:00.000Z': ['weekly 2021-W01', 'monthly 2021-01', 'yearly 2021'],
      '2021-01-03T12:00:00.000Z': ['weekly 2020-W53'],
      '2020-12-31T12:00:00.000Z': ['monthly 2020-12', 'yearly 2020'],
      '2020-12-27T12:00:00.000Z': ['weekly 2020-W52'],
    },
  },
  {
    name: '2024-12-30 is in 2025-W01 but in the year 2024',
    points: daily('2024-12-25', '2025-01-02', '12:00:00'),
    policy: { weekly: 2, yearly: 2, daily: 1 },
    kept: {
      '2025-01-02T12:00:00.000Z': ['daily 2025-01-02', 'weekly 2025-W01', 'yearly 2025'],
      '2024-12-31T12:00:00.000Z': ['yearly 2024'],
      '2024-12-29T12:00:00.000Z': ['weekly 2024-W52'],
    },
  },
  {
    name: 'daily at 22:30 UTC across the spring change: local 2021-03-28 has no point',
    points: daily('2021-03-25', '2021-03-31', '22:30:00'),
    policy: { daily: 7 },
    kept: {
      '2021-03-31T22:30:00.000Z': ['daily 2021-04-01'],
      '2021-03-30T22:30:00.000Z': ['daily 2021-03-31'],
      '2021-03-29T22:30:00.000Z': ['daily 2021-03-30'],
      '2021-03-28T22:30:00.000Z': ['daily 2021-03-29'],
      '2021-03-27T22:30:00.000Z': ['daily 2021-03-27'],
      '2021-03-26T22:30:00.000Z': ['daily 2021-03-26'],
      '2021-03-25T22:30:00.000Z': ['daily 2021-03-25'],
    },
  },
  {
    name: 'hourly in the repeated hour of the autumn change: both 02:xx hours share one bucket',
    points: ['2021-10-30T23:00:00Z', '2021-10-31T00:00:00Z', '2021-10-31T00:30:00Z', '2021-10-31T01:00:00Z', '2021-10-31T01:30:00Z', '2021-10-31T02:00:00Z'].map((time) => point(time)),
    policy: { hourly: 3 },
    kept: {
      '2021-10-31T02:00:00.000Z': ['hourly 2021-10-31T03'],
      '2021-10-31T01:30:00.000Z': ['hourly 2021-10-31T02'],
      '2021-10-30T23:00:00.000Z': ['hourly 2021-10-31T01'],
    },
  },
  {
    name: 'keep-within 1d is a calendar day across the spring change (23 hours), 24h is exact',
    points: ['2021-03-28T12:00:00Z', '2021-03-27T13:01:00Z', '2021-03-27T13:00:00Z', '2021-03-27T12:30:00Z', '2021-03-27T11:59:00Z'].map((time) => point(time)),
    policy: { within: '1d' },
    kept: {
      '2021-03-28T12:00:00.000Z': ['within 1d'],
      '2021-03-27T13:01:00.000Z': ['within 1d'],
    },
  },
  {
    name: 'keep-within 24h counts exact hours',
    points: ['2021-03-28T12:00:00Z', '2021-03-27T13:01:00Z', '2021-03-27T13:00:00Z', '2021-03-27T12:30:00Z', '2021-03-27T11:59:00Z'].map((time) => point(time)),
    policy: { within: '24h' },
    kept: {
      '2021-03-28T12:00:00.000Z': ['within 24h'],
      '2021-03-27T13:01:00.000Z': ['within 24h'],
      '2021-03-27T13:00:00.000Z': ['within 24h'],
      '2021-03-27T12:30:00.000Z': ['within 24h'],
    },
  },
  {
    name: 'keep-within 6y and 18m step calendar years and months; the boundary itself is not younger',
    points: ['2026-11-20T10:00:00Z', '2025-05-20T10:00:01Z', '2025-05-20T10:00:00Z', '2020-11-20T10:00:01Z', '2020-11-20T10:00:00Z', '2019-01-01T00:00:00Z'].map((time) => point(time)),
    policy: { within: '6y', daily: 1 },
    kept: {
      '2026-11-20T10:00:00.000Z': ['daily 2026-11-20', 'within 6y'],
      '2025-05-20T10:00:01.000Z': ['within 6y'],
      '2025-05-20T10:00:00.000Z': ['within 6y'],
      '2020-11-20T10:00:01.000Z': ['within 6y'],
    },
  },
  {
    name: 'keep-within 18m steps local months: 11:00 CET in November is 11:00 CEST (09:00 UTC) in May',
    points: ['2026-11-20T10:00:00Z', '2025-05-20T09:00:01Z', '2025-05-20T09:00:00Z', '2020-11-20T10:00:01Z'].map((time) => point(time)),
    policy: { within: '18m' },
    kept: {
      '2026-11-20T10:00:00.000Z': ['within 18m'],
      '2025-05-20T09:00:01.000Z': ['within 18m'],
    },
  },
  {
    name: 'held points are kept as held and take no slot: the next unheld point fills each rule',
    points: [
      point('2026-11-20T18:00:00Z', { held: true }),
      point('2026-11-20T12:00:00Z'),
      point('2026-11-20T06:00:00Z'),
      point('2026-11-19T12:00:00Z'),
      point('2026-11-18T12:00:00Z', { held: true }),
      point('2026-11-17T12:00:00Z'),
    ],
    policy: { last: 1, daily: 2 },
    kept: {
      '2026-11-20T18:00:00.000Z': ['held'],
      '2026-11-20T12:00:00.000Z': ['last', 'daily 2026-11-20'],
      '2026-11-19T12:00:00.000Z': ['daily 2026-11-19'],
      '2026-11-18T12:00:00.000Z': ['held'],
    },
  },
  {
    name: 'keep-within measures from the newest point even when it is held',
    points: [point('2026-11-20T12:00:00Z', { held: true }), point('2026-11-19T13:00:00Z'), point('2026-11-19T11:00:00Z')],
    policy: { within: '1d' },
    kept: {
      '2026-11-20T12:00:00.000Z': ['held'],
      '2026-11-19T13:00:00.000Z': ['within 1d'],
    },
  },
];

for (const c of CASES) {
  t.test(c.name, async (t) => {
    const decisions = applyRetention(c.points, c.policy);
    t.same(kept(decisions), c.kept);
    t.equal(decisions.length, c.points.length, 'one decision per point');
    t.same(
      decisions.filter((d) => d.action === 'remove').map((d) => d.reasons),
      decisions.filter((d) => d.action === 'remove').map(() => []),
      'removed points have no reasons',
    );
  });
}

t.test('equal times are ordered by id, whatever the input order', async (t) => {
  const a = point('2026-11-20T12:00:00Z', { id: '0000000000000aaa' });
  const b = point('2026-11-20T12:00:00Z', { id: '0000000000000bbb' });
  const c = point('2026-11-19T12:00:00Z', { id: '0000000000000ccc' });
  for (const input of [[a, b, c], [c, b, a], [b, c, a]]) {
    const decisions = applyRetention(input, { last: 1, daily: 2 });
    t.same(
      decisions.map((d) => [d.id, d.action, d.reasons]),
      [
        [b.id, 'keep', ['last', 'daily 2026-11-20']],
        [a.id, 'remove', []],
        [c.id, 'keep', ['daily 2026-11-19']],
      ],
    );
  }
});

t.test('groups are decided apart, by name ascending, newest first within', async (t) => {
  const points = [point('2026-11-20T12:00:00Z', { name: 'web' }), point('2026-11-19T12:00:00Z', { name: 'db' }), point('2026-11-18T12:00:00Z', { name: 'web' }), point('2026-11-10T12:00:00Z', { name: 'db' })];
  const decisions = applyRetention(points, { last: 1 });
  t.same(
    decisions.map((d) => [d.name, d.time.slice(0, 10), d.action]),
    [
      ['db', '2026-11-19', 'keep'],
      ['db', '2026-11-10', 'remove'],
      ['web', '2026-11-20', 'keep'],
      ['web', '2026-11-18', 'remove'],
    ],
  );
});

// ---- The large calendar and its oracle ----

const BERLIN = new Intl.DateTimeFormat('en-CA', { timeZone: 'Europe/Berlin', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', hourCycle: 'h23' });

function berlin(ms: number): { y: number; m: number; d: number; h: number } {
  const parts = Object.fromEntries(BERLIN.formatToParts(ms).map((p) => [p.type, p.value]));
  return { y: Number(parts.year), m: Number(parts.month), d: Number(parts.day), h: Number(parts.hour) };
}

/** ISO week by the ordinal-day formula (independent of the code under test). */
function oracleWeek(y: number, m: number, d: number): string {
  const p = (year: number): number => (year + Math.floor(year / 4) - Math.floor(year / 100) + Math.floor(year / 400)) % 7;
  const weeksIn = (year: number): number => (p(year) === 4 || p(year - 1) === 3 ? 53 : 52);
  const ordinal = (Date.UTC(y, m - 1, d) - Date.UTC(y, 0, 1)) / 86_400_000 + 1;
  const weekday = new Date(Date.UTC(y, m - 1, d)).getUTCDay() || 7;
  let week = Math.floor((ordinal - weekday + 10) / 7);
  let year = y;
  if (week < 1) week = weeksIn(--year);
  else if (week > weeksIn(y)) [week, year] = [1, y + 1];
  return `${year}-W${String(week).padStart(2, '0')}`;
}

function oracleKey(rule: string, ms: number): string {
  const { y, m, d, h } = berlin(ms);
  const pad = (n: number): string => String(n).padStart(2, '0');
  return { hourly: `${y}-${pad(m)}-${pad(d)}T${pad(h)}`, daily: `${y}-${pad(m)}-${pad(d)}`, weekly: oracleWeek(y, m, d), monthly: `${y}-${pad(m)}`, yearly: `${y}` }[rule]!;
}

/** Buckets first, then the N buckets with the newest points, then each bucket's newest. */
function oracle(points: RetentionPoint[], policy: Required<Omit<RetentionPolicy, 'within'>> & { withinHours: number }): Map<string, string[]> {
  const order = [...points].sort((a, b) => Date.parse(b.time) - Date.parse(a.time) || (a.id < b.id ? 1 : -1));
  const reasons = new Map(order.map((p) => [p.id, p.held ? ['held'] : ([] as string[])]));
  const unheld = order.filter((p) => !p.held);
  unheld.slice(0, policy.last).forEach((p) => reasons.get(p.id)!.push('last'));
  for (const rule of ['hourly', 'daily', 'weekly', 'monthly', 'yearly'] as const) {
    const buckets = new Map<string, RetentionPoint[]>();
    for (const p of unheld) {
      const key = oracleKey(rule, Date.parse(p.time));
      buckets.set(key, [...(buckets.get(key) ?? []), p]);
    }
    const newestOf = (list: RetentionPoint[]): RetentionPoint => list.reduce((best, p) => (order.indexOf(p) < order.indexOf(best) ? p : best));
    const ranked = Array.from(buckets, ([key, list]) => ({ key, newest: newestOf(list) })).sort((a, b) => order.indexOf(a.newest) - order.indexOf(b.newest));
    for (const { key, newest } of ranked.slice(0, policy[rule])) reasons.get(newest.id)!.push(`${rule} ${key}`);
  }
  const cutoff = Date.parse(order[0].time) - policy.withinHours * 3_600_000;
  for (const p of unheld) if (Date.parse(p.time) > cutoff) reasons.get(p.id)!.push(`within ${policy.withinHours}h`);
  return reasons;
}

/** Five years: every ~3 days at hours that straddle local midnight, DST-night bursts, ties, holds. */
function largeCalendar(): RetentionPoint[] {
  let seed = 12345;
  const next = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
  const hours = [0, 6, 12, 21, 22, 23];
  const points: RetentionPoint[] = [];
  for (let ms = Date.UTC(2019, 0, 1); ms < Date.UTC(2024, 0, 15); ms += (2 + next(3)) * 86_400_000) {
    const at = ms + hours[next(hours.length)] * 3_600_000 + next(60) * 60_000;
    points.push(point(new Date(at).toISOString(), { held: next(37) === 0 }));
    if (next(20) === 0) points.push(point(new Date(at).toISOString())); // a tie
  }
  for (const night of ['2022-03-27T00:00:00Z', '2022-10-30T00:00:00Z', '2023-10-29T00:00:00Z']) {
    for (let i = 0; i < 8; i++) points.push(point(new Date(Date.parse(night) + i * 20 * 60_000).toISOString()));
  }
  for (const time of ['2020-12-31T23:30:00Z', '2021-01-03T22:59:00Z', '2023-12-31T22:30:00Z', '2024-01-01T00:30:00Z']) points.push(point(time));
  return points;
}

t.test('a five-year calendar matches the oracle exactly', async (t) => {
  const points = largeCalendar();
  t.ok(points.length > 600, `${points.length} points`);
  const policies = [
    { last: 3, hourly: 6, daily: 10, weekly: 8, monthly: 18, yearly: 10, withinHours: 36 },
    { last: 0, hourly: 0, daily: 0, weekly: 60, monthly: 0, yearly: 0, withinHours: 0 },
    { last: 0, hourly: 30, daily: 0, weekly: 0, monthly: 30, yearly: 3, withinHours: 0 },
  ];
  for (const policy of policies) {
    const { withinHours, ...counts } = policy;
    const decisions = applyRetention(points, { ...counts, ...(withinHours > 0 ? { within: `${withinHours}h` } : {}) });
    const expected = oracle(points, policy);
    const mismatches = decisions.filter((d) => JSON.stringify(d.reasons) !== JSON.stringify(expected.get(d.id)) || (d.action === 'keep') !== expected.get(d.id)!.length > 0);
    t.same(mismatches, [], `policy ${JSON.stringify(policy)}: ${decisions.filter((d) => d.action === 'keep').length} kept`);
  }
  // Spot checks a reader can follow without the oracle.
  const weekly = kept(applyRetention(points, { weekly: 300 }));
  t.same(weekly['2021-01-03T22:59:00.000Z'], ['weekly 2020-W53'], 'Sunday 2021-01-03 23:59 in Berlin closes 2020-W53');
  t.same(weekly['2023-12-31T22:30:00.000Z'], ['weekly 2023-W52'], 'Sunday 2023-12-31 23:30 in Berlin closes 2023-W52');
  t.notOk(weekly['2024-01-01T00:30:00.000Z'], 'Monday 2024-01-01 01:30 opens 2024-W01, whose newest point is later');
});
