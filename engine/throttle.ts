/**
 * Low-impact reading. Workers time every source read where it happens; the main thread
 * feeds each task's mean read latency to `observe` and asks `admit` before submitting a
 * task, which holds the submission back:
 * - --max-latency: the delay between submissions integrates the latency error, growing by
 *   the measured excess over the limit and shrinking by the headroom below it, so it
 *   settles where the source's latency meets the limit. It is capped: a source slow for
 *   reasons of its own must not stall the backup forever.
 * - --max-rate: pacing; a task of n bytes starts no sooner than n/rate after the one
 *   before it started (idle time earns no burst credit).
 * Time is passed in (ms), so the decisions are a pure function of their inputs.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { InvalidInputError } from './errors.js';

export interface ThrottleLimits {
  maxLatencyMs: number | null;
  maxRateBytesPerSecond: number | null;
}

/** At worst one task every 2 s: a 4 MiB task still moves 2 MB/s. */
export const MAX_DELAY_MS = 2000;

/** Below 10 µs no read is measured reliably; above a minute a read is broken, not slow. */
export const LATENCY_BOUNDS_MS = { min: 0.01, max: 60_000 };
/** 10 kB/s: a 4 MiB task every 7 minutes. Below it a backup would not end in any useful time. */
export const MIN_RATE_MBPS = 0.01;

function checkPositive(value: number | undefined, flag: string, unit: string): number | null {
  if (value === undefined) return null;
  if (!Number.isFinite(value) || value <= 0) throw new InvalidInputError(`${flag} must be a positive number of ${unit}, got ${value}`, { flag, value });
  return value;
}

function checkLatency(value: number | undefined): number | null {
  const latency = checkPositive(value, '--max-latency', 'milliseconds');
  if (latency !== null && (latency < LATENCY_BOUNDS_MS.min || latency > LATENCY_BOUNDS_MS.max)) {
    throw new InvalidInputError(`--max-latency must be from ${LATENCY_BOUNDS_MS.min} to ${LATENCY_BOUNDS_MS.max} milliseconds, got ${latency}`, { flag: '--max-latency', value: latency, ...LATENCY_BOUNDS_MS });
  }
  return latency;
}

function checkRate(value: number | undefined): number | null {
  const rate = checkPositive(value, '--max-rate', 'MB/s');
  if (rate !== null && rate < MIN_RATE_MBPS) {
    throw new InvalidInputError(`--max-rate must be at least ${MIN_RATE_MBPS} MB/s, got ${rate}`, { flag: '--max-rate', value: rate, min: MIN_RATE_MBPS });
  }
  return rate;
}

/** Validated limits, or null when nothing is throttled. */
export function throttleLimits(maxLatencyMs?: number, maxRateMBps?: number): ThrottleLimits | null {
  const latency = checkLatency(maxLatencyMs);
  const rate = checkRate(maxRateMBps);
  if (latency === null && rate === null) return null;
  return { maxLatencyMs: latency, maxRateBytesPerSecond: rate === null ? null : rate * 1e6 };
}

/** setTimeout fires at once when asked to wait past 2^31 - 1 ms: longer waits are taken in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

async function sleepUntil(at: number): Promise<void> {
  for (let left = at - performance.now(); left > 0; left = at - performance.now()) await sleep(Math.min(left, MAX_TIMER_MS));
}

export class Throttle {
  private delay = 0;
  private lastStart = -Infinity;
  private rateAt = -Infinity;
  private throttled = 0;

  constructor(readonly limits: ThrottleLimits) {}

  /** Current delay between submissions from the latency limit, in ms. */
  get delayMs(): number {
    return this.delay;
  }

  /** Wall time submissions were held back, in seconds (overlapping waits count once). */
  get secondsThrottled(): number {
    return this.throttled / 1000;
  }

  /** One task's mean source read latency, in ms. */
  observe(latencyMs: number): void {
    const limit = this.limits.maxLatencyMs;
    if (limit === null) return;
    this.delay = Math.min(MAX_DELAY_MS, Math.max(0, this.delay + latencyMs - limit));
  }

  /** When (ms, on the clock `now` is read from) a task reading `bytes` may start. */
  schedule(now: number, bytes: number): number {
    let at = Math.max(now, this.lastStart + this.delay);
    const rate = this.limits.maxRateBytesPerSecond;
    if (rate !== null) {
      this.rateAt = Math.max(this.rateAt, now);
      at = Math.max(at, this.rateAt);
      this.rateAt = at + (bytes / rate) * 1000;
    }
    // Starts never go backwards, so the waits [now, at] overlap only with the previous one.
    this.throttled += Math.max(0, at - Math.max(now, this.lastStart));
    this.lastStart = at;
    return at;
  }

  async admit(bytes: number): Promise<void> {
    await sleepUntil(this.schedule(performance.now(), bytes));
  }
}
