/**
 * Requests a browser does not send but an attacker or a script does (audit):
 * a Host header that names another site (DNS rebinding: a page of
 * attacker.example whose name resolves to 127.0.0.1 reads and drives a
 * tokenless dashboard), a POST with no body, methods the dashboard has no
 * route for, and a login `next` with control characters in it.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { createDashboard, serveDashboard } from '../../src/dashboard/index.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { csrfOf, Session } from '../helpers/dashboard.ts';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';
import { type Engine, startEngine } from '../helpers/engine.ts';
import { waitFor } from '../helpers/wait.ts';

const TOKEN = 'correct horse battery staple';
const waiter = defineWorkflow({ name: 'dashboard-requests-waiter', input: z.object({}) }, async (ctx) => {
  await ctx.waitForSignal('never');
  return 'done';
});

// 1,600 recorded ids (written without a round trip each), then 510 steps (an event each): 2,110 calls, over 500 events.
const long = defineWorkflow({ name: 'dashboard-requests-long', input: z.object({ n: z.number() }) }, async (ctx, { n }) => {
  for (let i = 0; i < 1600; i++) ctx.uuid();
  for (let i = 0; i < n; i++) await ctx.step(`s${i}`, () => i);
  return n;
});

/** One raw HTTP request (any Host header, any method, an optional body), answered with status, headers and body. */
function raw(url: string, method: string, path: string, headers: Record<string, string> = {}, body?: string) {
  return new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }>((resolve, reject) => {
    const target = new URL(path, url);
    const req = request({ host: target.hostname, port: target.port, path: target.pathname + target.search, method, headers, timeout: 10_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { text += chunk; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

describe('dashboard: requests a browser does not send', () => {
  let db: TestDatabase;
  let engine: Engine;
  let open: { url: string; close(): Promise<void> };
  let secured: { url: string; close(): Promise<void> };

  before(async () => {
    db = await freshDatabase();
    engine = await startEngine(db, { workflows: [waiter, long] });
    open = await serveDashboard({ pool: db.pool, logger: silentLogger });
    secured = await serveDashboard({ pool: db.pool, token: TOKEN, logger: silentLogger });
  });
  after(async () => {
    await Promise.all([open?.close(), secured?.close()]);
    await engine?.stop();
    await db?.close();
  });

  it('a tokenless dashboard answers only requests addressed to a loopback name (DNS rebinding), and changes nothing otherwise', async () => {
    const run = await engine.client.start(waiter, {});
    const port = new URL(open.url).port;
    for (const host of [`attacker.example:${port}`, 'attacker.example', `127.0.0.1.nip.io:${port}`]) {
      const page = await raw(open.url, 'GET', `/runs/${run.id}`, { host });
      assert.equal(page.status, 403, host);
      assert.ok(!page.body.includes('_csrf'), 'no CSRF token given out');
      assert.match(page.body, /addressed to/);
      const cancel = await raw(open.url, 'POST', `/runs/${run.id}/cancel`,
        { host, origin: `http://${host}`, 'content-type': 'application/x-www-form-urlencoded' }, 'reason=rebound');
      assert.equal(cancel.status, 403, host);
    }
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, 'localhost', `[::1]:${port}`, `LOCALHOST:${port}`]) {
      const page = await raw(open.url, 'GET', '/', { host });
      assert.equal(page.status, 200, host);
      // Mounted in an app, HSTS with includeSubDomains would bind the app's whole domain: not the dashboard's to send.
      assert.equal(page.headers['strict-transport-security'], undefined);
    }
    await engine.client.startMany(waiter, Array.from({ length: 60 }, () => ({ input: {} })));
    const many = await raw(open.url, 'GET', '/runs?limit=1000', { host: `127.0.0.1:${port}` });
    assert.ok([...many.body.matchAll(/data-run="/g)].length > 60, 'a limit over 200 is 200, not the default 50');
    assert.equal((await engine.client.get(run.id))?.status, 'waiting');
  });

  it('with a token, any Host is served (the token guards it); createDashboard takes allowedHosts', async () => {
    const port = new URL(secured.url).port;
    const page = await raw(secured.url, 'GET', '/', { host: `trellis.internal.example:${port}`, authorization: `Bearer ${TOKEN}` });
    assert.equal(page.status, 200);
    const embedded = createDashboard({ pool: db.pool, logger: silentLogger, allowedHosts: ['admin.example.com'] });
    assert.equal((await embedded.fetch(new Request('http://admin.example.com/'))).status, 200);
    assert.equal((await embedded.fetch(new Request('http://ADMIN.example.com:8443/'))).status, 200);
    assert.equal((await embedded.fetch(new Request('http://localhost/'))).status, 403, 'allowedHosts replaces the loopback default');
    assert.equal((await embedded.fetch(new Request('http://evil.example/'))).status, 403);
    assert.throws(() => createDashboard({ pool: db.pool, allowedHosts: ['bad host/'] }), /allowedHosts/);
  });

  it('an action posted with no body works (resume and retry need no field), and other methods are 404, not 500', async () => {
    const run = await engine.client.start(waiter, {});
    await engine.client.pause(run.id, 'held');
    const auth = { authorization: `Bearer ${TOKEN}` };
    const resumed = await raw(secured.url, 'POST', `/runs/${run.id}/resume`, auth);
    assert.equal(resumed.status, 303, resumed.body.slice(0, 300));
    assert.notEqual((await engine.client.get(run.id))?.status, 'paused');
    for (const method of ['OPTIONS', 'PUT', 'DELETE', 'PATCH']) {
      const res = await raw(secured.url, method, '/', auth);
      assert.equal(res.status, 404, method);
    }
    const tokenless = await raw(open.url, 'POST', `/runs/${run.id}/cancel`, {});
    assert.equal(tokenless.status, 403, 'no body, no CSRF token: refused, not a 500');
    // A body of unknown length (chunked) is read up to the limit: a small one is taken, a large one refused.
    const chunked = { ...auth, 'transfer-encoding': 'chunked', 'content-type': 'application/x-www-form-urlencoded' };
    const small = await raw(secured.url, 'POST', `/runs/${run.id}/cancel`, chunked, 'reason=chunked');
    assert.equal(small.status, 303, small.body.slice(0, 300));
    await waitFor(async () => (await engine.client.get(run.id))?.status === 'cancelled', { what: 'the run cancelled by the chunked form' });
    const large = await raw(secured.url, 'POST', `/runs/${run.id}/cancel`, chunked, `reason=${'x'.repeat(3 * 1024 * 1024)}`);
    assert.equal(large.status, 413);
  });

  it('a run page of a long run shows its newest 2000 calls and 500 events, and says how many there are', async () => {
    const run = await engine.client.start(long, { n: 510 });
    assert.equal(await run.result({ timeout: '60s' }), 510);
    const page = await raw(open.url, 'GET', `/runs/${run.id}`);
    assert.equal(page.status, 200);
    assert.match(page.body, /<h2>Steps <span class="muted truncated">\(the newest 2000 of 2110;/);
    const seqs = [...page.body.matchAll(/data-seq="(\d+)"/g)].map((m) => Number(m[1]));
    assert.equal(Math.max(...seqs), 2109, 'the last call is shown');
    assert.equal(Math.min(...seqs), 110);
    const events = Number((await db.pool.query('select count(*) as n from trellis.events where run_id = $1', [run.id])).rows[0].n);
    assert.ok(events > 500);
    assert.match(page.body, new RegExp(`<h2>Events <span class="muted truncated">\\(the newest 500 of ${events};`));
  });

  it('the signal form takes a payload up to the engine\'s limit (it had its own cap of 1,000,000 characters)', async () => {
    const run = await engine.client.start(waiter, {});
    const s = new Session(open.url.replace(/\/$/, ''));
    const csrf = csrfOf(await (await s.fetch(`/runs/${run.id}`)).text());
    const payload = JSON.stringify({ pad: 'x'.repeat(1_020_000) }); // 1,020,010 bytes, under the 1 MiB default
    const sent = await s.post(`/runs/${run.id}/signal`, { _csrf: csrf, name: 'big', payload });
    assert.equal(sent.status, 303, (await sent.text()).slice(0, 300));
    const { rows } = await db.pool.query('select octet_length(payload::text) as n from trellis.signals where run_id = $1', [run.id]);
    assert.ok(Number(rows[0]?.n) > 1_000_000);
    // Over the engine's limit: refused by the engine, with its own message.
    const over = await s.post(`/runs/${run.id}/signal`, { _csrf: csrf, name: 'big', payload: JSON.stringify({ pad: 'x'.repeat(1_100_000) }) });
    assert.equal(over.status, 400);
    assert.match(await over.text(), /over the limit of 1048576 bytes/);
    await engine.client.cancel(run.id);
  });

  it('a login next with a control character or a space in it goes to the overview, never to another site', async () => {
    const login = await raw(secured.url, 'GET', '/login');
    const cookie = String((login.headers['set-cookie'] as string[] | undefined)?.[0] ?? '').split(';')[0] ?? '';
    for (const next of ['/\t/evil.example/', '/\r\nSet-Cookie: x=1', '/ /evil.example', '/\u0000x', '/\u00a0/evil.example']) {
      const res = await raw(secured.url, 'POST', '/login', {
        origin: secured.url.replace(/\/$/, ''), cookie, 'content-type': 'application/x-www-form-urlencoded',
      }, new URLSearchParams({ token: TOKEN, next }).toString());
      assert.equal(res.status, 303, JSON.stringify(next));
      assert.equal(res.headers.location, '/', JSON.stringify(next));
    }
    const form = await raw(secured.url, 'GET', `/login?next=${encodeURIComponent('/\t/evil.example/')}`);
    assert.match(form.body, /name="next" value="\/"/);
  });
});
