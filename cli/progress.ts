/** One status line on stderr, refreshed at most 4 times a second, only on a TTY. */
import { formatBytes } from '../store/size.js';

export interface Progress {
  update(done: number, total: number, extra?: string): void;
  done(): void;
}

const QUIET: Progress = { update: () => undefined, done: () => undefined };

export function progress(verb: string, enabled = process.stderr.isTTY === true): Progress {
  if (!enabled) return QUIET;
  const started = Date.now();
  let last = 0;
  let shown = false;
  return {
    update(done, total, extra) {
      const now = Date.now();
      if (now - last < 250 && done < total) return;
      last = now;
      const seconds = (now - started) / 1000;
      const rate = seconds > 0 ? done / seconds : 0;
      const eta = rate > 0 ? Math.max(0, (total - done) / rate) : 0;
      const pct = total > 0 ? ((100 * done) / total).toFixed(1) : '100.0';
      const line = `${verb} ${formatBytes(done)} / ${formatBytes(total)} (${pct}%)  ${(rate / 1e6).toFixed(0)} MB/s  ETA ${eta.toFixed(0)}s${extra ? '  ' + extra : ''}`;
      process.stderr.write(`\r\x1b[K${line}`);
      shown = true;
    },
    done() {
      if (shown) process.stderr.write('\r\x1b[K');
    },
  };
}
