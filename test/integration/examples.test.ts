import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startService, type Service } from '../../examples/http-service/main.ts';
import { runExample } from '../helpers/examples.ts';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;


/** The JSON after `prefix` on the first stdout line that starts with it. */
function jsonAfter(stdout: string, prefix: string): unknown {
  const line = stdout.split('\n').find((l) => l.startsWith(prefix));
  assert.ok(line, `no line starting with ${JSON.stringify(prefix)} in:\n${stdout}`);
  return JSON.parse(line.slice(prefix.length));
}

describe('examples', () => {
  let db: TestDatabase;
  before(async () => {
    db = await freshDatabase();
  });
  after(() => db.close());

  it('tenant-limits holds 4 running syncs, 2 per tenant, and the partner queue\'s 5 claims per second', async () => {
    const { code, stdout, stderr } = await runExample('examples/tenant-limits/main.ts', db.url);
    assert.equal(code, 0, `exit ${code}\nstdout:\n${stdout}\nstderr:\n${stderr}`);
    assert.match(stdout, /^results: 14, first: big#0 accepted$/m);
    const [, most, perTenant] = /^most running: (\d+) \(limit 4\), most per tenant: (\d+) \(limit 2\)$/m.exec(stdout) ?? [];
    assert.ok(Number(most) >= 1 && Number(most) <= 4, `most running ${most}`);
    assert.ok(Number(perTenant) >= 1 && Number(perTenant) <= 2, `most per tenant ${perTenant}`);
    // 14 calls at 5 per 1 s window need at least three windows: over a second apart at least.
    const [, calls, span] = /^partner calls: (\d+) over ([\d.]+) s/m.exec(stdout) ?? [];
    assert.equal(Number(calls), 14);
    assert.ok(Number(span) >= 1, `partner calls spanned ${span} s`);
    assert.match(stdout, /^queue tenant-sync: pending 0, running 0, finished last minute 14, concurrency 4, per key 2, rate -\/- ms$/m);
    assert.match(stdout, /^queue partner-api: .* rate 5\/1000 ms$/m);
  });

  it('webhook-hooks posts each completed order from onComplete (retrying a refused post) and a consumer process reads the events', async () => {
    const { code, stdout, stderr } = await runExample('examples/webhook-hooks/main.ts', db.url);
    assert.equal(code, 0, `exit ${code}\nstdout:\n${stdout}\nstderr:\n${stderr}`);
    assert.deepEqual(jsonAfter(stdout, 'order A-2: '), { id: 'A-2', charged: 25 });
    assert.deepEqual(jsonAfter(stdout, 'webhook: '), { id: 'A-1', charged: 10 });
    assert.match(stdout, /^webhook: \{"id":"A-2","charged":25\}$/m);
    assert.match(stdout, /^webhook posts: 3 /m);
    assert.match(stdout, /^consumer: completed A-1$/m);
    assert.match(stdout, /^consumer: completed A-2$/m);
    assert.match(stdout, /^consumer exited 0$/m);
    assert.match(stdout, /^parked: onComplete of order A-3 after 5 refused posts \(webhook answered 503\)$/m);
    assert.match(stdout, /^webhook: order A-3 delivered after client\.hooks\.retry$/m);
    assert.match(stdout, /^consumer order-audit: position \d+:\d+, \d+ events after it$/m);
    assert.deepEqual((await db.pool.query(`select count(*)::int as n from trellis.hook_deliveries`)).rows, [{ n: 0 }], 'every delivery delivered');
    const { rows } = await db.pool.query(`select name from trellis.event_consumers`);
    assert.deepEqual(rows, [{ name: 'order-audit' }]);
  });

  it('plain-sql starts and reads runs with SQL and psql, and exits 0', async () => {
    const { code, stdout, stderr } = await runExample('examples/plain-sql/main.ts', db.url);
    assert.equal(code, 0, `exit ${code}\nstdout:\n${stdout}\nstderr:\n${stderr}`);
    assert.match(stdout, /^started run [0-9a-f-]{36}$/m);
    assert.match(stdout, /^status: completed$/m);
    assert.deepEqual(jsonAfter(stdout, 'output: '), { greeting: 'Hello, Ada!', shouted: 'HELLO, ADA!' });
    assert.match(stdout, /^step 0 compose: completed "Hello, Ada!"$/m);
    assert.match(stdout, /^step 1 shout: completed "HELLO, ADA!"$/m);
    assert.match(stdout, /^unknown workflow: TR002 /m);
    assert.match(stdout, /^bad input: TR001 input of greet version 1 does not match its schema: \$\.name: expected string, got number$/m);
    assert.match(stdout, /^workflow_input_error: \$\.name: required$/m);
    // The psql part (psql is installed on the test machines).
    assert.match(stdout, /^ completed \| \{"shouted": "HELLO, GRACE!", "greeting": "Hello, Grace!"\}$/m);
    assert.match(stdout, /^ +1 \| shout +\| completed \| "HELLO, GRACE!"$/m);

    const { rows } = await db.pool.query(
      `select key, status, output from trellis.runs where workflow = 'greet' order by key`,
    );
    assert.deepEqual(rows, [
      { key: 'greet-ada', status: 'completed', output: { greeting: 'Hello, Ada!', shouted: 'HELLO, ADA!' } },
      { key: 'greet-grace', status: 'completed', output: { greeting: 'Hello, Grace!', shouted: 'HELLO, GRACE!' } },
    ]);
  });

  it('http-service self-demo completes an order and exits 0', async () => {
    const { code, stdout, stderr } = await runExample('examples/http-service/main.ts', db.url);
    assert.equal(code, 0, `exit ${code}\nstdout:\n${stdout}\nstderr:\n${stderr}`);
    const { runId } = jsonAfter(stdout, 'POST /orders -> 202 ') as { runId: string };
    assert.match(runId, UUID);
    assert.match(stdout, /^POST \/orders \(bad body\) -> 400 /m);
    // The POST's start went straight to the worker in the same process.
    assert.match(stdout, /^worker: 1 run\(s\) handed off by this process's starts, 0 claimed from the queue$/m);
    const run = jsonAfter(stdout, `GET /runs/${runId} -> 200 `) as { status: string; output: unknown };
    assert.equal(run.status, 'completed');
    assert.deepEqual(run.output, {
      orderId: 'order-1001',
      reservationId: 'res-order-1001',
      chargeId: `ch-${runId}:1:1`,
      trackingNumber: 'TRK-order-1001',
    });
    const { rows } = await db.pool.query('select name, status from trellis.steps where run_id = $1 order by seq', [runId]);
    assert.deepEqual(rows, [
      { name: 'reserve-stock', status: 'completed' },
      { name: 'charge', status: 'completed' },
      { name: 'ship', status: 'completed' },
    ]);
  });
});

describe('http-service', () => {
  let db: TestDatabase;
  let service: Service;
  let base: string;
  before(async () => {
    db = await freshDatabase();
    service = await startService(db.url);
    base = `http://127.0.0.1:${service.port}`;
  });
  after(async () => {
    await service?.close();
    await db?.close();
  });

  const count = async () => Number((await db.pool.query('select count(*) from trellis.runs')).rows[0].count);
  const post = (body: string) => fetch(`${base}/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });

  it('POST /orders starts a run that completes, and a repeated order returns the same run', async () => {
    const res = await post(JSON.stringify({ orderId: 'A-1', amount: 10 }));
    assert.equal(res.status, 202);
    const { runId } = (await res.json()) as { runId: string };
    assert.match(runId, UUID);

    const run = await waitFor(async () => {
      const r = await fetch(`${base}/runs/${runId}`);
      assert.equal(r.status, 200);
      const body = (await r.json()) as { status: string; output: unknown; key: string };
      return body.status === 'completed' ? body : undefined;
    }, { timeout: 10_000, what: 'the order run to complete' });
    assert.equal(run.key, 'A-1');
    assert.deepEqual(run.output, { orderId: 'A-1', reservationId: 'res-A-1', chargeId: `ch-${runId}:1:1`, trackingNumber: 'TRK-A-1' });

    const again = await post(JSON.stringify({ orderId: 'A-1', amount: 10 }));
    assert.equal(again.status, 202);
    assert.deepEqual(await again.json(), { runId });
    assert.equal(Number((await db.pool.query(`select count(*) from trellis.runs where key = 'A-1'`)).rows[0].count), 1);
  });

  it('POST /orders with a bad body answers 400 with the validation message and starts nothing', async () => {
    const before = await count();
    for (const body of [
      JSON.stringify({ orderId: 'B-1', amount: 'ten' }),
      JSON.stringify({ amount: 5 }),
      JSON.stringify({ orderId: 'B-2', amount: -1 }),
      '[]',
      '{not json',
    ]) {
      const res = await post(body);
      assert.equal(res.status, 400, body);
      const { error } = (await res.json()) as { error: string };
      assert.match(error, /input of order-fulfilment is invalid|not valid JSON/, body);
    }
    const res = await post(JSON.stringify({ orderId: 'B-1', amount: 'ten' }));
    assert.match(((await res.json()) as { error: string }).error, /amount/);
    assert.equal(await count(), before);
  });

  it('GET /runs/:id answers 400 for a malformed id and 404 for an unknown one', async () => {
    const malformed = await fetch(`${base}/runs/not-a-uuid`);
    assert.equal(malformed.status, 400);
    assert.match(((await malformed.json()) as { error: string }).error, /not a UUID/);
    const unknown = await fetch(`${base}/runs/${crypto.randomUUID()}`);
    assert.equal(unknown.status, 404);
  });
});
