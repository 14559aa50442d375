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

export function pgBossChild(url: string, _config: string): PeerChild {
  const boss = new PgBoss({ connectionString: url, max: 10, ...OPTIONS });
  boss.on('error', () => undefined);
  let done = 0;
  return {
    async go() {
      await boss.start();
      for (let i = 0; i < 4; i++) {
        await boss.work(QUEUE, { batchSize: 50, pollingIntervalSeconds: 0.5 }, async (jobs) => {
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
    for (const procs of procsList) {
      const list: RepFigures[] = [];
      for (let r = 0; r < reps; r++) {
        for (let done = 0; done < runs; done += 1000) {
          const count = Math.min(1000, runs - done);
          await boss.insert(Array.from({ length: count }, (_, i) => ({ name: QUEUE, data: { i: done + i } })));
        }
        const m = await measureRun({
          url,
          file: './peers/peer-process.ts',
          env: { BENCH_PEER: 'pg-boss', BENCH_CONFIG: 'batch50x4' },
          procs,
          total: runs,
          remainingSql: `select count(*) as remaining from pgboss.job where name = '${QUEUE}' and state in ('created', 'retry', 'active')`,
        });
        list.push(figures(m, 1));
      }
      rows.push(row('pg-boss', 'batch 50 x 4 workers', '1-step', procs, list));
    }
  } finally {
    await boss.stop({ graceful: false, wait: true, timeout: 1000 });
  }
  return rows;
}
