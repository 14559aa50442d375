/**
 * Tenant limits: flow control for the whole fleet, kept in PostgreSQL.
 * 1. Queue `tenant-sync`: at most 4 syncs running across every worker, and at
 *    most 2 per tenant (`keyConcurrency`, with each start's `concurrencyKey`),
 *    with claims rotating across tenants, so tenant `big` with 12 syncs queued
 *    does not hold back `small` with 2.
 * 2. Queue `partner-api`: each sync calls a partner API that allows 5 calls a
 *    second, as a child run in a queue rate-limited to 5 claims per 1 s
 *    window. While a sync waits for its child it is not running, so it holds
 *    no slot of `tenant-sync`.
 * 3. `client.queueStats()` shows the queues, their limits and their use.
 *
 *   npx tsx examples/tenant-limits/main.ts
 * Uses DATABASE_URL when set, else an embedded PostgreSQL.
 */
import pg from 'pg';
import { z } from 'zod';
import { createClient, createWorker, defineWorkflow } from '../../src/index.ts';
import { exampleDatabase } from '../support/database.ts';

// What the step bodies saw, to show the limits held (in this one process;
// the limits themselves are enforced by the claim in SQL for every worker).
const seen = { running: 0, mostRunning: 0, perTenant: new Map<string, number>(), mostPerTenant: 0, partnerCalls: [] as number[] };

const callPartner = defineWorkflow({ name: 'call-partner', queue: 'partner-api', input: z.object({ tenant: z.string(), n: z.number() }) },
  async (ctx, { tenant, n }) => ctx.step('post', () => {
    seen.partnerCalls.push(Date.now());
    return `${tenant}#${n} accepted`;
  }));

const syncTenant = defineWorkflow({ name: 'sync-tenant', queue: 'tenant-sync', input: z.object({ tenant: z.string(), n: z.number() }) },
  async (ctx, { tenant, n }) => {
    await ctx.step('export', async () => {
      seen.running++;
      seen.perTenant.set(tenant, (seen.perTenant.get(tenant) ?? 0) + 1);
      seen.mostRunning = Math.max(seen.mostRunning, seen.running);
      seen.mostPerTenant = Math.max(seen.mostPerTenant, seen.perTenant.get(tenant) ?? 0);
      await new Promise((r) => setTimeout(r, 50));
      seen.running--;
      seen.perTenant.set(tenant, (seen.perTenant.get(tenant) ?? 1) - 1);
    });
    return ctx.child(callPartner, { tenant, n });
  });

const database = await exampleDatabase();
const pool = new pg.Pool({ connectionString: database.url });
const worker = createWorker({ pool, workflows: [syncTenant, callPartner], concurrency: 50, pollInterval: 200 });
const client = createClient({ pool });
try {
  await client.setQueue('tenant-sync', { concurrency: 4, keyConcurrency: 2 });
  await client.setQueue('partner-api', { rate: { limit: 5, period: '1s' } });
  await worker.start();
  const began = Date.now();
  const runs = [
    ...Array.from({ length: 12 }, (_, n) => client.start(syncTenant, { tenant: 'big', n }, { concurrencyKey: 'big' })),
    ...Array.from({ length: 2 }, (_, n) => client.start(syncTenant, { tenant: 'small', n }, { concurrencyKey: 'small' })),
  ];
  const handles = await Promise.all(runs);
  const results = await Promise.all(handles.map((h) => h.result({ timeout: '60s' })));
  console.log(`results: ${results.length}, first: ${results[0]}`);
  console.log(`most running: ${seen.mostRunning} (limit 4), most per tenant: ${seen.mostPerTenant} (limit 2)`);
  const spanMs = Math.max(...seen.partnerCalls) - Math.min(...seen.partnerCalls);
  console.log(`partner calls: ${seen.partnerCalls.length} over ${(spanMs / 1000).toFixed(1)} s (limit 5 per second); all done in ${((Date.now() - began) / 1000).toFixed(1)} s`);
  for (const q of await client.queueStats()) {
    console.log(`queue ${q.queue}: pending ${q.pending}, running ${q.running}, finished last minute ${q.finishedLastMinute}, ` +
      `concurrency ${q.concurrency ?? '-'}, per key ${q.keyConcurrency ?? '-'}, rate ${q.rateLimit ?? '-'}/${q.ratePeriodMs ?? '-'} ms`);
  }
} finally {
  await worker.stop();
  await client.close();
  await pool.end();
  await database.stop();
}
