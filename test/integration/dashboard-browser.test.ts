/**
 * The dashboard in a real browser: Debian's chromium driven by
 * playwright-core. Loads each page, filters, opens a run and cancels it,
 * pauses a queue from the Queues page,
 * forged and cross-origin posts, markup in an output, read-only mode, login.
 * Without chromium this fails (see test/helpers/browser.ts), it does not skip.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Page } from 'playwright-core';
import { serveDashboard } from '../../src/dashboard/index.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { type Browser, launchChromium } from '../helpers/browser.ts';
import { DASHBOARD_WORKFLOWS, seedRuns, type SeededRuns, XSS_TEXT } from '../helpers/dashboard-fixtures.ts';
import { readOnlyRole, type ReadOnlyRole } from '../helpers/dashboard.ts';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';
import { completedHookedRuns, parkOne } from '../helpers/hook-deliveries.ts';
import { type Engine, startEngine } from '../helpers/engine.ts';
import { waitFor } from '../helpers/wait.ts';

const TOKEN = 'browser-test-token-123';

type Served = { url: string; close(): Promise<void> };

describe('dashboard in chromium', () => {
  let db: TestDatabase;
  let engine: Engine;
  let runs: SeededRuns;
  let ro: ReadOnlyRole;
  let browser: Browser;
  let page: Page;
  let open: Served;
  let readOnly: Served;
  let secured: Served;
  let attacker: Server | undefined;

  before(async () => {
    browser = await launchChromium();
    page = await browser.context.newPage();
    page.setDefaultTimeout(10_000);
    db = await freshDatabase();
    engine = await startEngine(db, { workflows: DASHBOARD_WORKFLOWS });
    runs = await seedRuns(engine.client);
    ro = await readOnlyRole(db);
    // Distinct base paths: the session cookies of dashboards on one host are kept apart by path.
    open = await serveDashboard({ pool: db.pool, basePath: '/trellis', logger: silentLogger });
    readOnly = await serveDashboard({ pool: ro.pool, basePath: '/ro', readOnly: true, logger: silentLogger });
    secured = await serveDashboard({ pool: db.pool, basePath: '/secure', token: TOKEN, logger: silentLogger });
  });
  after(async () => {
    attacker?.closeAllConnections();
    attacker?.close();
    await browser?.close();
    await Promise.all([open?.close(), readOnly?.close(), secured?.close()]);
    await engine?.stop();
    await ro?.drop();
    await db?.close();
  });

  it('loads the overview, the runs list and a run page', async () => {
    await page.goto(open.url);
    assert.equal(await page.locator('h1').textContent(), 'Overview');
    assert.equal(await page.locator('svg.chart').count(), 2);
    assert.equal(await page.locator('.card[data-status="completed"] b').textContent(), '7');
    assert.match(await page.locator('#failures').textContent() ?? '', /card processor down/);
    await page.getByRole('link', { name: 'Runs', exact: true }).click();
    assert.equal(await page.locator('h1').textContent(), 'Runs');
    assert.equal(await page.locator('#runs tbody tr').count(), 10);
    await page.goto(`${open.url}runs/${runs.parent}`);
    assert.match(await page.locator('h1').textContent() ?? '', /fan-out/);
    assert.equal(await page.locator('#children tbody tr').count(), 2);
    await page.locator('#children a').first().click();
    assert.match(await page.locator('h1').textContent() ?? '', /greet/);
    assert.equal(await page.locator('#steps tbody tr').count(), 2);
    await page.locator('#parent').click();
    assert.match(page.url(), new RegExp(`/trellis/runs/${runs.parent}$`));
  });

  it('opens the Queues page from the navigation and pauses a queue through its form', async () => {
    await engine.client.setQueue('browser-mail', { concurrency: 4 });
    await page.goto(open.url);
    await page.getByRole('link', { name: 'Queues', exact: true }).click();
    assert.equal(await page.locator('h1').textContent(), 'Queues');
    const row = page.locator('#queues tr[data-queue="browser-mail"]');
    assert.match(await row.textContent() ?? '', /0 \/ 4/);
    await row.getByRole('button', { name: 'Pause' }).click();
    assert.match(await page.getByRole('status').textContent() ?? '', /Queue browser-mail paused/);
    assert.equal((await engine.client.queueStats('browser-mail'))[0]?.paused, true);
    assert.equal(await row.locator('.badge').textContent(), 'paused');
    await row.getByRole('button', { name: 'Resume' }).click();
    assert.equal((await engine.client.queueStats('browser-mail'))[0]?.paused, false);
  });

  it('opens the Schedules page and runs a schedule now through its form; the notice links the run', async () => {
    // Paused (Run now and Backfill work on a paused schedule): a tick of the real clock must not start a run the test would see.
    await engine.client.schedules.set('browser-nightly', { cron: '0 3 * * *', workflow: 'greet', input: { name: 'Cron' }, paused: true });
    await page.goto(open.url);
    await page.getByRole('link', { name: 'Schedules', exact: true }).click();
    const row = page.locator('#schedules tr[data-schedule="browser-nightly"]');
    await row.getByRole('button', { name: 'Run now' }).click();
    assert.match(await page.getByRole('status').textContent() ?? '', /Schedule browser-nightly started a run now: run [0-9a-f-]{36}/);
    await page.getByRole('status').getByRole('link').click();
    assert.match(await page.locator('h1').textContent() ?? '', /greet/);
    const id = page.url().split('/').at(-1)!;
    assert.equal((await engine.client.get(id))?.key?.startsWith('schedule:browser-nightly:'), true, 'the tick\'s run');
    await engine.client.schedules.delete('browser-nightly');
  });

  it('backfills a schedule\'s past ticks through its form; a second backfill of the range starts nothing', async () => {
    await engine.client.schedules.set('browser-hourly', { cron: '0 * * * *', workflow: 'greet', input: { name: 'Backfill' }, paused: true });
    await page.goto(open.url);
    await page.getByRole('link', { name: 'Schedules', exact: true }).click();
    const row = page.locator('#schedules tr[data-schedule="browser-hourly"]');
    const fill = async () => {
      await row.locator('summary', { hasText: 'Backfill' }).click(); // opens the form
      await row.getByLabel('from (UTC)').fill('2026-03-01T05:00:00');
      await row.getByLabel('to (UTC, empty: now)').fill('2026-03-01T06:30:00');
      await row.getByRole('button', { name: 'Backfill' }).click();
      return await page.getByRole('status').textContent() ?? '';
    };
    assert.match(await fill(), /Schedule browser-hourly backfilled: 2 started\./);
    const { runs } = await engine.client.list({ workflow: 'greet', metadata: { schedule: 'browser-hourly' } });
    assert.deepEqual(runs.map((r) => r.key).sort(), ['05', '06'].map((h) => `schedule:browser-hourly:2026-03-01T${h}:00:00.000Z`));
    assert.match(await fill(), /Schedule browser-hourly backfilled: 2 already run \(not started again\)\./);
    await engine.client.schedules.delete('browser-hourly');
  });

  it('opens the Outbox page from the navigation and retries a parked hook delivery through its form', async () => {
    // A parked delivery of a version no worker here serves, made with the engine's SQL.
    const q = async (text: string, values: unknown[] = []) => (await db.pool.query(text, values)).rows;
    await completedHookedRuns(db.pool, 'browser-hk', ['one']);
    const claimed = { id: await parkOne(db.pool, 'browser-hk', 'webhook answered 500') };

    await page.goto(open.url);
    await page.getByRole('link', { name: 'Outbox', exact: true }).click();
    assert.equal(await page.locator('h1').textContent(), 'Outbox');
    const row = page.locator(`#hooks tr[data-hook="${claimed.id}"]`);
    assert.match(await row.textContent() ?? '', /parked.*webhook answered 500/s);
    await row.getByRole('button', { name: 'Retry' }).click();
    assert.match(await page.getByRole('status').textContent() ?? '', new RegExp(`Hook delivery ${claimed.id} is pending again`));
    assert.equal(await row.locator('.badge').textContent(), 'pending');
    assert.equal(await row.getByRole('button', { name: 'Retry' }).count(), 0);
    assert.deepEqual(await q('select status, attempts from trellis.hook_deliveries where id = $1', [claimed.id]), [{ status: 'pending', attempts: 0 }]);
  });

  it('filters runs by status, workflow and metadata', async () => {
    await page.goto(`${open.url}runs`);
    await page.locator('select[name="status"]').selectOption('failed');
    await page.getByRole('button', { name: 'Search' }).click();
    assert.match(page.url(), /status=failed/);
    assert.deepEqual(await page.locator('#runs tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-run'))), [runs.failed]);
    await page.locator('select[name="status"]').selectOption('');
    await page.locator('select[name="workflow"]').selectOption('greet');
    await page.locator('input[name="metadata"]').fill('plan=pro');
    await page.getByRole('button', { name: 'Search' }).click();
    const ids = await page.locator('#runs tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-run')));
    assert.deepEqual(ids.sort(), [runs.greets[0], runs.greets[2]].sort());
  });

  it('opens a waiting run and cancels it', async () => {
    await page.goto(`${open.url}runs?workflow=approval&status=waiting`);
    const id = runs.approvals[0]!;
    await page.locator(`#runs tr[data-run="${id}"] a`).click();
    assert.match(page.url(), new RegExp(`/runs/${id}$`));
    await page.locator('input[name="reason"]').first().fill('customer left');
    await page.getByRole('button', { name: 'Cancel run' }).click();
    assert.match(await page.getByRole('status').textContent() ?? '', /Cancel requested; the run is now (pending|cancelled)/);
    await waitFor(async () => (await engine.client.get(id))?.status === 'cancelled', { what: 'the run cancelled' });
    await page.reload();
    assert.equal(await page.locator('h1 .badge').textContent(), 'cancelled');
    assert.equal(await page.getByRole('button', { name: 'Cancel run' }).count(), 0);
  });

  it('refuses a form whose CSRF token was tampered with, and changes nothing', async () => {
    const id = runs.approvals[1]!;
    await page.goto(`${open.url}runs/${id}`);
    await page.locator('form[action$="/pause"] input[name="_csrf"]').evaluate((input) => {
      (input as unknown as { value: string }).value = 'forged';
    });
    await page.getByRole('button', { name: 'Pause' }).click();
    assert.match(await page.getByRole('alert').textContent() ?? '', /CSRF token is missing or wrong/);
    const run = await engine.client.get(id);
    assert.equal(run?.status, 'waiting');
    assert.equal(run?.pauseRequestedAt, null);
  });

  it('refuses a post from a page of another origin, even with a valid CSRF token', async () => {
    const id = runs.approvals[1]!;
    await page.goto(`${open.url}runs/${id}`);
    const csrf = await page.locator('form[action$="/cancel"] input[name="_csrf"]').inputValue();
    const target = `${open.url}runs/${id}/cancel`;
    // Another port of the same host: same site, so the session cookie goes along; only the Origin check stops it.
    attacker = createServer((_req, res) => {
      res.setHeader('content-type', 'text/html');
      res.end(`<form method="post" action="${target}"><input name="_csrf" value="${csrf}"></form><script>document.forms[0].submit()</script>`);
    });
    await new Promise<void>((resolve) => attacker!.listen(0, '127.0.0.1', resolve));
    const response = page.waitForResponse((r) => r.url() === target);
    await page.goto(`http://127.0.0.1:${(attacker.address() as AddressInfo).port}/`);
    assert.equal((await response).status(), 403);
    await page.waitForURL(target);
    assert.match(await page.getByRole('alert').textContent() ?? '', /Origin check/);
    assert.equal((await engine.client.get(id))?.status, 'waiting');
  });

  it('shows markup in an output, key and metadata as text and never runs it', async () => {
    await page.goto(`${open.url}runs/${runs.xss}`);
    const output = JSON.parse(await page.locator('#output pre').textContent() ?? 'null') as { text: string };
    assert.equal(output.text, XSS_TEXT);
    // The newest value of its key, as text too.
    assert.equal(await page.locator('#values tbody tr').count(), 1);
    assert.equal(await page.locator('#values tbody tr td').first().textContent(), 'echoed');
    assert.deepEqual(JSON.parse(await page.locator('#values pre').textContent() ?? 'null'), { text: XSS_TEXT });
    assert.match(await page.locator('#values tbody tr').textContent() ?? '', /by call 1/);
    assert.match(await page.locator('dl.facts').textContent() ?? '', /<b>key<\/b>/);
    assert.equal(await page.locator('script').count(), 0);
    assert.equal(await page.locator('main img, main b:text("key")').count(), 0);
    assert.equal(await page.evaluate(() => (globalThis as { __pwned?: number | undefined }).__pwned), undefined);
    await page.goto(`${open.url}runs?key=${encodeURIComponent('<b>')}`);
    assert.equal(await page.locator('#runs tbody tr').count(), 1);
    assert.equal(await page.locator('input[name="key"]').inputValue(), '<b>');
    assert.equal(await page.evaluate(() => (globalThis as { __pwned?: number | undefined }).__pwned), undefined);
  });

  it('read-only on a SELECT-only role: pages render without actions, and a post is refused', async () => {
    await page.goto(readOnly.url);
    assert.equal(await page.locator('h1').textContent(), 'Overview');
    assert.equal(await page.locator('header .badge').textContent(), 'read-only');
    await page.goto(`${readOnly.url}runs/${runs.approvals[1]}`);
    assert.match(await page.locator('h1').textContent() ?? '', /approval/);
    assert.equal(await page.locator('form[method="post"]').count(), 0);
    // A hand-made form of the page's own origin (the page offers none): refused.
    const target = `${readOnly.url}runs/${runs.approvals[1]}/cancel`;
    const response = page.waitForResponse((r) => r.url() === target);
    await page.evaluate((url) => {
      // Runs in the page; the test compiles without the DOM types.
      const document = (globalThis as any).document;
      const form = document.createElement('form');
      form.method = 'post';
      form.action = url;
      document.body.append(form);
      form.submit();
    }, target);
    assert.equal((await response).status(), 403);
    await page.waitForURL(target);
    assert.match(await page.getByRole('alert').textContent() ?? '', /read-only/);
    assert.equal((await engine.client.get(runs.approvals[1]!))?.status, 'waiting');
  });

  it('asks for the token before anything, then returns to the page asked for', async () => {
    await page.goto(`${secured.url}runs?status=failed`);
    assert.match(page.url(), /\/secure\/login\?next=/);
    await page.locator('input[name="token"]').fill('not it');
    await page.getByRole('button', { name: 'Log in' }).click();
    assert.match(await page.getByRole('alert').textContent() ?? '', /not the token/);
    await page.locator('input[name="token"]').fill(TOKEN);
    await page.getByRole('button', { name: 'Log in' }).click();
    assert.match(page.url(), /\/secure\/runs\?status=failed$/);
    assert.equal(await page.locator('#runs tbody tr').count(), 1);
    await page.getByRole('button', { name: 'Log out' }).click();
    assert.match(page.url(), /\/secure\/login$/);
  });
});
