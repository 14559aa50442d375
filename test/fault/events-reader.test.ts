/**
 * Readers outside the worker outlive a lost connection: the reader client's
 * connections (its pool and its listener) go through a TCP proxy that cuts
 * them and then refuses new ones (a server restarting), while runs keep
 * starting. `client.events()` and a durable consumer's `events()` read again
 * from the same cursor once the server answers, and yield every event once,
 * in order; without following, a fault that outlasts three reads is thrown.
 * `result()` keeps waiting through the outage and returns the output of a
 * run that completed during it.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { createClient, type Client } from '../../src/client/client.ts';
import type { RunEvent } from '../../src/db/events.ts';
import { DatabaseError } from '../../src/errors.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { useFreshDatabase } from '../helpers/database-fixture.ts';
import { testPool } from '../helpers/db.ts';
import { startProxy, throughProxy, type TcpProxy } from '../helpers/tcp-proxy.ts';
import { waitFor } from '../helpers/wait.ts';

let proxy: TcpProxy;
let readerPool: pg.Pool;
let reader: Client;
const fx = useFreshDatabase({
  // In the fixture's own before(): a second top-level before() would not wait for it.
  setUp: async (db) => {
    await db.pool.query(`select trellis.workflow_register('[{"name":"ev","version":"1","queue":"nobody"}]')`);
    proxy = await startProxy({ host: '127.0.0.1', port: Number(new URL(db.url).port) });
    readerPool = testPool({ connectionString: throughProxy(db.url, proxy.port), application_name: 'events-reader', max: 2 });
    reader = createClient({ pool: readerPool, logger: silentLogger, resultPollInterval: 50, handoff: false,
      listenUrl: throughProxy(db.url, proxy.port) });
  },
});
after(async () => {
  await reader?.close();
  await proxy?.close();
});

/** Start `n` runs of `ev` (each its own transaction); their ids. */
async function start(n: number, tag: string): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const { rows } = await fx.db.pool.query(`select trellis.run_start('ev', '{}', $1) as id`, [JSON.stringify({ key: `${tag}-${i}` })]);
    ids.push(rows[0].id);
  }
  return ids;
}

/** Drain `events` into an array in the background; `done` settles when the iteration ends or throws. */
function collect(events: AsyncGenerator<RunEvent>) {
  const seen: RunEvent[] = [];
  const done = (async () => {
    for await (const event of events) seen.push(event);
  })();
  done.catch(() => undefined);
  return { seen, done };
}

/** Refuse the reader's new connections and cut its open ones (awaited: its pool has let them go). */
async function goDown(): Promise<void> {
  proxy.refusing = true;
  // Every connection through the proxy is the reader's: its pool, its listener, its result watch.
  for (const pipe of proxy.pipes) pipe.cut();
  await waitFor(() => readerPool.totalCount === 0, { what: 'the reader\'s pool without connections' });
}

/** Take the server away from the reader until it has tried `tries` more connections (it is let back in by the caller). */
async function outage(tries: number): Promise<void> {
  await goDown();
  const before = proxy.accepted;
  await waitFor(() => proxy.accepted >= before + tries, { what: `${tries} refused connections` });
}

describe('an outbox reader across a lost connection', () => {
  it('client.events() reads again from its cursor and yields every event once, in order', async () => {
    const ac = new AbortController();
    const first = await start(5, 'a');
    const { seen, done } = collect(reader.events({ signal: ac.signal, pollInterval: 20, batchSize: 3 }));
    await waitFor(() => seen.length >= 5, { what: 'the first 5 events' });
    await outage(3);
    const second = await start(5, 'b');
    proxy.refusing = false;
    await waitFor(() => seen.length >= 10, { what: 'the 5 events started during the outage' });
    ac.abort();
    await done;
    assert.deepEqual(seen.map((e) => e.runId), [...first, ...second]);
    assert.equal(new Set(seen.map((e) => e.cursor)).size, seen.length, 'no event twice');
  });

  it('a durable consumer\'s events() does the same, and its stored position moves only with ack', async () => {
    await fx.db.pool.query('truncate trellis.events');
    const consumer = await reader.eventConsumer('through-outage', { from: 'now' });
    const ac = new AbortController();
    const { seen, done } = collect(consumer.events({ signal: ac.signal, pollInterval: 20, batchSize: 2 }));
    const first = await start(3, 'c');
    await waitFor(() => seen.length >= 3, { what: 'the first 3 events' });
    await consumer.ack(seen[2]!);
    await outage(3);
    const second = await start(3, 'd');
    proxy.refusing = false;
    await waitFor(() => seen.length >= 6, { what: 'the 3 events started during the outage' });
    ac.abort();
    await done;
    assert.deepEqual(seen.map((e) => e.runId), [...first, ...second]);
    assert.deepEqual((await consumer.read(10)).map((e) => e.runId), second, 'the position is where the ack left it');
  });

  it('without following, a fault that outlasts three reads is thrown as a retryable DatabaseError', async () => {
    await goDown();
    try {
      const before = proxy.accepted;
      const { done } = collect(reader.events({ follow: false }));
      await assert.rejects(done, (e: unknown) => e instanceof DatabaseError && e.retryable);
      assert.ok(proxy.accepted - before >= 3, `three reads were tried (${proxy.accepted - before} connections)`);
    } finally {
      proxy.refusing = false;
    }
  });

  it('result() keeps waiting through the outage and returns the output of a run that completed during it', async () => {
    const { rows: [{ id }] } = await fx.db.pool.query(`select trellis.run_start('ev', '{}', '{"queue":"result-q"}') as id`);
    const waiting = reader.result(id, { timeout: '60s' });
    waiting.catch(() => undefined);
    // Its listener is connected and its watch taken: then the outage takes them away.
    await waitFor(async () => (await fx.db.pool.query(
      `select 1 from pg_stat_activity where application_name = 'trellis-client-watch' and datname = current_database()`)).rowCount! > 0,
    { what: 'the reader\'s result watch' });
    await outage(3);
    // The run ends while the reader cannot reach the server: its NOTIFY is lost to it.
    const [held] = (await fx.db.pool.query(`select id, lease_token, execution from trellis.run_claim('w1', '{result-q}', '{ev}', '{1}', 1, '30 seconds')`)).rows;
    assert.equal(held.id, id);
    await fx.db.pool.query('select trellis.checkpoint_apply($1)', [JSON.stringify([
      { op: 'complete', run: id, token: held.lease_token, execution: held.execution, output: 'done' }])]);
    const more = proxy.accepted;
    await waitFor(() => proxy.accepted >= more + 2, { what: 'the reader still trying' });
    proxy.refusing = false;
    assert.equal(await waiting, 'done');
  });
});
