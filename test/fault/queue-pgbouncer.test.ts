/**
 * Flow control through a real PgBouncer in transaction mode (Debian's
 * package, started here on 127.0.0.1 and stopped by its pid; see
 * test/helpers/pgbouncer.ts): three worker processes claim through it, each
 * statement possibly on another server connection, and LISTEN goes direct.
 * The limits hold because they live in the claim transaction (the queue
 * row's lock and the count of running runs), not in a session.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createClient, type Client } from '../../src/client/client.ts';
import { migrate } from '../../src/schema/install.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { createDatabase, testPool } from '../helpers/db.ts';
import { type Bouncer, startPgBouncer } from '../helpers/pgbouncer.ts';
import { waitFor } from '../helpers/wait.ts';
import { killIfRunning, spawnReady } from './harness/ready-process.ts';

let database: Awaited<ReturnType<typeof createDatabase>>;
let bouncer: Bouncer;
let direct: pg.Pool;
let client: Client;
const children: ChildProcess[] = [];

before(async () => {
  database = await createDatabase();
  await migrate(database.url);
  // Fewer server connections than the workers' pools: statements of one
  // worker land on connections another worker used a moment before.
  bouncer = await startPgBouncer(database.url, { default_pool_size: 3 });
  direct = testPool({ connectionString: database.url, max: 3 });
  client = createClient({ connectionString: bouncer.url, listenUrl: database.url, logger: silentLogger, handoff: false });
});
after(async () => {
  children.forEach(killIfRunning);
  await client?.close();
  await direct?.end();
  await bouncer?.stop();
  await database?.drop();
});

async function spawnWorker(queue: string): Promise<ChildProcess> {
  return spawnReady('test/fault/queue-process.ts', { DATABASE_URL: bouncer.url, LISTEN_URL: database.url, FLOW_QUEUE: queue, CONCURRENCY: '10' },
    { what: `worker on ${queue} ready`, timeout: 90_000, into: children });
}

describe('queue limits through PgBouncer in transaction mode', () => {
  it('three workers behind PgBouncer never run more than 3 runs of the queue, nor more than 2 of one key', async () => {
    await client.setQueue('bounced', { concurrency: 3, keyConcurrency: 2 });
    await Promise.all([spawnWorker('bounced'), spawnWorker('bounced'), spawnWorker('bounced')]);
    for (let i = 0; i < 30; i++) {
      await client.start('flow-job', { ms: 150 }, { queue: 'bounced', concurrencyKey: i % 2 ? 'tenant-a' : 'tenant-b' });
    }
    let most = 0;
    let mostPerKey = 0;
    let samples = 0;
    // Sampled on a direct connection while the workers run.
    await waitFor(async () => {
      const { rows } = await direct.query(`select count(*)::int as n, coalesce(max(k.n), 0)::int as per_key,
                                                  (select count(*)::int from trellis.runs where queue = 'bounced' and status = 'completed') as done
                                             from trellis.runs r
                                             left join lateral (select count(*) as n from trellis.runs x
                                                                 where x.queue = 'bounced' and x.status = 'running'
                                                                   and x.concurrency_key = r.concurrency_key) k on true
                                            where r.queue = 'bounced' and r.status = 'running'`);
      most = Math.max(most, rows[0].n);
      mostPerKey = Math.max(mostPerKey, rows[0].per_key);
      samples++;
      return rows[0].done === 30;
    }, { what: '30 runs completed', interval: 5, timeout: 90_000 });
    assert.ok(most <= 3, `at most 3 running, saw ${most}`);
    assert.ok(mostPerKey <= 2, `at most 2 running per key, saw ${mostPerKey}`);
    assert.equal(most, 3, 'the limit is reached (the workers do run in parallel)');
    assert.ok(samples > 10, `sampled ${samples} times`);
    const { rows } = await direct.query(`select count(distinct (output #>> '{}'))::int as n from trellis.runs where queue = 'bounced'`);
    assert.ok(rows[0].n >= 2, `runs finished on ${rows[0].n} worker processes`);
    for (const c of children.splice(0)) {
      c.kill('SIGTERM');
      await once(c, 'exit');
    }
  });
});
