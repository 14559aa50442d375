/**
 * Progress of a long command on stderr: a bar redrawn in place on a
 * terminal, one plain line per step otherwise (logs and pipes keep every
 * line readable).
 */
import type { Io } from './io.ts';

export interface Progress {
  /** `done` of `total` (total is an estimate: done may pass it). */
  update(done: number, total: number): void;
  /** End the bar's line. */
  end(): void;
}

const WIDTH = 30;

/**
 * @example
 * const bar = progress(io, 'purged');
 * bar.update(500, 2000);   // terminal: "purged [#######.......] 500/2000 25%"; otherwise "purged 500 of 2000"
 * bar.end();
 */
export function progress(io: Io, what: string): Progress {
  let drawn = false;
  return {
    update(done, total) {
      if (!io.isTTY) {
        io.err(`${what} ${done}${total ? ` of ${Math.max(done, total)}` : ''}\n`);
        return;
      }
      const fraction = total > 0 ? Math.min(1, done / total) : 1;
      const filled = Math.round(fraction * WIDTH);
      io.err(`\r${what} [${'#'.repeat(filled)}${'.'.repeat(WIDTH - filled)}] ${done}/${Math.max(done, total)} ${Math.round(fraction * 100)}%`);
      drawn = true;
    },
    end() {
      if (drawn) io.err('\n');
      drawn = false;
    },
  };
}
