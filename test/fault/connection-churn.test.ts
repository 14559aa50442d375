/**
 * F2 (quick mode): two workers whose pool and LISTEN connections are
 * terminated (pg_terminate_backend, 57P01) every 150-400 ms while 300
 * three-step runs go through them. Every step body appends to an effects
 * ledger. Invariants at the end: runs lost 0, runs failed 0, completed steps
 * run again 0 (every (run, step) in the ledger once).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { z } from 'zod';
import { createClient, type Client } from '../../src/client/client.ts';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { freshDatabase, type TestDatabase, testPool } from '../helpers/db.ts';

const RUNS = 300;

let db: TestDatabase;
let client: Client;
let ledger: pg.Pool;
before(async () => {
  db = await freshDatabase();
  await db.pool.query('create table public.effects (run_id uuid, step text, at timestamptz default clock_timestamp())');
  ledger = testPool({ connectionString: db.url, max: 4, application_name: 'effects-ledger' });
  client = createClient({ pool: db.pool, logger: silentLogger, handoff: false });
});
after(async () => {
  await client.close();
  await ledger.end();
  await db.close();
});

const churned = defineWorkflow({ name: 'churned', input: z.object({ n: z.number() }) }, async (ctx, { n }) => {
  let total = n;
  for (const step of ['one', 'two', 'three']) {
    total = await ctx.step(step, async () => {
      await ledger.query('insert into public.effects (run_id, step) values ($1, $2)', [ctx.runId, step]);
      return total + 1;
    });
  }
  return total;
});

describe('F2: worker connections terminated every 150-400 ms', () => {
  it('loses no run, fails no run, and runs no completed step again', async () => {
    const workers = [1, 2].map((i) => createWorker({
      connectionString: db.url, workflows: [churned], logger: silentLogger, id: `churn-${i}`, concurrency: 50,
    }));
    for (const w of workers) await w.start();
    let kills = 0;
    let stop = false;
    const killer = (async () => {
      while (!stop) {
        await new Promise((r) => setTimeout(r, 150 + Math.random() * 250));
        const { rows } = await db.pool.query(`select count(*)::int as n from (
          select pg_terminate_backend(pid) from pg_stat_activity
           where datname = current_database() and application_name like 'trellis-worker%' and pid <> pg_backend_pid()) t`);
        kills += rows[0].n;
      }
    })();
    try {
      const runs = await Promise.all(Array.from({ length: RUNS }, (_, n) => client.start(churned, { n })));
      const outputs = await Promise.all(runs.map((r) => r.result({ timeout: '90s' })));
      assert.deepEqual(outputs, runs.map((_, n) => n + 3), 'every run completed with its output');
    } finally {
      stop = true;
      await killer;
      for (const w of workers) await w.stop({ timeout: '2s' });
    }
    const { rows: statuses } = await db.pool.query(`select status, count(*)::int as n from trellis.runs group by status`);
    assert.deepEqual(statuses, [{ status: 'completed', n: RUNS }], 'runs lost 0, failed 0');
    const { rows: twice } = await db.pool.query(
      'select run_id, step, count(*)::int as n from public.effects group by run_id, step having count(*) > 1');
    assert.deepEqual(twice, [], 'completed steps run again: 0');
    const { rows: [effects] } = await db.pool.query('select count(*)::int as n from public.effects');
    assert.equal(effects.n, RUNS * 3);
    assert.ok(kills > 0, 'connections were terminated');
    console.log(`# F2 quick: ${RUNS} runs, ${kills} worker connections terminated, 0 lost, 0 failed, 0 steps re-run`);
  });
});
