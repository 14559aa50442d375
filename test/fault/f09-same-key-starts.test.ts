/**
 * F9: many concurrent starts of one workflow with one key, from four
 * clients (each its own pool): one run, and every start answers its id.
 * Quick: 1,000 starts; full: 10,000.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { createClient, type Client } from '../../src/client/client.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';
import { scale } from './harness/harness.ts';

const STARTS = scale(1000, 10_000);
const once = defineWorkflow({ name: 'f9-once', input: z.object({ n: z.number() }) }, async (_ctx, { n }) => n);

let db: TestDatabase;
let clients: Client[] = [];
before(async () => {
  db = await freshDatabase();
  // Thousands of starts queue for 40 connections: give the wait for one more than the default 10 s.
  clients = [1, 2, 3, 4].map(() => createClient({ connectionString: db.url, logger: silentLogger, handoff: false, connectTimeout: 120_000 }));
});
after(async () => {
  for (const c of clients) await c.close();
  await db?.close();
});

describe('F9: concurrent starts with one key', () => {
  it(`make one run (${STARTS} starts)`, async () => {
    const t0 = Date.now();
    const ids = await Promise.all(Array.from({ length: STARTS }, (_, i) =>
      clients[i % clients.length]!.start(once, { n: i }, { key: 'the-one' }).then((r) => r.id)));
    const { rows } = await db.pool.query(`select id, input from trellis.runs`);
    console.log(`# F9 ${scale('quick', 'full')}: ${STARTS} concurrent same-key starts from ${clients.length} clients in ${Date.now() - t0} ms: ${rows.length} run(s)`);
    assert.equal(rows.length, 1);
    assert.equal(new Set(ids).size, 1);
    assert.equal(ids[0], rows[0].id);
  });
});
