/**
 * PostgreSQL restarting under a busy worker, on a server of this test's own:
 * a backend killed with SIGKILL makes the postmaster end every session and
 * run crash recovery (an immediate restart: in-flight transactions lost,
 * connections refused until it is ready again). Runs in flight must resume
 * within moments of the server accepting connections again (their
 * checkpoints and heartbeats are retried while the lease lasts), not after
 * their lease, and none may fail.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { z } from 'zod';
import { createClient, type Client } from '../../src/client/client.ts';
import { migrate } from '../../src/schema/install.ts';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../../src/testing/embedded-postgres.ts';
import { createWorker, type Worker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { waitFor } from '../helpers/wait.ts';
import { testPool } from '../helpers/db.ts';
import { accepting, untilAccepting } from '../helpers/accepting.ts';

const RUNS = 40;
const LEASE_MS = 60_000;

let server: EmbeddedPostgres;
let url: string;
let admin: pg.Pool;
let client: Client;
let worker: Worker;
/** Step bodies run, by `${run}:${step}`. */
const bodies = new Map<string, number>();

const slow = defineWorkflow({ name: 'restart-three', input: z.object({ n: z.number() }) }, async (ctx, { n }) => {
  let total = n;
  for (const step of ['one', 'two', 'three']) {
    total = await ctx.step(step, async () => {
      const key = `${ctx.runId}:${step}`;
      bodies.set(key, (bodies.get(key) ?? 0) + 1);
      await new Promise((r) => setTimeout(r, 150));
      return total + 1;
    });
  }
  return total;
});

before(async () => {
  server = await startEmbeddedPostgres();
  url = server.urlFor('postgres');
  admin = testPool({ connectionString: url, max: 2 });
  admin.on('error', () => undefined);
  await migrate(admin);
  client = createClient({ connectionString: url, logger: silentLogger, handoff: false });
  worker = createWorker({ connectionString: url, workflows: [slow], leaseDuration: LEASE_MS, logger: silentLogger });
  await worker.start();
});
after(async () => {
  await worker?.stop({ timeout: "1s" });
  await client?.close();
  await admin?.end();
  await server?.stop();
});

describe('a PostgreSQL restart (crash recovery) under a busy worker', () => {
  it('resumes the runs in flight within seconds of the server accepting connections; none fails, none waits a lease', async () => {
    const runs = await Promise.all(Array.from({ length: RUNS }, (_, n) => client.start(slow, { n })));
    await waitFor(async () => {
      const { rows } = await admin.query(`select count(*)::int as n from trellis.steps where status = 'completed'`);
      return rows[0].n >= RUNS / 2;
    }, { what: 'some steps done' });

    const victim = new pg.Client({ connectionString: url });
    await victim.connect();
    victim.on('error', () => undefined);
    const pid = (await victim.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
    process.kill(pid, 'SIGKILL');
    await waitFor(async () => !(await accepting(url)), { interval: 5, what: 'the server to go down' }).catch(() => undefined);
    await untilAccepting(url, { timeout: 60_000, interval: 20, what: 'the server to accept connections again' });
    const up = Date.now();

    const outputs = await Promise.all(runs.map((r) => r.result({ timeout: '40s' })));
    const resumedMs = Date.now() - up;
    assert.deepEqual(outputs, runs.map((_, n) => n + 3));
    assert.ok(resumedMs < LEASE_MS / 3, `every run finished ${resumedMs} ms after the restart, far less than a lease`);
    const { rows } = await admin.query(`select status, count(*)::int as n from trellis.runs group by status`);
    assert.deepEqual(rows, [{ status: 'completed', n: RUNS }]);
    assert.equal(worker.stats.failed, 0);
    // A step whose checkpoint was in flight may run again only if its lease was lost; it was not.
    const twice = [...bodies.entries()].filter(([, count]) => count > 1);
    assert.deepEqual(twice, [], 'no step body ran twice');
    console.log(`# restart: all ${RUNS} runs finished ${resumedMs} ms after the server accepted connections again`);
  });
});
