/**
 * Family `starts`: 16 clients, each starting runs one at a time in its own
 * transaction (no batching, no hand-off: an HTTP service or another process),
 * for a fixed time, with no worker running. Trellis through the TS client
 * (coalesced NOTIFY, decision 0021) and through SQL with and without
 * coalesce_notify (the A/B of the lever), the same SQL start from pgbench's
 * 16 clients when a pgbench binary is installed (the server's own rate, with
 * no Node client sharing the cores), graphile-worker's add_job and pg-boss's
 * send from 16 clients, all on the same server in the same run.
 * Reported: starts/s, WAL flushes per start, and the ratio to pgbench's
 * insert+update transactions at 16 clients (family pgbench).
 */
import { makeWorkerUtils } from 'graphile-worker';
import pg from 'pg';
import PgBoss from 'pg-boss';
import { z } from 'zod';
import { createClient } from '../../src/client/client.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import type { BenchConfig } from './config.ts';
import { graphileLogger } from './peers/graphile-worker.ts';
import { findPgbench, runPgbench } from './peers/pgbench.ts';
import { costBetween, readCounters, type BenchServer } from './server.ts';
import { fmt } from './stats.ts';

export interface StartsRow {
  system: string;
  variant: string;
  clients: number;
  seconds: number;
  starts: number;
  startsPerS: number;
  walSyncsPerStart: number;
}

const CLIENTS = 16;

const ping = defineWorkflow({ name: 'bench-start', input: z.object({ i: z.number() }) }, async (ctx, { i }) =>
  ctx.step('noop', () => i));

/** Run `start` in CLIENTS loops for `seconds`; count the starts and the server's WAL flushes. */
async function measure(url: string, seconds: number, start: (i: number) => Promise<unknown>): Promise<{ starts: number; secs: number; syncs: number }> {
  const meter = new pg.Client({ connectionString: url });
  await meter.connect();
  try {
    // Warm up every connection first (connects, prepared statements).
    await Promise.all(Array.from({ length: CLIENTS }, (_, i) => start(-1 - i)));
    const before = await readCounters(meter);
    const deadline = performance.now() + seconds * 1000;
    let starts = 0;
    await Promise.all(Array.from({ length: CLIENTS }, async () => {
      while (performance.now() < deadline) {
        await start(starts);
        starts++;
      }
    }));
    const after = await readCounters(meter);
    const cost = await costBetween(meter, before, after);
    return { starts, secs: cost.seconds, syncs: cost.walSyncs };
  } finally {
    await meter.end();
  }
}

function row(system: string, variant: string, m: { starts: number; secs: number; syncs: number }): StartsRow {
  const r = { system, variant, clients: CLIENTS, seconds: m.secs, starts: m.starts, startsPerS: m.starts / m.secs, walSyncsPerStart: m.syncs / m.starts };
  console.log(`  ${`${system} ${variant}`.padEnd(56)} ${fmt(r.startsPerS, 0).padStart(7)} starts/s  ${fmt(r.walSyncsPerStart, 2)} WAL flushes/start`);
  return r;
}

export async function startsFamily(server: BenchServer, cfg: BenchConfig): Promise<StartsRow[]> {
  const seconds = cfg.quick ? 5 : 10;
  const rows: StartsRow[] = [];

  const url = await server.createDatabase('bench_starts', { trellis: true });
  const pool = new pg.Pool({ connectionString: url, max: CLIENTS });
  const client = createClient({ pool, handoff: false, logger: silentLogger });
  try {
    await client.register(ping);
    rows.push(row('trellis', 'client.start', await measure(url, seconds, (i) => client.start(ping, { i }))));
    for (const [variant, options] of [
      ['run_start, coalesce_notify', '{"input_checked": true, "coalesce_notify": true}'],
      ['run_start, a NOTIFY per start', '{"input_checked": true}'],
    ] as const) {
      rows.push(row('trellis', variant, await measure(url, seconds, (i) =>
        pool.query(`select trellis.run_start('bench-start', $1::jsonb, $2::jsonb)`, [JSON.stringify({ i }), options]))));
    }
    // The same SQL start from pgbench's 16 clients (C, one process): what the
    // server does with no Node client beside it on the machine's cores.
    const binary = findPgbench();
    if (binary) {
      // pgbench reads ":name" as a variable: no colon directly before a word.
      const script = `select trellis.run_start('bench-start', '{"i": 0}', '{"input_checked": true, "coalesce_notify": true}');\n`;
      const meter = new pg.Client({ connectionString: url });
      await meter.connect();
      try {
        const m = await runPgbench(binary, url, script, CLIENTS, seconds, meter);
        rows.push(row('trellis', 'run_start from pgbench, coalesce_notify', { starts: m.transactions, secs: m.secs, syncs: m.walSyncs }));
      } finally {
        await meter.end();
      }
    }
  } finally {
    await client.close();
    await pool.end();
    await server.dropDatabase('bench_starts');
  }

  const gUrl = await server.createDatabase('bench_starts_graphile');
  const utils = await makeWorkerUtils({ connectionString: gUrl, logger: graphileLogger() });
  const gPool = new pg.Pool({ connectionString: gUrl, max: CLIENTS });
  try {
    await utils.migrate();
    rows.push(row('graphile-worker', 'add_job', await measure(gUrl, seconds, (i) =>
      gPool.query(`select graphile_worker.add_job('noop', $1::json)`, [JSON.stringify({ i })]))));
  } finally {
    await gPool.end();
    await utils.release();
    await server.dropDatabase('bench_starts_graphile');
  }

  const bUrl = await server.createDatabase('bench_starts_pgboss');
  const boss = new PgBoss({ connectionString: bUrl, max: CLIENTS, supervise: false, schedule: false });
  boss.on('error', () => undefined);
  try {
    await boss.start();
    await boss.createQueue('bench-start');
    rows.push(row('pg-boss', 'send', await measure(bUrl, seconds, (i) => boss.send('bench-start', { i }))));
  } finally {
    await boss.stop({ graceful: false, wait: true, timeout: 2000 }).catch(() => undefined);
    await server.dropDatabase('bench_starts_pgboss');
  }
  return rows;
}
