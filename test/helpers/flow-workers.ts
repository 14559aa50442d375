/**
 * Worker processes for the flow-control fault tests (test/fault/queue-*.test.ts):
 * each runs test/fault/queue-process.ts on one queue and is stopped by its pid.
 */
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { after } from 'node:test';
import { type DatabaseFixture, useDatabase } from './database-fixture.ts';
import { killIfRunning, spawnReady } from '../fault/harness/ready-process.ts';

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
      // A loaded machine can take long to start a tsx process.
      return spawnReady('test/fault/queue-process.ts', { DATABASE_URL: databaseUrl(), FLOW_QUEUE: queue, ...env },
        { what: `worker on ${queue} ready`, timeout: 90_000, into: children });
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
      children.forEach(killIfRunning);
    },
  };
}

/** What a flow-control fault test works with (see useFlowFixture). */
export interface FlowFixture extends FlowWorkers, DatabaseFixture {
  /** Start n runs of `flow-job` (each sleeps ms in its step) on a queue, one by one. */
  startJobs(queue: string, n: number, ms: number): Promise<string[]>;
  /** How many runs of a queue are in a status. */
  count(queue: string, status: string): Promise<number>;
}

/**
 * A fresh database, a client on it (useDatabase) and worker processes, for
 * one test file: registers the file's before() and after() (which kills every
 * worker left).
 */
export function useFlowFixture(): FlowFixture {
  const workers = flowWorkers(() => fixture.db.url);
  // after() hooks run in the order they are registered: no worker is left when the client and the database close.
  after(() => workers.killAll());
  const base = useDatabase();
  const fixture: FlowFixture = {
    ...workers,
    get db() {
      return base.db;
    },
    get client() {
      return base.client;
    },
    async startJobs(queue, n, ms) {
      const ids: string[] = [];
      for (let i = 0; i < n; i++) ids.push((await fixture.client.start('flow-job', { ms }, { queue })).id);
      return ids;
    },
    async count(queue, status) {
      const { rows } = await fixture.db.pool.query('select count(*)::int as n from trellis.runs where queue = $1 and status = $2', [queue, status]);
      return rows[0].n;
    },
  };
  return fixture;
}
