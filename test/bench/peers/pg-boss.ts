/**
 * pg-boss: no-op jobs inserted in bulk with insert(), processed by four
 * work() loops per process, each fetching and completing 50 jobs at a time.
 */
import PgBoss from 'pg-boss';
import { measureRun } from '../procs.ts';
import { figures, type RepFigures, row, type ThroughputRow } from '../results.ts';
import type { BenchServer } from '../server.ts';
import type { PeerChild } from './peer-process.ts';

const QUEUE = 'bench';
const OPTIONS = { supervise: false, schedule: false, migrate: false } as const;

/** work() loops per process and jobs fetched per loop, by configuration name. */
export const PGBOSS_CONFIGS: Record<string, { workers: number; batchSize: number }> = {
  'batch 50 x 4 workers': { workers: 4, batchSize: 50 },
  'batch 500 x 4 workers': { workers: 4, batchSize: 500 },
};

export function pgBossChild(url: string, config: string): PeerChild {
  const { workers, batchSize } = PGBOSS_CONFIGS[config] ?? { workers: 4, batchSize: 50 };
  const boss = new PgBoss({ connectionString: url, max: 10, ...OPTIONS });
  boss.on('error', () => undefined);
  let done = 0;
  return {
    async go() {
      await boss.start();
      for (let i = 0; i < workers; i++) {
        // 0.5 s is the shortest polling interval pg-boss 10 accepts; a loop waits it out after every batch.
        await boss.work(QUEUE, { batchSize, pollingIntervalSeconds: 0.5 }, async (jobs) => {
          done += jobs.length;
        });
      }
    },
    async stop() {
      await boss.stop({ graceful: true, wait: true, timeout: 5000 });
      return { done };
    },
  };
}

export async function pgBossThroughput(server: BenchServer, reps: number, runs: number, procsList: number[]): Promise<ThroughputRow[]> {
  const url = await server.createDatabase('bench_pgboss');
  const boss = new PgBoss({ connectionString: url, max: 4, supervise: false, schedule: false });
  boss.on('error', () => undefined);
  await boss.start();
  const rows: ThroughputRow[] = [];
  try {
    await boss.createQueue(QUEUE);
    const combos = Object.entries(PGBOSS_CONFIGS).flatMap(([config, c]) => procsList.map((procs) => ({ config, procs, ...c })));
    for (const { config, procs, batchSize } of combos) {
      const list: RepFigures[] = [];
      // Throughput is bounded by workers x batch per 0.5 s poll: size the run to take a few seconds.
      const total = Math.min(runs * (batchSize / 50), runs * 4);
      for (let r = 0; r < reps; r++) {
        for (let done = 0; done < total; done += 1000) {
          const count = Math.min(1000, total - done);
          await boss.insert(Array.from({ length: count }, (_, i) => ({ name: QUEUE, data: { i: done + i } })));
        }
        const m = await measureRun({
          url,
          file: './peers/peer-process.ts',
          env: { BENCH_PEER: 'pg-boss', BENCH_CONFIG: config },
          procs,
          total,
          remainingSql: `select count(*) as remaining from pgboss.job where name = '${QUEUE}' and state in ('created', 'retry', 'active')`,
          pollSql: `select exists (select 1 from pgboss.job where name = '${QUEUE}' and state in ('created', 'retry', 'active'))::int as remaining`,
        });
        list.push(figures(m, 1));
      }
      rows.push(row('pg-boss', config, '1-step', procs, list));
    }
  } finally {
    await boss.stop({ graceful: false, wait: true, timeout: 1000 });
  }
  return rows;
}
