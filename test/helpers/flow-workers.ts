/**
 * Worker processes for the flow-control fault tests (test/fault/queue-*.test.ts):
 * each runs test/fault/queue-process.ts on one queue and is stopped by its pid.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { waitFor } from './wait.ts';

export interface FlowWorkers {
  spawn(queue: string, env?: Record<string, string>): Promise<ChildProcess>;
  /** SIGTERM every worker still running and wait for it to exit. */
  stopAll(): Promise<void>;
  /** SIGKILL every worker still running (for after()). */
  killAll(): void;
}

export function flowWorkers(databaseUrl: () => string): FlowWorkers {
  const children: ChildProcess[] = [];
  return {
    async spawn(queue, env = {}) {
      const child = spawn(process.execPath, ['--import', 'tsx', 'test/fault/queue-process.ts'], {
        env: { ...process.env, DATABASE_URL: databaseUrl(), FLOW_QUEUE: queue, ...env },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      children.push(child);
      let out = '';
      child.stdout?.on('data', (d) => (out += d));
      // A loaded machine can take long to start a tsx process.
      await waitFor(() => out.includes('ready'), { what: `worker on ${queue} ready`, timeout: 90_000 });
      return child;
    },
    async stopAll() {
      for (const c of children.splice(0)) {
        if (c.exitCode === null && c.signalCode === null) {
          c.kill('SIGTERM');
          await once(c, 'exit');
        }
      }
    },
    killAll() {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    },
  };
}
