/**
 * graphile-worker: no-op jobs, added in bulk with addJobs, processed by
 * `run()` with its default concurrency (10) and a batched configuration
 * (concurrency 50, local queue of 500 jobs, completions batched).
 */
import { Logger, makeWorkerUtils, run, type Runner, type RunnerOptions } from 'graphile-worker';
import { measureRun } from '../procs.ts';
import { figures, type RepFigures, row, type ThroughputRow } from '../results.ts';
import type { BenchServer } from '../server.ts';
import type { PeerChild } from './peer-process.ts';

export const GRAPHILE_CONFIGS = {
  default: { concurrency: 10 },
  batched: { concurrency: 50, preset: { worker: { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } } },
} satisfies Record<string, Partial<RunnerOptions>>;

/** graphile-worker's logger, silenced. */
export function graphileLogger(): Logger {
  return new Logger(() => () => {});
}

export function graphileChild(url: string, config: string): PeerChild {
  let runner: Runner | undefined;
  return {
    async go() {
      runner = await run({
        connectionString: url,
        noHandleSignals: true,
        pollInterval: 1000,
        taskList: { noop: async () => {} },
        logger: graphileLogger(),
        ...GRAPHILE_CONFIGS[config as keyof typeof GRAPHILE_CONFIGS],
      });
    },
    async stop() {
      await runner?.stop();
      return {};
    },
  };
}

/** Create the database and graphile-worker's schema; returns the URL. */
export async function graphileDatabase(server: BenchServer): Promise<string> {
  const url = await server.createDatabase('bench_graphile');
  const utils = await makeWorkerUtils({ connectionString: url, logger: graphileLogger() });
  try {
    await utils.migrate();
  } finally {
    await utils.release();
  }
  return url;
}

export async function graphileEnqueue(url: string, n: number): Promise<void> {
  const utils = await makeWorkerUtils({ connectionString: url, logger: graphileLogger() });
  try {
    for (let done = 0; done < n; done += 1000) {
      const count = Math.min(1000, n - done);
      await utils.addJobs(Array.from({ length: count }, (_, i) => ({ identifier: 'noop', payload: { i: done + i } })));
    }
  } finally {
    await utils.release();
  }
}

export async function graphileThroughput(server: BenchServer, reps: number, runs: number, procsList: number[]): Promise<ThroughputRow[]> {
  const url = await graphileDatabase(server);
  const rows: ThroughputRow[] = [];
  for (const config of Object.keys(GRAPHILE_CONFIGS)) {
    for (const procs of procsList) {
      const list: RepFigures[] = [];
      for (let r = 0; r < reps; r++) {
        await graphileEnqueue(url, runs);
        const m = await measureRun({
          url,
          file: './peers/peer-process.ts',
          env: { BENCH_PEER: 'graphile-worker', BENCH_CONFIG: config },
          procs,
          total: runs,
          remainingSql: 'select count(*) as remaining from graphile_worker._private_jobs',
          pollSql: 'select exists (select 1 from graphile_worker._private_jobs)::int as remaining',
        });
        list.push(figures(m, 1));
      }
      rows.push(row('graphile-worker', config, '1-step', procs, list));
    }
  }
  return rows;
}
