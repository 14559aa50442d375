/**
 * DBOS Transact: 1-step and 10-step no-op workflows enqueued on a queue
 * with DBOSClient, then dequeued by DBOS processes (worker concurrency 100
 * per process, queue polled every 50 ms: a faster setting than its 1 s
 * default, so polling is not what limits it).
 */
import { DBOS, DBOSClient } from '@dbos-inc/dbos-sdk';
import { measureRun, spawnChild } from '../procs.ts';
import { figures, type RepFigures, row, type ThroughputRow } from '../results.ts';
import type { BenchServer } from '../server.ts';
import type { Kind } from '../workflows.ts';
import type { PeerChild } from './peer-process.ts';

const APP = 'trellis-bench';
const QUEUE = 'bench';
const VERSION = 'bench';
const WORKFLOWS: Record<Kind, string> = { '1-step': 'bench1', '10-step': 'bench10' };

export async function dbosChild(url: string, config: string, index: number): Promise<PeerChild> {
  const noop = async (i: number) => i;
  DBOS.registerWorkflow(async () => {
    await DBOS.runStep(() => noop(0), { name: 'noop' });
    return null;
  }, { name: WORKFLOWS['1-step'] });
  DBOS.registerWorkflow(async () => {
    for (let i = 0; i < 10; i++) await DBOS.runStep(() => noop(i), { name: `noop-${i}` });
    return null;
  }, { name: WORKFLOWS['10-step'] });
  DBOS.setConfig({
    name: APP,
    systemDatabaseUrl: url,
    applicationVersion: VERSION,
    executorID: `bench-${index}`,
    logLevel: 'error',
  });
  return {
    async go() {
      await DBOS.launch();
      if (config === 'setup') await DBOS.registerQueue(QUEUE, { workerConcurrency: 100, minPollingIntervalMs: 50 });
    },
    async stop() {
      await DBOS.shutdown();
      return {};
    },
  };
}

/** Create the database, let DBOS install its schema and the queue (a one-off process). */
async function dbosDatabase(server: BenchServer): Promise<string> {
  const url = await server.createDatabase('bench_dbos');
  const setup = spawnChild('./peers/peer-process.ts', { BENCH_PEER: 'dbos', BENCH_CONFIG: 'setup', BENCH_URL: url });
  try {
    await setup.waitFor('ready');
    setup.send('go');
    await setup.waitFor('started', 120_000);
    setup.send('stop');
    await setup.waitFor('stats');
  } finally {
    setup.kill();
  }
  return url;
}

async function dbosEnqueue(url: string, workflowName: string, n: number): Promise<void> {
  const client = await DBOSClient.create({ systemDatabaseUrl: url, applicationName: APP });
  try {
    let next = 0;
    // 20 concurrent enqueuers: DBOSClient.enqueue writes one row per call.
    await Promise.all(Array.from({ length: 20 }, async () => {
      while (next < n) {
        const i = next++;
        await client.enqueue({ queueName: QUEUE, workflowName, appVersion: VERSION }, i);
      }
    }));
  } finally {
    await client.destroy();
  }
}

export async function dbosThroughput(server: BenchServer, reps: number, runs: Record<Kind, number>, procsList: number[]): Promise<ThroughputRow[]> {
  const url = await dbosDatabase(server);
  const rows: ThroughputRow[] = [];
  for (const kind of Object.keys(WORKFLOWS) as Kind[]) {
    for (const procs of procsList) {
      const list: RepFigures[] = [];
      for (let r = 0; r < reps; r++) {
        await dbosEnqueue(url, WORKFLOWS[kind], runs[kind]);
        const m = await measureRun({
          url,
          file: './peers/peer-process.ts',
          env: { BENCH_PEER: 'dbos', BENCH_CONFIG: 'worker' },
          procs,
          total: runs[kind],
          remainingSql: `select count(*) as remaining from dbos.workflow_status where status in ('ENQUEUED', 'PENDING')`,
          pollSql: `select exists (select 1 from dbos.workflow_status where status in ('ENQUEUED', 'PENDING'))::int as remaining`,
        });
        list.push(figures(m, kind === '1-step' ? 1 : 10));
      }
      rows.push(row('dbos', 'queue, 100/process', kind, procs, list));
    }
  }
  return rows;
}
