/**
 * The dashboard over HTTP (no browser): pages, search, errors, the token,
 * CSRF and Origin refusals, read-only mode on a SELECT-only role, escaping;
 * the Queues, Schedules and Roles pages and their actions; /metrics.
 * test/integration/dashboard-browser.test.ts drives the same in chromium.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createDashboard, serveDashboard } from '../../src/dashboard/index.ts';
import { ValidationError } from '../../src/errors.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { approval, DASHBOARD_WORKFLOWS, echo, hold, seedRuns, type SeededRuns, streamer, teller, watcher, XSS_TEXT } from '../helpers/dashboard-fixtures.ts';
import { csrfOf, readOnlyRole, type ReadOnlyRole, Session } from '../helpers/dashboard.ts';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';
import { completedHookedRuns } from '../helpers/hook-deliveries.ts';
import { type Engine, startEngine } from '../helpers/engine.ts';
import { waitFor } from '../helpers/wait.ts';

const TOKEN = 'correct horse battery staple';

describe('dashboard over HTTP', () => {
  let db: TestDatabase;
  let engine: Engine;
  let runs: SeededRuns;
  let open: { url: string; close(): Promise<void> };
  let secured: { url: string; close(): Promise<void> };
  let ro: ReadOnlyRole;
  let readOnly: { url: string; close(): Promise<void> };

  before(async () => {
    db = await freshDatabase();
    engine = await startEngine(db, { workflows: DASHBOARD_WORKFLOWS });
    runs = await seedRuns(engine.client);
    ro = await readOnlyRole(db);
    open = await serveDashboard({ pool: db.pool, basePath: '/trellis', logger: silentLogger });
    secured = await serveDashboard({ pool: db.pool, token: TOKEN, logger: silentLogger });
    readOnly = await serveDashboard({ pool: ro.pool, readOnly: true, logger: silentLogger });
  });
  after(async () => {
    await Promise.all([open?.close(), secured?.close(), readOnly?.close()]);
    await engine?.stop();
    await ro?.drop();
    await db?.close();
  });

  it('serves the overview, the runs list and a run page under the base path', async () => {
    const s = new Session(open.url);
    const overview = await s.fetch('/trellis/');
    assert.equal(overview.status, 200);
    const text = await overview.text();
    assert.match(text, /<h1>Overview<\/h1>/);
    assert.match(text, /data-status="failed"><a[^>]*><span class="badge s-failed">failed<\/span><b>1<\/b>/);
    assert.match(text, /<svg class="chart"/);
    assert.match(text, /card processor down/);
    const list = await (await s.fetch('/trellis/runs')).text();
    for (const id of [...runs.greets, runs.failed, runs.parent]) assert.ok(list.includes(`data-run="${id}"`), `run ${id} listed`);
    const page = await (await s.fetch(`/trellis/runs/${runs.parent}`)).text();
    assert.match(page, /<table id="children">/);
    assert.equal([...page.matchAll(/<tr><td><a class="mono" href="\/trellis\/runs\//g)].length, 2, 'two children linked');
    // The run's events from the outbox, in commit order, one row each.
    const { rows: events } = await db.pool.query<{ kind: string }>('select kind from trellis.events where run_id = $1 order by xid, id', [runs.parent]);
    assert.ok(events.length >= 2 && events[0]!.kind === 'started', JSON.stringify(events));
    const shown = [...page.matchAll(/<tr><td>[^<]*<\/td><td>([a-z_]+)<\/td><td>\d+<\/td>/g)].map((m) => m[1]);
    assert.match(page, /<table id="events">/);
    assert.deepEqual(shown, events.map((e) => e.kind));
    const child = await engine.client.list({ workflow: 'greet', key: 'fan-Alan' });
    const childPage = await (await s.fetch(`/trellis/runs/${child.runs[0]!.id}`)).text();
    assert.ok(childPage.includes(`id="parent" class="mono" href="/trellis/runs/${runs.parent}"`));
    assert.ok(!childPage.includes('id="deadline"'), 'no deadline row for a run without one');
    const timed = await engine.client.start('greet', { name: 'Dee' }, { runAt: '2099-01-31T12:00:00Z', deadline: '2099-01-31T17:00:00Z' });
    const timedPage = await (await s.fetch(`/trellis/runs/${timed.id}`)).text();
    assert.match(timedPage, /<dt>deadline<\/dt><dd id="deadline">[^<]*2099-01-31/);
    assert.ok(!timedPage.includes('id="resumes"'), 'no resumes row for a run never resumed automatically');
    // (The count as the resumes duty leaves it: set here, where the page only reads it.)
    await db.pool.query('update trellis.runs set auto_resumes = 2 where id = $1', [timed.id]);
    const resumedPage = await (await s.fetch(`/trellis/runs/${timed.id}`)).text();
    assert.match(resumedPage, /<dd id="resumes"><span class="muted">none due<\/span> <span class="muted">\(2 automatic so far\)<\/span><\/dd>/);
    await engine.client.cancel(timed.id);
    assert.ok(!timedPage.includes('id="forked-from"'), 'no fork row for a run that is not a fork');
    const forked = await engine.client.fork(runs.parent, { fromCall: 1, queue: 'nobody-serves-this' });
    const forkPage = await (await s.fetch(`/trellis/runs/${forked.id}`)).text();
    assert.ok(forkPage.includes(`id="forked-from" class="mono" href="/trellis/runs/${runs.parent}"`), 'links the original');
    assert.match(forkPage, /\(from call 1\)/);
    await engine.client.cancel(forked.id);
    // A run whose key a later start took shows the key it had.
    const keyed = await engine.client.start('greet', { name: 'Kay' }, { key: 'dash-kay', runAt: '2099-01-31T12:00:00Z' });
    await engine.client.cancel(keyed.id);
    const taker = await engine.client.start('greet', { name: 'Kay' }, { key: 'dash-kay', keyPolicy: 'reuse', runAt: '2099-01-31T12:00:00Z' });
    const formerPage = await (await s.fetch(`/trellis/runs/${keyed.id}`)).text();
    assert.match(formerPage, /<dt>key<\/dt><dd><span id="former-key">dash-kay<\/span> <span class="muted">\(taken by a later run\)<\/span>/);
    assert.match(await (await s.fetch(`/trellis/runs/${taker.id}`)).text(), /<dt>key<\/dt><dd>dash-kay<\/dd>/);
    await engine.client.cancel(taker.id);
  });

  it('the overview says when a retention shorter than its range may have purged the runs it counts', async () => {
    const s = new Session(open.url);
    const note = async (range: string) => /id="retention-note">([^<]*)</.exec(await (await s.fetch(`/trellis/?range=${range}`)).text())?.[1];
    assert.equal(await note('7d'), undefined, 'no retention set: nothing purged');
    await engine.client.setRetention('2 hours', { workflow: 'greet' });
    try {
      assert.equal(await note('1h'), undefined, 'the hour is within the retention');
      assert.match(await note('24h') ?? '', /^Retention purges finished runs after 2 h 0 m \(the shortest set\)/);
      await engine.client.setRetention('3 days');
      assert.match(await note('7d') ?? '', /after 2 h 0 m /, 'the shortest of the default and the workflows\' own');
    } finally {
      await engine.client.setRetention(null, { workflow: 'greet' });
      await engine.client.setRetention(null);
    }
    assert.equal(await note('7d'), undefined);
  });

  it('a run page shows the runs it waits for, the runs waiting on it, and its streams', async () => {
    const s = new Session(open.url);
    const target = await engine.client.start(hold, {});
    const waiting = await engine.client.start(watcher, { runId: target.id });
    await waitFor(async () => (await engine.client.get(waiting.id))?.status === 'waiting'
      && (await db.pool.query('select 1 from trellis.run_watches where waiter_id = $1', [waiting.id])).rowCount === 1, { what: 'the watcher parked on the target' });
    const targetPage = await (await s.fetch(`/trellis/runs/${target.id}`)).text();
    assert.match(targetPage, new RegExp(`<table id="watchers">.*<a class="mono" href="/trellis/runs/${waiting.id}">${waiting.id.slice(0, 8)}</a></td><td>watcher</td>`, 's'));
    const waiterPage = await (await s.fetch(`/trellis/runs/${waiting.id}`)).text();
    assert.ok(waiterPage.includes(`<dt>waiting for</dt><dd id="awaiting"><a class="mono" href="/trellis/runs/${target.id}">${target.id}</a>`), 'links the awaited run');
    await engine.client.signal(target.id, 'release', {});
    assert.deepEqual(await waiting.result({ timeout: '20s' }), { output: 'released' });
    const after = await (await s.fetch(`/trellis/runs/${target.id}`)).text();
    assert.ok(!after.includes('id="watchers"'), 'no waiters once it ended');
    assert.ok(!(await (await s.fetch(`/trellis/runs/${waiting.id}`)).text()).includes('id="awaiting"'));
    const streaming = await engine.client.start(streamer, {});
    assert.equal(await streaming.result({ timeout: '20s' }), 'streamed');
    const streamPage = await (await s.fetch(`/trellis/runs/${streaming.id}`)).text();
    assert.match(streamPage, /<table id="streams">.*<tr><td>progress<\/td><td>2<\/td><td>.*&quot;done&quot;: 2.*<\/td><td>closed<\/td><\/tr>/s);
  });

  it('filters by workflow and status and searches by key prefix, run id and metadata', async () => {
    const s = new Session(open.url);
    const ids = async (query: string) => [...(await (await s.fetch(`/trellis/runs?${query}`)).text()).matchAll(/data-run="([^"]+)"/g)].map((m) => m[1]);
    assert.deepEqual(await ids('status=failed'), [runs.failed]);
    assert.deepEqual((await ids('workflow=approval&status=waiting')).sort(), [...runs.approvals].sort());
    assert.deepEqual(await ids('key=greet-gr'), [runs.greets[1]]);
    assert.deepEqual(await ids(`key=${runs.xss}`), [runs.xss]);
    assert.deepEqual(await ids('workflow=greet&metadata=plan%3Dfree'), [runs.greets[1]]);
    assert.deepEqual((await ids(`metadata=${encodeURIComponent('{"plan":"pro"}')}`)).sort(), [runs.greets[0], runs.greets[2]].sort());
    assert.deepEqual(await ids('key=50%25'), [], 'a % in the key is matched literally');
  });

  it('pages through runs with a cursor, each run once', async () => {
    const s = new Session(open.url);
    const seen: string[] = [];
    let path = '/trellis/runs?limit=3';
    const total = (await engine.client.list({ limit: 1000 })).runs.length;
    assert.ok(total >= 10);
    let pages = 0;
    for (; path && pages < 20; pages++) {
      const text = await (await s.fetch(path)).text();
      seen.push(...[...text.matchAll(/data-run="([^"]+)"/g)].map((m) => m[1]!));
      const next = text.match(/rel="next" href="([^"]+)"/)?.[1];
      path = next ? next.replaceAll('&amp;', '&') : '';
    }
    assert.equal(pages, Math.ceil(total / 3));
    assert.equal(seen.length, total);
    assert.equal(new Set(seen).size, total);
  });

  it('answers bad input with a clear 400 or 404 page', async () => {
    const s = new Session(open.url);
    const cases: [string, number, RegExp][] = [
      ['/trellis/runs?status=nope', 400, /unknown run status &quot;nope&quot;/],
      ['/trellis/runs?metadata=%7Bbroken', 400, /is not a JSON object/],
      ['/trellis/runs?metadata=novalue', 400, /is not name=value/],
      ['/trellis/runs?after=garbage', 400, /invalid list cursor/],
      ['/trellis/runs/not-a-uuid', 400, /run id &quot;not-a-uuid&quot; is not a UUID/],
      [`/trellis/runs/${crypto.randomUUID()}`, 404, /does not exist/],
      ['/trellis/?range=1y', 400, /range must be one of/],
      ['/trellis/nowhere', 404, /no page at/],
    ];
    for (const [path, status, message] of cases) {
      const res = await s.fetch(path);
      assert.equal(res.status, status, path);
      assert.match(await res.text(), message, path);
    }
  });

  it('escapes a workflow output, key and metadata that hold markup', async () => {
    const res = await new Session(open.url).fetch(`/trellis/runs/${runs.xss}`);
    const text = await res.text();
    assert.ok(!text.includes('<script>window'), 'no raw script tag');
    assert.ok(!text.includes('<img src'), 'no raw img tag');
    assert.ok(text.includes('&lt;script&gt;window.__pwned = 1&lt;/script&gt;'));
    assert.ok(text.includes('&lt;b&gt;key&lt;/b&gt;'));
    assert.match(res.headers.get('content-security-policy') ?? '', /default-src 'none'/);
    assert.ok(XSS_TEXT.includes('<script>'));
  });

  it('cancels a run with a same-origin form post carrying the CSRF token', async () => {
    const s = new Session(open.url);
    const id = runs.approvals[0]!;
    const csrf = csrfOf(await (await s.fetch(`/trellis/runs/${id}`)).text());
    const res = await s.post(`/trellis/runs/${id}/cancel`, { _csrf: csrf, reason: 'test' });
    assert.equal(res.status, 303);
    assert.match(res.headers.get('location') ?? '', new RegExp(`^/trellis/runs/${id}\\?done=cancel&status=`));
    await waitFor(async () => (await engine.client.get(id))?.status === 'cancelled', { what: 'cancelled' });
  });

  it('refuses a post without the CSRF token, with a wrong one, or from another origin, and changes nothing', async () => {
    const s = new Session(open.url);
    const id = runs.approvals[1]!;
    const csrf = csrfOf(await (await s.fetch(`/trellis/runs/${id}`)).text());
    const attempts: [Record<string, string>, Record<string, string>, RegExp][] = [
      [{}, {}, /CSRF token is missing or wrong/],
      [{ _csrf: `${csrf.slice(0, -2)}xx` }, {}, /CSRF token is missing or wrong/],
      [{ _csrf: csrf }, { origin: 'http://evil.example' }, /Origin check/],
      [{ _csrf: csrf }, { origin: 'null' }, /Origin check/],
    ];
    for (const [fields, headers, message] of attempts) {
      const res = await s.post(`/trellis/runs/${id}/pause`, fields, headers);
      assert.equal(res.status, 403);
      assert.match(await res.text(), message);
    }
    // The token of another session does not work in this one.
    const other = new Session(open.url);
    const otherCsrf = csrfOf(await (await other.fetch(`/trellis/runs/${id}`)).text());
    assert.equal((await s.post(`/trellis/runs/${id}/pause`, { _csrf: otherCsrf })).status, 403);
    const run = await engine.client.get(id);
    assert.equal(run?.status, 'waiting');
    assert.equal(run?.pauseRequestedAt, null);
  });

  it('says only its own words: a crafted link names no schedule, queue or delivery the page does not know, and no notice or range from Object.prototype', async () => {
    const s = new Session(open.url);
    const text = async (path: string) => {
      const res = await s.fetch(path);
      return { status: res.status, body: await res.text() };
    };
    for (const range of ['constructor', '__proto__', 'toString']) {
      const page = await text(`/trellis/?range=${range}`);
      assert.equal(page.status, 400, range);
      assert.match(page.body, /range must be one of 1h, 24h, 7d/);
    }
    for (const done of ['constructor', '__proto__', 'hasOwnProperty']) assert.doesNotMatch((await text(`/trellis/runs/${runs.failed}?done=${done}`)).body, /role="status"/, done);
    await engine.client.schedules.set('notice-real', { cron: '0 5 * * *', workflow: 'greet', input: { name: 'n' } });
    const crafted = ['/trellis/schedules?done=trigger&name=sched-1%20was%20deleted.%20Log%20in%20at%20evil.example&outcome=started',
      '/trellis/schedules?done=trigger&name=notice-real&outcome=FAILED%3A%20log%20in%20again', '/trellis/schedules?done=pause&name=not-a-schedule',
      '/trellis/queues?done=pause&name=not-a-queue', '/trellis/outbox?done=retry&id=1%20failed%3B%20see%20evil.example'];
    for (const path of crafted) assert.doesNotMatch((await text(path)).body, /role="status"/, path);
    assert.match((await text('/trellis/schedules?done=pause&name=notice-real')).body, /<p class="notice" role="status">Schedule notice-real paused/);
    assert.match((await text('/trellis/queues?done=resume&name=default')).body, /<p class="notice" role="status">Queue default resumed/);
    await engine.client.schedules.delete('notice-real');
  });

  it('shows bidirectional controls as what they are, and a search keeps the workflow and page size in force', async () => {
    const key = 'order-\u202Eevil\u202C-1';
    const { id } = await engine.client.start('greet', { name: 'bidi' }, { key });
    const s = new Session(open.url);
    const page = await (await s.fetch(`/trellis/runs/${id}`)).text();
    assert.ok(page.includes('order-⟨U+202E⟩evil⟨U+202C⟩-1'), 'the key with its controls shown');
    assert.ok(!/[\u202a-\u202e\u2066-\u2069]/.test(page), 'no control character reaches the page');
    const searched = await (await s.fetch(`/trellis/runs?key=${encodeURIComponent(key)}`)).text();
    assert.ok(searched.includes(`value="${key}"`), 'the search field keeps the text typed');
    assert.ok(searched.includes(`data-run="${id}"`));
    const filtered = await (await s.fetch('/trellis/runs?workflow=not-registered&limit=120')).text();
    assert.match(filtered, /<option selected>not-registered<\/option>/);
    assert.match(filtered, /<input type="hidden" name="limit" value="120">/);
    assert.doesNotMatch(await (await s.fetch('/trellis/runs?workflow=greet')).text(), /name="limit"/);
  });

  it('asks for the token: login form, wrong token, session cookie, bearer header, logout', async () => {
    const s = new Session(secured.url);
    const first = await s.fetch('/runs?status=failed');
    assert.equal(first.status, 303);
    assert.equal(first.headers.get('location'), '/login?next=%2Fruns%3Fstatus%3Dfailed');
    assert.equal((await s.post('/runs/00000000-0000-0000-0000-000000000000/cancel', {})).status, 401);
    const wrong = await s.post('/login', { token: 'guess', next: '/runs' });
    assert.equal(wrong.status, 401);
    assert.match(await wrong.text(), /That is not the token/);
    const crossSite = await s.post('/login', { token: TOKEN }, { origin: 'http://evil.example' });
    assert.equal(crossSite.status, 403);
    const ok = await s.post('/login', { token: TOKEN, next: '/runs?status=failed' });
    assert.equal(ok.status, 303);
    assert.equal(ok.headers.get('location'), '/runs?status=failed');
    const list = await s.fetch('/runs?status=failed');
    assert.equal(list.status, 200);
    assert.ok((await list.text()).includes(`data-run="${runs.failed}"`));
    const offsite = await new Session(secured.url).post('/login', { token: TOKEN, next: '//evil.example/' });
    assert.equal(offsite.headers.get('location'), '/', 'an off-site next is not followed');
    // Nor one that leaves the dashboard's base path through a dot segment (as a browser resolves it).
    const mounted = createDashboard({ pool: db.pool, token: TOKEN, basePath: '/ops', logger: silentLogger });
    const loginAt = async (next: string) => (await mounted.fetch(new Request('http://x/ops/login', { method: 'POST', headers: { origin: 'http://x' },
      body: new URLSearchParams({ token: TOKEN, next }) }))).headers.get('location');
    for (const next of ['/ops/../app/admin', '/ops/%2e%2e/app/admin', '/ops/./../app', '/ops/x/../../app']) assert.equal(await loginAt(next), '/ops/', next);
    assert.equal(await loginAt('/ops/runs?status=failed'), '/ops/runs?status=failed', 'a page of the dashboard is followed');
    const api = await fetch(new URL('/runs', secured.url), { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(api.status, 200);
    const badApi = await fetch(new URL('/runs', secured.url), { headers: { authorization: 'Bearer nope' }, redirect: 'manual' });
    assert.equal(badApi.status, 303);
    const csrf = csrfOf(await (await s.fetch('/')).text());
    assert.equal((await s.post('/logout', { _csrf: csrf })).status, 303);
    assert.equal((await s.fetch('/runs')).status, 303, 'logged out');
  });

  it('retries a failed run with the bearer token and no CSRF token (header auth is not ambient)', async () => {
    const res = await fetch(new URL(`/runs/${runs.failed}/retry`, secured.url), {
      method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: new URLSearchParams(), redirect: 'manual',
    });
    assert.equal(res.status, 303);
    assert.match(res.headers.get('location') ?? '', /done=retry&status=pending/);
    await waitFor(async () => (await engine.client.get(runs.failed))?.status === 'failed' && (await engine.client.get(runs.failed))!.attempt > 1, { what: 'failed again' });
  });

  it('pauses, resumes and signals a run through its forms; a repeated dedupe id is dropped, a bad payload refused', async () => {
    const s = new Session(open.url);
    const { id } = await engine.client.start(approval, { order: 'B-1' }, { key: 'order-B-1' });
    await waitFor(async () => (await engine.client.get(id))?.status === 'waiting', { what: 'waiting' });
    const csrf = csrfOf(await (await s.fetch(`/trellis/runs/${id}`)).text());
    const act = (verb: string, fields: Record<string, string> = {}) => s.post(`/trellis/runs/${id}/${verb}`, { _csrf: csrf, ...fields });
    assert.match((await act('pause', { reason: 'maintenance' })).headers.get('location') ?? '', /done=pause&status=paused/);
    const paused = await (await s.fetch(`/trellis/runs/${id}?done=pause&status=paused`)).text();
    assert.match(paused, /Pause requested; the run is now paused\./);
    assert.match(paused, /Paused: maintenance/);
    assert.ok(paused.includes('>Resume</button>') && !paused.includes('>Pause</button>'));
    assert.match((await act('resume')).headers.get('location') ?? '', /done=resume&status=pending/);
    const bad = await act('signal', { name: 'approved', payload: '{by:' });
    assert.equal(bad.status, 400);
    assert.match(await bad.text(), /the payload &quot;\{by:&quot; is not JSON/);
    assert.equal((await act('signal', { name: '', payload: '{}' })).status, 400);
    // A number JavaScript would change (1e999 → null, 2^53 + 1 → 2^53) is refused, not sent changed.
    for (const [payload, said] of [['{"by":"ada","n":1e999}', /the number 1e999 is out of JavaScript&#39;s range/], ['{"by":9007199254740993}', /beyond ±\(2\^53 − 1\)/]] as const) {
      const inexact = await act('signal', { name: 'approved', payload });
      assert.equal(inexact.status, 400, payload);
      assert.match(await inexact.text(), said);
    }
    assert.equal((await db.pool.query('select 1 from trellis.signals where run_id = $1', [id])).rowCount, 0, 'no signal sent');
    assert.match((await act('signal', { name: 'approved', payload: '{"by":"ada"}', signalId: 'mail-1' })).headers.get('location') ?? '', /done=signal$/);
    assert.match((await act('signal', { name: 'approved', payload: '{"by":"ada"}', signalId: 'mail-1' })).headers.get('location') ?? '', /done=signal-duplicate$/);
    await waitFor(async () => (await engine.client.get(id))?.status === 'completed', { what: 'completed' });
    assert.deepEqual((await engine.client.get(id))?.output, { order: 'B-1', approved: true, by: 'ada' });
    const page = await (await s.fetch(`/trellis/runs/${id}`)).text();
    assert.match(page, /<table id="signals">/);
    assert.match(page, /by call 1/);
  });

  it('shows a request\'s answer and a refusal beside its signal, escaped', async () => {
    const s = new Session(open.url);
    const { id } = await engine.client.start(teller, {});
    assert.deepEqual(await engine.client.request(id, 'ask', { amount: 30 }, { id: 'req-1', timeout: '20s' }), { balance: 70 });
    await assert.rejects(engine.client.request(id, 'ask', { amount: 500 }, { id: 'req-2', timeout: '20s' }), /insufficient <funds>/);
    const page = await (await s.fetch(`/trellis/runs/${id}`)).text();
    const table = page.slice(page.indexOf('<table id="signals">'), page.indexOf('</table>', page.indexOf('<table id="signals">')));
    assert.match(table, /<th>answer<\/th>/);
    assert.match(table, /req-1[\s\S]*&quot;balance&quot;: 70/);
    assert.match(table, /req-2[\s\S]*refused \(funds\): insufficient &lt;funds&gt;/);
  });

  it('forks a finished run from a call through its form and shows the new run; a bad call number or version is refused', async () => {
    const s = new Session(open.url);
    const id = runs.greets[0]!;
    const page = await (await s.fetch(`/trellis/runs/${id}`)).text();
    assert.ok(page.includes('>Fork from call</button>'), 'a completed run offers a fork');
    const csrf = csrfOf(page);
    const count = async () => (await db.pool.query<{ n: number }>('select count(*)::int as n from trellis.runs')).rows[0]!.n;
    const before = await count();
    assert.equal((await s.post(`/trellis/runs/${id}/fork`, { _csrf: csrf, fromCall: 'two' })).status, 400);
    assert.equal((await s.post(`/trellis/runs/${id}/fork`, { _csrf: csrf, fromCall: '-1' })).status, 400);
    assert.equal((await s.post(`/trellis/runs/${id}/fork`, { _csrf: csrf, fromCall: '1', version: 'nine' })).status, 404);
    assert.equal(await count(), before, 'nothing started');
    const res = await s.post(`/trellis/runs/${id}/fork`, { _csrf: csrf, fromCall: '1' });
    assert.equal(res.status, 303);
    const location = res.headers.get('location') ?? '';
    const forkId = /\/runs\/([0-9a-f-]{36})\?done=fork$/.exec(location)?.[1];
    assert.ok(forkId && forkId !== id, location);
    const forkPage = await (await s.fetch(location)).text();
    assert.match(forkPage, /Forked: this is the new run\./);
    assert.ok(forkPage.includes(`id="forked-from" class="mono" href="/trellis/runs/${id}"`));
    await waitFor(async () => (await engine.client.get(forkId))?.status === 'completed', { what: 'the fork to complete' });
    assert.deepEqual((await engine.client.get(forkId))?.output, (await engine.client.get(id))?.output);
  });

  it('refuses a form body over 2 MiB with 413 before reading it all', async () => {
    const s = new Session(open.url);
    const res = await s.post(`/trellis/runs/${runs.approvals[1]}/signal`, { _csrf: 'x', name: 'approved', payload: 'x'.repeat(3 * 1024 * 1024) });
    assert.equal(res.status, 413);
    assert.match(await res.text(), /larger than 2097152 bytes/);
  });

  it('answers an illegal action with 409 and changes nothing', async () => {
    const s = new Session(open.url);
    const id = runs.greets[0]!;
    // The session's token comes from a waiting run's page.
    const csrf = csrfOf(await (await s.fetch(`/trellis/runs/${runs.approvals[1]}`)).text());
    const res = await s.post(`/trellis/runs/${id}/resume`, { _csrf: csrf });
    assert.equal(res.status, 409);
    assert.match(await res.text(), /is completed, not paused/);
    assert.equal((await engine.client.get(id))?.status, 'completed');
  });

  it('read-only on a SELECT-only role: every page renders, actions are hidden and refused', async () => {
    const s = new Session(readOnly.url);
    for (const path of ['/', '/runs', `/runs/${runs.approvals[1]}`, `/runs/${runs.parent}`, '/queues', '/schedules', '/roles', '/outbox']) {
      const res = await s.fetch(path);
      assert.equal(res.status, 200, path);
      const text = await res.text();
      assert.ok(!text.includes('method="post"'), `no forms on ${path}`);
      assert.match(text, /read-only/);
    }
    const res = await s.post(`/runs/${runs.approvals[1]}/cancel`, {});
    assert.equal(res.status, 403);
    assert.match(await res.text(), /read-only/);
    assert.equal((await engine.client.get(runs.approvals[1]!))?.status, 'waiting');
    // The role really cannot write: an action through it fails in Postgres.
    const writable = createDashboard({ pool: ro.pool, logger: silentLogger, allowedHosts: ['x'] });
    const page = await writable.fetch(new Request(`http://x/runs/${runs.approvals[1]}`));
    const cookie = page.headers.getSetCookie()[0]!.split(';')[0]!;
    const csrf = csrfOf(await page.text());
    const denied = await writable.fetch(new Request(`http://x/runs/${runs.approvals[1]}/cancel`, {
      method: 'POST', headers: { origin: 'http://x', cookie }, body: new URLSearchParams({ _csrf: csrf }),
    }));
    assert.equal(denied.status, 500);
    assert.equal((await engine.client.get(runs.approvals[1]!))?.status, 'waiting');
  });

  it('Queues: stats and limits of each queue; pause and resume through the forms change the queue row', async () => {
    await engine.client.setQueue('mail', { concurrency: 7, keyConcurrency: 2, rate: { limit: 30, period: '1s' } });
    const s = new Session(open.url);
    const page = await s.fetch('/trellis/queues');
    assert.equal(page.status, 200);
    const text = await page.text();
    assert.match(text, /<a href="\/trellis\/queues" class="on">Queues<\/a>/);
    const row = text.match(/<tr data-queue="mail">[\s\S]*?<\/tr>/)?.[0] ?? '';
    assert.match(row, /0 \/ 7/, 'running / concurrency');
    assert.match(row, /0 \/ 2/, 'busiest key / key concurrency');
    assert.match(row, /0 \/ 30 per 1\.0 s/, 'rate use');
    assert.match(row, />Pause<\/button>/);
    assert.match(text, /<tr data-queue="default">/, 'the queue of the registered workflows');
    const csrf = csrfOf(text);
    const paused = await s.post('/trellis/queues/pause', { _csrf: csrf, name: 'mail' });
    assert.equal(paused.status, 303);
    assert.equal(paused.headers.get('location'), '/trellis/queues?done=pause&name=mail');
    assert.equal((await engine.client.queueStats('mail'))[0]?.paused, true);
    const after = await (await s.fetch(paused.headers.get('location')!)).text();
    assert.match(after, /Queue mail paused/);
    assert.match(after.match(/<tr data-queue="mail">[\s\S]*?<\/tr>/)?.[0] ?? '', /s-paused">paused<\/span>[\s\S]*>Resume<\/button>/);
    assert.equal((await s.post('/trellis/queues/resume', { _csrf: csrf, name: 'mail' })).status, 303);
    assert.equal((await engine.client.queueStats('mail'))[0]?.paused, false);
    // The usual refusals apply, and a bad name is a 400.
    assert.equal((await s.post('/trellis/queues/pause', { name: 'mail' })).status, 403);
    assert.equal((await s.post('/trellis/queues/pause', { _csrf: csrf, name: 'mail' }, { origin: 'http://evil.example' })).status, 403);
    assert.equal((await s.post('/trellis/queues/pause', { _csrf: csrf, name: '<b>' })).status, 400);
    assert.equal((await s.post('/trellis/queues/drain', { _csrf: csrf, name: 'mail' })).status, 404);
    assert.equal((await engine.client.queueStats('mail'))[0]?.paused, false);
  });

  it('Schedules: the rows of client.schedules, the input escaped; pause and resume through the forms', async () => {
    await engine.client.schedules.set('nightly-echo', { cron: '0 3 * * *', timeZone: 'Europe/Berlin', workflow: echo, input: { text: XSS_TEXT } });
    const s = new Session(open.url);
    const text = await (await s.fetch('/trellis/schedules')).text();
    const row = text.match(/<tr data-schedule="nightly-echo">[\s\S]*?<\/tr>/)?.[0] ?? '';
    assert.match(row, /<td class="mono">0 3 \* \* \*<\/td><td>Europe\/Berlin<\/td>/);
    assert.match(row, /href="\/trellis\/runs\?workflow=echo">echo<\/a>/);
    const next = (await engine.client.schedules.get('nightly-echo'))!.nextAt!;
    assert.ok(row.includes(next.toISOString().slice(0, 19).replace('T', ' ')), 'the next tick');
    assert.ok(!text.includes('<script>window') && !text.includes('<img src'), 'the input is escaped');
    assert.ok(row.includes('&lt;script&gt;window.__pwned = 1&lt;/script&gt;'));
    const csrf = csrfOf(text);
    const paused = await s.post('/trellis/schedules/pause', { _csrf: csrf, name: 'nightly-echo' });
    assert.equal(paused.status, 303);
    assert.equal(paused.headers.get('location'), '/trellis/schedules?done=pause&name=nightly-echo');
    assert.equal((await engine.client.schedules.get('nightly-echo'))?.paused, true);
    const after = await (await s.fetch(paused.headers.get('location')!)).text();
    assert.match(after, /Schedule nightly-echo paused/);
    assert.match(after.match(/<tr data-schedule="nightly-echo">[\s\S]*?<\/tr>/)?.[0] ?? '', /s-paused">paused[\s\S]*>Resume<\/button>/);
    assert.equal((await s.post('/trellis/schedules/resume', { _csrf: csrf, name: 'nightly-echo' })).status, 303);
    assert.equal((await engine.client.schedules.get('nightly-echo'))?.paused, false);
    // Resumed: active with its next tick at once, never "no next tick" until the ticker's round.
    const resumed = (await (await s.fetch('/trellis/schedules')).text()).match(/<tr data-schedule="nightly-echo">[\s\S]*?<\/tr>/)?.[0] ?? '';
    assert.match(resumed, /s-running">active/);
    assert.ok(resumed.includes(next.toISOString().slice(0, 19).replace('T', ' ')), 'the next tick');
    await engine.client.schedules.delete('nightly-echo'); // live on the real clock: no tick of it may reach the tests after
    const missing = await s.post('/trellis/schedules/pause', { _csrf: csrf, name: 'no-such-schedule' });
    assert.equal(missing.status, 404);
    // Run now: a run started as a tick at this moment would, linked from the notice; a second is skipped (overlap skip, the first unfinished).
    // Paused (Run now and Backfill work on a paused schedule): a tick of the real clock must not start a run the counts below would see.
    await engine.client.schedules.set('held-now', { cron: '0 3 * * *', workflow: hold, input: {}, paused: true });
    const triggered = await s.post('/trellis/schedules/trigger', { _csrf: csrf, name: 'held-now' });
    assert.equal(triggered.status, 303);
    const location = new URL(triggered.headers.get('location')!, 'http://x');
    assert.deepEqual([location.pathname, location.searchParams.get('done'), location.searchParams.get('outcome')], ['/trellis/schedules', 'trigger', 'started']);
    const runId = location.searchParams.get('run')!;
    const started = await engine.client.get(runId);
    assert.deepEqual([started?.workflow, (started?.metadata as { manual?: string })?.manual], ['hold', 'trigger']);
    const shown = await (await s.fetch(`${location.pathname}${location.search}`)).text();
    assert.match(shown, new RegExp(`Schedule held-now started a run now: run <a href="/trellis/runs/${runId}">`));
    const again = new URL((await s.post('/trellis/schedules/trigger', { _csrf: csrf, name: 'held-now' })).headers.get('location')!, 'http://x');
    assert.equal(again.searchParams.get('outcome'), 'skipped');
    assert.match(await (await s.fetch(`${again.pathname}${again.search}`)).text(), /Schedule held-now skipped: its last run has not finished/);
    assert.equal((await s.post('/trellis/schedules/trigger', { _csrf: csrf, name: 'no-such-schedule' })).status, 404);
    // Backfill: the runs of a past range's ticks (times read as UTC), each at most once; counted in the notice.
    await engine.client.schedules.set('held-back', { cron: '0 * * * *', workflow: hold, input: {}, paused: true });
    const backfill = (fields: Record<string, string>) => s.post('/trellis/schedules/backfill', { _csrf: csrf, name: 'held-back', ...fields });
    const filled = await backfill({ from: '2026-01-01T00:00', to: '2026-01-01T02:30:00', overlap: '' });
    assert.equal(filled.status, 303);
    const filledAt = new URL(filled.headers.get('location')!, 'http://x');
    assert.deepEqual(['done', 'started', 'existing', 'skipped'].map((k) => filledAt.searchParams.get(k)), ['backfill', '3', '0', '0']);
    assert.match(await (await s.fetch(`${filledAt.pathname}${filledAt.search}`)).text(), /Schedule held-back backfilled: 3 started\./);
    const ticks = (await engine.client.list({ workflow: 'hold', metadata: { schedule: 'held-back' } })).runs.map((r) => r.key).sort();
    assert.deepEqual(ticks, ['00', '01', '02'].map((h) => `schedule:held-back:2026-01-01T${h}:00:00.000Z`));
    const repeated = new URL((await backfill({ from: '2026-01-01T00:00', to: '2026-01-01T02:30' })).headers.get('location')!, 'http://x');
    assert.deepEqual(['started', 'existing'].map((k) => repeated.searchParams.get(k)), ['0', '3']);
    assert.match(await (await s.fetch(`${repeated.pathname}${repeated.search}`)).text(), /Schedule held-back backfilled: 3 already run \(not started again\)\./);
    // Bad input: a clear 400 and nothing started.
    for (const [fields, message] of [[{ from: '' }, /needs from/], [{ from: '01/01/2026 00:00' }, /UTC date and time/],
      [{ from: '2026-01-01T00:00', overlap: 'sometimes' }, /overlap must be one of/], [{ from: '2026-01-01T03:00', to: '2026-01-01T01:00' }, /from must not be later than to/],
      [{ from: '2999-01-01T00:00' }, /must not be later than|from must not be later/],
      [{ from: '2026-02-30T00:00' }, /UTC date and time/], [{ from: '2026-01-01T24:00' }, /UTC date and time/]] as const) {
      const res = await backfill(fields);
      assert.equal(res.status, 400, JSON.stringify(fields));
      assert.match(await res.text(), message);
    }
    assert.equal((await engine.client.list({ workflow: 'hold', metadata: { schedule: 'held-back' } })).runs.length, 3, 'nothing more started');
    assert.equal((await s.post('/trellis/schedules/backfill', { _csrf: csrf, name: 'no-such-schedule', from: '2026-01-01T00:00' })).status, 404);
    assert.equal((await s.post('/trellis/schedules/backfill', { _csrf: 'forged', name: 'held-back', from: '2026-01-01T00:00' })).status, 403, 'CSRF-checked');
    await engine.client.cancelMany({ workflow: 'hold', metadata: { schedule: 'held-back' } });
    await engine.client.cancel(runId);
  });

  it('Roles: the engine\'s duties once a worker holds them, with holder, token and lease', async () => {
    const s = new Session(open.url);
    const row = await waitFor(async () => {
      const text = await (await s.fetch('/trellis/roles')).text();
      const match = text.match(/<tr data-role="trellis\.schedules">[\s\S]*?<\/tr>/)?.[0];
      return match?.includes('>held</span>') ? match : undefined;
    }, { what: 'the schedule ticker role on the Roles page' });
    const [role] = (await engine.client.roles.list()).filter((r) => r.name === 'trellis.schedules');
    assert.ok(role?.holder && row.includes(`<td class="mono">${role.holder}</td>`), 'the holder');
    assert.ok(row.includes(`<td class="num">${role.token}</td>`), 'the fencing token');
    assert.ok(!row.includes('method="post"'), 'roles have no actions');
  });

  it('read-only: Queues, Schedules and Roles render on the SELECT-only role without forms; their actions are refused', async () => {
    await engine.client.setQueue('ro-queue', { concurrency: 3 });
    await engine.client.schedules.set('ro-schedule', { cron: '0 4 * * *', workflow: 'greet', input: { name: 'x' } });
    const s = new Session(readOnly.url);
    for (const [path, marker] of [['/queues', 'data-queue="ro-queue"'], ['/schedules', 'data-schedule="ro-schedule"'], ['/roles', '<h1>Roles</h1>']] as const) {
      const res = await s.fetch(path);
      assert.equal(res.status, 200, path);
      const text = await res.text();
      assert.ok(text.includes(marker), `${marker} on ${path}`);
      assert.ok(!text.includes('method="post"'), `no forms on ${path}`);
    }
    for (const path of ['/queues/pause', '/schedules/pause', '/schedules/trigger', '/schedules/backfill']) {
      const res = await s.post(path, { name: path.startsWith('/queues') ? 'ro-queue' : 'ro-schedule' });
      assert.equal(res.status, 403, path);
      assert.match(await res.text(), /read-only/);
    }
    assert.equal((await engine.client.queueStats('ro-queue'))[0]?.paused, false);
    assert.equal((await engine.client.schedules.get('ro-schedule'))?.paused, false);
  });

  it('/metrics: Prometheus text with the token (bearer or session), 401 without; absent unless opted in', async () => {
    const withMetrics = createDashboard({ pool: db.pool, token: TOKEN, metrics: true, basePath: '/ops', logger: silentLogger });
    const scrape = await withMetrics.fetch(new Request('http://x/ops/metrics', { headers: { authorization: `Bearer ${TOKEN}` } }));
    assert.equal(scrape.status, 200);
    assert.match(scrape.headers.get('content-type') ?? '', /^text\/plain/);
    const text = await scrape.text();
    assert.match(text, /^# HELP trellis_/m);
    assert.match(text, /^trellis_queue_depth\{queue="default"\} \d+$/m);
    const anonymous = await withMetrics.fetch(new Request('http://x/ops/metrics'));
    assert.equal(anonymous.status, 401);
    assert.doesNotMatch(await anonymous.text(), /trellis_queue_depth/);
    assert.equal((await withMetrics.fetch(new Request('http://x/ops/metrics', { headers: { authorization: 'Bearer wrong-token-here' } }))).status, 401);
    // A browser session logged in with the token may read it too.
    const login = await withMetrics.fetch(new Request('http://x/ops/login', { method: 'POST', headers: { origin: 'http://x' }, body: new URLSearchParams({ token: TOKEN, next: '/ops/metrics' }) }));
    const cookie = login.headers.getSetCookie()[0]!.split(';')[0]!;
    assert.equal((await withMetrics.fetch(new Request('http://x/ops/metrics', { headers: { cookie } }))).status, 200);
    // Off by default: /metrics is no page.
    const secure = new Session(secured.url);
    assert.equal((await fetch(new URL('/metrics', secured.url), { headers: { authorization: `Bearer ${TOKEN}` } })).status, 404);
    assert.equal((await secure.fetch('/metrics')).status, 303, 'without the option, an unknown page asks for the login first');
  });

  it('passes requests outside its base path to next() when mounted as middleware', async () => {
    const dashboard = createDashboard({ pool: db.pool, basePath: '/ops/trellis/', logger: silentLogger, allowedHosts: ['x'] });
    assert.equal(dashboard.basePath, '/ops/trellis');
    let passed = 0;
    dashboard.handle({ url: '/api/orders' } as never, {} as never, () => passed++);
    assert.equal(passed, 1);
    const res = await dashboard.fetch(new Request('http://x/ops/trellis/runs'));
    assert.equal(res.status, 200);
  });

  it('shows a value stored nested deeper than JSON.stringify can write (written past the engine\'s functions) as a note, not a 500', async () => {
    const run = await engine.client.start(echo, { text: 'deep' });
    await run.result({ timeout: '20s' });
    const deep = `${'['.repeat(5000)}${']'.repeat(5000)}`;
    await db.pool.query(`update trellis.runs set output = $2::jsonb, metadata = jsonb_build_object('d', $2::jsonb) where id = $1`, [run.id, deep]);
    try {
      const s = new Session(open.url);
      for (const path of [`/trellis/runs/${run.id}`, '/trellis/runs']) {
        const page = await s.fetch(path);
        assert.equal(page.status, 200, path);
        if (path.includes(run.id)) assert.match(await page.text(), /nested too deep to show: over 1000 arrays or objects/);
      }
    } finally {
      await db.pool.query(`update trellis.runs set output = '"deep"', metadata = '{}' where id = $1`, [run.id]);
    }
  });

  it('the Outbox page shows which worker holds a running hook delivery and until when', async () => {
    await completedHookedRuns(db.pool, 'held-hk', ['one']);
    const [{ id }] = (await db.pool.query(`update trellis.hook_deliveries set status = 'running', lease_owner = 'worker-seven',
      lease_expires_at = trellis.now() + interval '1 minute' where workflow = 'held-hk' returning id::text`)).rows;
    try {
      const page = await (await new Session(open.url).fetch('/trellis/outbox')).text();
      assert.match(page, /<th>held by<\/th>/);
      const row = page.slice(page.indexOf(`data-hook="${id}"`), page.indexOf('</tr>', page.indexOf(`data-hook="${id}"`)));
      assert.match(row, /worker-seven<\/span> until /);
    } finally {
      await db.pool.query(`delete from trellis.hook_deliveries where workflow = 'held-hk'`);
    }
  });

  it('refuses bad options with a ValidationError', async () => {
    assert.throws(() => createDashboard({ pool: db.pool, basePath: 'no-slash' }), ValidationError);
    assert.throws(() => createDashboard({ pool: db.pool, basePath: '/a b' }), ValidationError);
    assert.throws(() => createDashboard({ pool: db.pool, token: 'short' }), ValidationError);
    // A token with spaces at its ends (all spaces too) could never match the bearer header, read trimmed.
    for (const token of [' '.repeat(16), ` ${TOKEN}`, `${TOKEN}\n`]) assert.throws(() => createDashboard({ pool: db.pool, token }), /without spaces at its ends/);
    // A base path a browser resolves away ('.', '..') would leave every page unreachable.
    for (const basePath of ['/.', '/..', '/a/../b', '/a/./b', '/ops/..']) assert.throws(() => createDashboard({ pool: db.pool, basePath }), ValidationError, basePath);
    assert.equal(createDashboard({ pool: db.pool, basePath: '/.well-known..x/a.b', logger: silentLogger }).basePath, '/.well-known..x/a.b', 'dots inside a segment are fine');
    assert.throws(() => createDashboard({} as never), ValidationError);
    await assert.rejects(serveDashboard({ pool: db.pool, host: '0.0.0.0' }), /needs a token/);
    await assert.rejects(serveDashboard({ pool: db.pool, port: 70000 }), ValidationError);
  });
});
