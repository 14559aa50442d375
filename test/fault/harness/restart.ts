/**
 * Restarting an embedded PostgreSQL server in place (same data directory,
 * port and settings) for fault tests: a fast shutdown (SIGINT: sessions
 * ended, a checkpoint), an immediate one (SIGQUIT: no checkpoint, crash
 * recovery at the next start), each with the server down as long as asked.
 * The postmaster started here is stopped by `stopRestarted()` (call it
 * before the server's own stop()).
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { EmbeddedPostgres } from '../../../src/testing/embedded-postgres.ts';
import { untilAccepting } from '../../helpers/accepting.ts';
import { waitFor } from '../../helpers/wait.ts';

export interface Restartable {
  /** pid of the postmaster now serving. */
  pid: number;
  restart(mode: 'fast' | 'immediate', downMs?: number): Promise<{ downMs: number }>;
  stopRestarted(): Promise<void>;
}

function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch {
    return false;
  }
}

export function restartable(server: EmbeddedPostgres): Restartable {
  // The postmaster's own command line, to start it again the same way.
  const argv = readFileSync(`/proc/${server.pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  const { uid, gid } = statSync(server.dataDir);
  const self: Restartable = {
    pid: server.pid,
    async restart(mode, downMs = 0) {
      const t0 = Date.now();
      process.kill(self.pid, mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
      await waitFor(() => !running(self.pid), { timeout: 60_000, interval: 10, what: 'the postmaster to exit' });
      if (downMs) await new Promise((r) => setTimeout(r, downMs));
      const fd = openSync(join(server.dataDir, '..', `restart-${Date.now()}.log`), 'w', 0o600);
      try {
        const child = spawn(argv[0]!, argv.slice(1), { uid, gid, detached: true, stdio: ['ignore', fd, fd], env: { ...process.env, LC_MESSAGES: 'C' } });
        child.unref();
        self.pid = child.pid ?? 0;
      } finally {
        closeSync(fd);
      }
      await untilAccepting(server.connectionString, { timeout: 60_000, interval: 20, what: 'the server to accept connections again' });
      return { downMs: Date.now() - t0 };
    },
    async stopRestarted() {
      if (self.pid === server.pid || !running(self.pid)) return;
      process.kill(self.pid, 'SIGINT');
      await waitFor(() => !running(self.pid), { timeout: 30_000, interval: 20, what: 'the restarted postmaster to stop' });
    },
  };
  return self;
}
