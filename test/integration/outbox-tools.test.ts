/**
 * The operator's tools for the outbox: `client.hooks` (list the hook
 * deliveries not yet delivered, parked first; retry a parked one),
 * `client.consumers` (each durable consumer's position and backlog), the
 * `trellis hooks` and `trellis consumers` commands, and the dashboard's
 * Outbox page with its Retry button (refused read-only). Deliveries are made
 * with the engine's own SQL: runs of a version that declares onComplete,
 * completed, and one delivery failed for good (parked).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { captureIo } from '../../src/cli/io.ts';
import { main } from '../../src/cli/main.ts';
import { type Client, createClient } from '../../src/client/client.ts';
import { serveDashboard } from '../../src/dashboard/index.ts';
import { IllegalTransitionError, NotFoundError, ValidationError } from '../../src/errors.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { csrfOf, readOnlyRole, type ReadOnlyRole, Session } from '../helpers/dashboard.ts';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';
import { completedHookedRuns, parkOne } from '../helpers/hook-deliveries.ts';
import { waitFor } from '../helpers/wait.ts';

let db: TestDatabase;
let client: Client;
let runIds: string[];
const sql = async (text: string, values: unknown[] = []) => (await db.pool.query(text, values)).rows;

/** Two completed runs of `hk` (onComplete declared): two deliveries; the first claimed and failed for good. */
async function seed(): Promise<{ parked: string; pending: string }> {
  runIds = await completedHookedRuns(db.pool, 'hk', ['a', 'b']);
  const parked = await parkOne(db.pool, 'hk', 'mail server down');
  const [other] = await sql(`select id::text from trellis.hook_deliveries where id <> $1`, [parked]);
  return { parked, pending: other.id };
}

let ids: { parked: string; pending: string };
before(async () => {
  db = await freshDatabase();
  client = createClient({ pool: db.pool, logger: silentLogger });
  ids = await seed();
  await client.eventConsumer('from-start', { from: 'start' });
  await client.eventConsumer('from-now', { from: 'now' });
});
after(async () => {
  await client?.close();
  await db?.close();
});

/** Make the parked delivery parked again (a test that retried it leaves it pending). */
async function park(id: string): Promise<void> {
  await sql(`update trellis.hook_deliveries set status = 'parked', attempts = 1 where id = $1`, [id]);
}

describe('client.hooks and client.consumers', () => {
  it('list the deliveries parked first, with their error, by status, workflow and run', async () => {
    const all = await client.hooks.list();
    assert.deepEqual(all.map((d) => [d.id, d.status]), [[ids.parked, 'parked'], [ids.pending, 'pending']]);
    assert.deepEqual(all[0]!.lastError, { message: 'mail server down' });
    assert.equal(all[0]!.hook, 'onComplete');
    assert.equal(all[0]!.event, 'completed');
    assert.ok(runIds.includes(all[0]!.runId));
    assert.deepEqual((await client.hooks.list({ status: 'pending' })).map((d) => d.id), [ids.pending]);
    assert.deepEqual(await client.hooks.list({ workflow: 'other' }), []);
    assert.deepEqual((await client.hooks.list({ runId: all[1]!.runId })).map((d) => d.id), [ids.pending]);
    assert.equal((await client.hooks.list({ limit: 1 })).length, 1);
  });

  it('refuse a bad filter or id with ValidationError, and say why a retry cannot be done', async () => {
    await assert.rejects(client.hooks.list({ status: 'done' as never }), ValidationError);
    await assert.rejects(client.hooks.list({ runId: 'x' }), ValidationError);
    await assert.rejects(client.hooks.list({ workflow: "o'; drop table x" }), ValidationError);
    await assert.rejects(client.hooks.list({ limit: 0 }), ValidationError);
    await assert.rejects(client.hooks.retry('abc'), ValidationError);
    await assert.rejects(client.hooks.retry('1; select 1'), ValidationError);
    await assert.rejects(client.hooks.retry('9999999999999999999'), ValidationError, 'past bigint');
    await assert.rejects(client.hooks.retry('999999999'), NotFoundError);
    // A number is an id as SQL shows it; a fraction, NaN or a negative is not.
    await assert.rejects(client.hooks.retry(999999999), NotFoundError);
    for (const bad of [1.5, Number.NaN, -3]) {
      await assert.rejects(client.hooks.retry(bad), (e) => e instanceof ValidationError && e.message.endsWith(`not ${String(bad)}`));
    }
    await assert.rejects(client.hooks.retry(Number(ids.pending)), IllegalTransitionError);
    await assert.rejects(client.hooks.retry(ids.pending), IllegalTransitionError);
    assert.equal((await client.hooks.list({ status: 'parked' })).length, 1, 'nothing changed');
  });

  it('retry makes a parked delivery pending again with a fresh count of attempts', async () => {
    await client.hooks.retry(ids.parked);
    const [d] = await client.hooks.list({ runId: (await client.hooks.list()).find((x) => x.id === ids.parked)!.runId });
    assert.equal(d!.status, 'pending');
    assert.equal(d!.attempts, 0);
    await park(ids.parked);
  });

  it('consumers.list gives each consumer its position and the events kept after it', async () => {
    const [{ n }] = await sql('select count(*)::int as n from trellis.events');
    const rows = await client.consumers.list();
    // 'now' is the read horizon when it was made: events of transactions still open then are after it.
    const [{ after }] = await sql(`select count(*)::int as after from trellis.events e, trellis.event_consumers c
      where c.name = 'from-now' and (e.xid, e.id) > (c.after_xid, c.after_id)`);
    assert.deepEqual(rows.map((r) => [r.name, r.behind]), [['from-now', after], ['from-start', n]]);
    assert.equal(rows[1]!.position, '0:0');
    assert.match(rows[0]!.position, /^\d+:\d+$/);
  });
});

describe('trellis hooks and trellis consumers', () => {
  const cli = async (...args: string[]) => {
    const io = captureIo({ DATABASE_URL: db.url });
    const code = await main(args, io);
    return { code, out: io.stdout, err: io.stderr };
  };

  it('hooks lists the deliveries (parked first), as a table and as JSON, and retries a parked one', async () => {
    const shown = await cli('hooks');
    assert.equal(shown.code, 0, shown.err);
    const lines = shown.out.trim().split('\n');
    assert.match(lines[0]!, /^id\s+status\s+hook\s+workflow\s+run\s+attempts\s+due\s+held by\s+error/);
    assert.match(lines[1]!, new RegExp(`^${ids.parked}\\s+parked\\s+onComplete\\s+hk@1\\s.*mail server down`));
    assert.match(lines[2]!, new RegExp(`^${ids.pending}\\s+pending\\s+onComplete`));
    // A running delivery says which worker holds it and until when (a dead worker's is due again then).
    await sql(`update trellis.hook_deliveries set status = 'running', lease_owner = 'worker-7', lease_expires_at = trellis.now() + interval '1 minute' where id = $1`, [ids.pending]);
    try {
      const held = (await cli('hooks')).out.split('\n').find((l) => l.startsWith(ids.pending));
      assert.match(held ?? '', /\srunning\s.*\sworker-7 until \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}/);
    } finally {
      await sql(`update trellis.hook_deliveries set status = 'pending', lease_owner = null, lease_expires_at = null where id = $1`, [ids.pending]);
    }
    const json = JSON.parse((await cli('hooks', '--status', 'parked', '--json')).out) as { id: string }[];
    assert.deepEqual(json.map((d) => d.id), [ids.parked]);
    const retried = await cli('hooks', 'retry', ids.parked);
    assert.equal(retried.code, 0, retried.err);
    assert.equal(retried.out, `hook delivery ${ids.parked}: pending again\n`);
    assert.deepEqual((await client.hooks.list({ status: 'parked' })), []);
    await park(ids.parked);
  });

  it('hooks refuses bad arguments with exit 2 (usage) or the error\'s code, and changes nothing', async () => {
    assert.equal((await cli('hooks', 'retry')).code, 2);
    assert.equal((await cli('hooks', 'frobnicate')).code, 2);
    assert.equal((await cli('hooks', '--status', 'nope')).code, 2);
    assert.equal((await cli('hooks', '--limit', '0')).code, 2);
    const notParked = await cli('hooks', 'retry', ids.pending);
    assert.notEqual(notParked.code, 0);
    assert.match(notParked.err, /is pending, not parked/);
    assert.equal((await client.hooks.list({ status: 'parked' })).length, 1);
  });

  it('events prints the outbox in commit order, filtered, as lines or JSON, from a cursor, up to a limit', async () => {
    const all = (await sql(`select kind, run_id from trellis.events order by xid, id`)) as { kind: string; run_id: string }[];
    // Events are read below the horizon: other test files' open transactions on the server hold it back a moment.
    await waitFor(async () => (await sql(`select count(*)::int as n from trellis.events_read(null, 10000, '{}')`))[0].n === all.length,
      { what: 'every event readable' });
    const shown = await cli('events');
    assert.equal(shown.code, 0, shown.err);
    const lines = shown.out.trim().split('\n');
    assert.deepEqual(lines.map((l) => l.split(/\s+/)[3]), all.map((e) => e.kind));
    assert.match(lines[0]!, /^\d+:\d+  \S+ \S+  started\s+hk@1  [0-9a-f-]{36}  a$/);
    const completed = await cli('events', '--kind', 'completed', '--workflow', 'hk', '--json');
    const parsed = completed.out.trim().split('\n').map((l) => JSON.parse(l) as { kind: string; runId: string; cursor: string });
    assert.deepEqual(parsed.map((e) => e.kind), ['completed', 'completed']);
    const after = await cli('events', '--after', parsed[0]!.cursor, '--kind', 'completed', '--json');
    assert.deepEqual(after.out.trim().split('\n').map((l) => JSON.parse(l).runId), [parsed[1]!.runId]);
    assert.equal((await cli('events', '--limit', '1')).out.trim().split('\n').length, 1);
    assert.equal((await cli('events', '--run', parsed[0]!.runId, '--kind', 'started', '--json')).out.trim().split('\n').length, 1);
    assert.equal((await cli('events', '--kind', 'nope')).code, 2);
    assert.equal((await cli('events', '--run', 'x')).code, 2);
    assert.equal((await cli('events', '--after', 'soon')).code, 2);
  });

  it('events --follow prints events committed while it runs, until interrupted', async () => {
    let interrupt!: (signal: string) => void;
    const interrupted = new Promise<string>((r) => (interrupt = r));
    const io = captureIo({ DATABASE_URL: db.url });
    const [{ cursor }] = await sql(`select xid::text || ':' || id::text as cursor from trellis.events order by xid desc, id desc limit 1`);
    const running = main(['events', '--follow', '--after', cursor, '--kind', 'started'], io, { interrupted: () => interrupted });
    const [{ id }] = await sql(`select trellis.run_start('hk', '{}', '{"key":"followed"}') as id`);
    await waitFor(() => io.stdout.includes(id), { what: 'the followed start printed' });
    interrupt('SIGINT');
    assert.equal(await running, 0, io.stderr);
    assert.match(io.stdout, new RegExp(`started\\s+hk@1  ${id}  followed\\n$`));
  });

  it('consumers lists each consumer with its position and backlog', async () => {
    const shown = await cli('consumers');
    assert.equal(shown.code, 0, shown.err);
    assert.match(shown.out, /^consumer\s+position\s+behind\s+last ack\s+created/);
    const [{ n }] = await sql(`select count(*)::int as n from trellis.events`);
    assert.match(shown.out, new RegExp(`\\nfrom-start\\s+0:0\\s+${n}\\s`));
    const json = JSON.parse((await cli('consumers', '--json')).out) as { name: string; behind: number }[];
    assert.deepEqual(json.map((c) => c.name), ['from-now', 'from-start']);
  });
});

describe('the dashboard\'s Outbox page', () => {
  let open: { url: string; close(): Promise<void> };
  let ro: ReadOnlyRole;
  let readOnly: { url: string; close(): Promise<void> };
  before(async () => {
    open = await serveDashboard({ pool: db.pool, basePath: '/trellis', logger: silentLogger });
    ro = await readOnlyRole(db);
    readOnly = await serveDashboard({ pool: ro.pool, readOnly: true, logger: silentLogger });
  });
  after(async () => {
    await Promise.all([open?.close(), readOnly?.close()]);
    await ro?.drop();
  });

  it('shows the consumers and the deliveries, and Retry sends a parked one to the workers again', async () => {
    const s = new Session(open.url);
    const page = await (await s.fetch('/trellis/outbox')).text();
    assert.match(page, /<h1>Outbox<\/h1>/);
    assert.match(page, /<tr data-consumer="from-now">/);
    assert.match(page, new RegExp(`<tr data-hook="${ids.parked}">.*?s-failed">parked</span>.*?mail server down.*?<button type="submit">Retry</button>`, 's'));
    const pendingRow = new RegExp(`<tr data-hook="${ids.pending}">.*?</tr>`, 's').exec(page)?.[0] ?? '';
    assert.match(pendingRow, /s-waiting">pending</);
    assert.doesNotMatch(pendingRow, /Retry/, 'no Retry for a pending one');
    const csrf = csrfOf(page);
    const res = await s.post('/trellis/outbox/retry', { _csrf: csrf, id: ids.parked });
    assert.equal(res.status, 303);
    assert.equal(res.headers.get('location'), `/trellis/outbox?done=retry&id=${ids.parked}`);
    assert.equal((await client.hooks.list({ status: 'parked' })).length, 0);
    const after = await (await s.fetch(res.headers.get('location')!)).text();
    assert.match(after, /role="status">Hook delivery \d+ is pending again/);
    const again = await s.post('/trellis/outbox/retry', { _csrf: csrf, id: ids.parked });
    assert.equal(again.status, 409);
    assert.match(await again.text(), /is pending, not parked/);
    const bad = await s.post('/trellis/outbox/retry', { _csrf: csrf, id: 'x' });
    assert.equal(bad.status, 400);
    await park(ids.parked);
  });

  it('the overview warns while a delivery is parked, and links to the Outbox page', async () => {
    const s = new Session(open.url);
    assert.match(await (await s.fetch('/trellis/')).text(), /<p class="error" id="parked-hooks" role="alert">1 hook delivery parked after failing: <a href="\/trellis\/outbox">/);
    await client.hooks.retry(ids.parked);
    assert.doesNotMatch(await (await s.fetch('/trellis/')).text(), /parked-hooks/);
    await park(ids.parked);
  });

  it('read-only: no Retry button, and a posted retry is refused with 403 and changes nothing', async () => {
    const s = new Session(readOnly.url);
    const page = await (await s.fetch('/outbox')).text();
    assert.match(page, new RegExp(`<tr data-hook="${ids.parked}">`));
    assert.doesNotMatch(page, /Retry<\/button>/);
    const res = await s.post('/outbox/retry', { _csrf: 'x', id: ids.parked });
    assert.equal(res.status, 403);
    assert.equal((await client.hooks.list({ status: 'parked' })).length, 1);
  });
});
