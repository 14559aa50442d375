/**
 * A claim that failed transiently (its reply lost: node-postgres's query
 * timeout) may still run on the server later, after the worker's next
 * statements: a pooler that was paused queues it and runs it once resumed,
 * with the rest (the pooler audit saw three runs held by nobody for a whole
 * 30 s lease after a PgBouncer PAUSE). Such a late claim leases runs to a
 * worker that does not know of them. For a lease after a transient claim
 * failure, each claim round gives back what is leased to the worker that it
 * does not hold, so those runs wait for a poll, not for their lease.
 *
 * The late claim is made here by the test itself, as the worker's id, once
 * the worker has failed a claim and gone on claiming.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { createClient } from '../../src/client/client.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { createWorker, type Worker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';
import { startProxy, throughProxy, type TcpProxy } from '../helpers/tcp-proxy.ts';
import { waitFor } from '../helpers/wait.ts';

const late = defineWorkflow({ name: 'late-claimed', input: z.object({ n: z.number() }), queue: 'late-claim' }, async (ctx, { n }) =>
  ctx.step('one', () => n + 1));

let db: TestDatabase;
let proxy: TcpProxy;
let worker: Worker;
const failures: string[] = [];
before(async () => {
  db = await freshDatabase();
  proxy = await startProxy({ host: '127.0.0.1', port: Number(new URL(db.url).port) });
  // (The logger's calls are (fields, message), pino's order.)
  const log = (fields: Record<string, unknown>, message: string) => {
    if (message === 'claim failed') failures.push(String(fields.error));
  };
  worker = createWorker({
    connectionString: throughProxy(db.url, proxy.port), id: 'late-claim-worker', workflows: [late],
    pollInterval: 100, leaseDuration: '30s', queryTimeout: '1s', logger: { ...silentLogger, error: log } as never,
  });
  await worker.start();
});
after(async () => {
  await worker?.stop({ timeout: 2000 });
  await proxy?.close();
  await db?.close();
});

describe('a claim that runs after the worker gave up on it', () => {
  it('its runs are given back at the worker\'s next claim round, not left until their lease expires', async () => {
    const client = createClient({ pool: db.pool, logger: silentLogger, handoff: false });
    try {
      // The worker's claims lose their replies: one fails with the query timeout.
      for (const p of proxy.of('trellis-worker')) p.dropReplies = true;
      await waitFor(() => failures.some((e) => /timeout/i.test(e)), { what: 'a claim failed by its query timeout', timeout: 15_000 });
      for (const p of proxy.of('trellis-worker')) p.dropReplies = false;
      const claims = worker.stats.claims;
      await waitFor(() => worker.stats.claims >= claims + 3, { what: 'the worker claiming again' });
      // The late claim: a run started and leased to the worker in one transaction, as the queued statement would.
      const tx = await db.pool.connect();
      let id: string;
      try {
        await tx.query('begin');
        ({ id } = await client.start(late, { n: 41 }, { tx }));
        const { rows } = await tx.query(`select id from trellis.run_claim('late-claim-worker', '{late-claim}', '{late-claimed}', '{1}', 1, '30 seconds')`);
        assert.deepEqual(rows.map((r) => r.id), [id]);
        await tx.query('commit');
      } finally {
        tx.release();
      }
      // Well within the 30 s lease.
      assert.equal(await client.result(id, { timeout: '10s' }), 42);
      const { rows: [row] } = await db.pool.query('select attempt from trellis.runs where id = $1', [id]);
      assert.equal(row.attempt, 2, 'claimed late, given back, claimed again');
      const { rows: released } = await db.pool.query(`select body->>'reason' as reason from trellis.events where run_id = $1 and kind = 'released'`, [id]);
      assert.deepEqual(released, [{ reason: 'lease unknown to its worker' }]);
    } finally {
      await client.close();
    }
  });
});
