/**
 * Session settings a database (or role) gives every session, which change
 * how values come back as text: under a DateStyle other than ISO every
 * timestamp node-postgres read came back null, silently (a schedule never
 * fired, ctx.deadline and every run's times were null), and a negative
 * extra_float_digits rounded the durations Trellis reads as floating point
 * (a one-hour time limit read as 4,000,000 ms; a configuration audit). A
 * worker, the schema check (the CLI, the dashboard) and a client's first
 * read now refuse them with a ConfigurationError that says what to set.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { createClient } from '../../src/client/client.ts';
import { ConfigurationError } from '../../src/errors.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { checkSchema, migrate } from '../../src/schema/install.ts';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { adminUrl, freshDatabase, testPool, type TestDatabase } from '../helpers/db.ts';

const noted = defineWorkflow({ name: 'settings-noted', input: z.object({}) }, async (ctx) => ctx.step('one', () => 1));

let db: TestDatabase;
before(async () => {
  db = await freshDatabase();
});
after(() => db?.close());

describe('session settings Trellis cannot read values under', () => {
  for (const [setting, value, named] of [
    ['datestyle', 'German', /DateStyle is 'German, DMY'.*set DateStyle = 'ISO, MDY'/],
    ['datestyle', 'SQL, DMY', /DateStyle is 'SQL, DMY'/],
    ['extra_float_digits', '-15', /extra_float_digits is -15/],
  ] as const) {
    it(`${setting} = '${value}' on the database: the worker, the schema check and a client's first read refuse it, naming it; reset, they work`, async () => {
      await db.pool.query(`alter database ${db.name} set ${setting} = '${value}'`);
      // New sessions take the database's settings.
      const pool = testPool({ connectionString: db.url, max: 2 });
      const client = createClient({ pool, logger: silentLogger, handoff: false });
      try {
        await assert.rejects(checkSchema(pool), (e: unknown) => e instanceof ConfigurationError && named.test(e.message));
        const worker = createWorker({ pool, workflows: [noted], logger: silentLogger });
        await assert.rejects(worker.start(), (e: unknown) => e instanceof ConfigurationError && named.test(e.message));
        await worker.stop();
        await assert.rejects(client.list({ workflow: noted }), (e: unknown) => e instanceof ConfigurationError && named.test(e.message));
      } finally {
        await client.close();
        await pool.end();
      }
      await db.pool.query(`alter database ${db.name} reset ${setting}`);
      const fresh = testPool({ connectionString: db.url, max: 2 });
      const ok = createClient({ pool: fresh, logger: silentLogger, handoff: false });
      const worker = createWorker({ pool: fresh, workflows: [noted], logger: silentLogger, pollInterval: 50 });
      try {
        await checkSchema(fresh);
        await worker.start();
        const run = await ok.start(noted, {});
        assert.equal(await run.result({ timeout: '20s' }), 1);
        assert.ok((await ok.get(run.id))?.createdAt instanceof Date);
      } finally {
        await worker.stop();
        await ok.close();
        await fresh.end();
      }
    });
  }
});

describe('a database in an encoding other than UTF8', () => {
  it('migrate() refuses it with a ConfigurationError before it installs anything (it failed half-way on a conversion)', async () => {
    const name = `trellis_latin1_${process.pid}`;
    const admin = testPool({ connectionString: adminUrl(), max: 1 });
    try {
      await admin.query(`create database ${name} encoding 'LATIN1' template template0 lc_collate 'C' lc_ctype 'C'`);
      const url = new URL(adminUrl());
      url.pathname = `/${name}`;
      await assert.rejects(migrate(url.toString()), (e: unknown) => e instanceof ConfigurationError && /encoding is LATIN1: Trellis needs UTF8/.test(e.message));
      const pool = testPool({ connectionString: url.toString(), max: 1 });
      try {
        assert.equal((await pool.query(`select count(*)::int as n from pg_namespace where nspname = 'trellis'`)).rows[0].n, 0, 'nothing installed');
      } finally {
        await pool.end();
      }
    } finally {
      await admin.query(`drop database if exists ${name}`);
      await admin.end();
    }
  });
});
