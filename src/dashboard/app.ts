/**
 * The dashboard as a Hono app: security headers, the token and session
 * check, CSRF and Origin checks on every POST, the pages of pages/index.ts,
 * the run, queue and schedule actions, `/metrics` (opt-in), and error
 * pages. Rendering is in pages/; reads in queries.ts or the client's read
 * functions; writes only through the client (actions.ts).
 */
import { type Context, Hono } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { secureHeaders } from 'hono/secure-headers';
import type { Pool } from '../db/pg.ts';
import { createClient, type Client } from '../client/client.ts';
import { isTrellisError } from '../errors.ts';
import type { Logger } from '../protocol/logger.ts';
import { createMetrics, type TrellisMetrics } from '../observability/metrics.ts';
import { hookRetryAction, isActionVerb, isToggleVerb, performAction, queueAction, scheduleAction, scheduleBackfillAction, scheduleTriggerAction } from './actions.ts';
import { bearer, sameOrigin, SESSION_COOKIE, SESSION_MS, Sessions } from './auth.ts';
import { html } from './html.ts';
import { layout } from './layout.ts';
import { HttpError, type PageView } from './page.ts';
import { PAGES } from './pages/index.ts';
import { assertUuid } from './queries.ts';

/** What `createDashboard` resolved its options to. */
export interface AppConfig {
  pool: Pool;
  /** Where pages and metrics read (a standby, or `pool`). */
  readPool: Pool;
  token: string | undefined;
  readOnly: boolean;
  /** '' or '/x' (no trailing slash). */
  basePath: string;
  logger: Logger;
  preparedStatements: boolean;
  /** Serve Prometheus metrics at `<basePath>/metrics`. */
  metrics: boolean;
  /** The host names (lower case, no port) requests may be addressed to; undefined: any. */
  allowedHosts: ReadonlySet<string> | undefined;
}

/** The host name a request was addressed to (its Host header, else its URL), lower case, without the port. */
function requestHost(hostHeader: string | undefined, url: string): string | undefined {
  try {
    return new URL(`http://${hostHeader ?? new URL(url).host}`).hostname.toLowerCase();
  } catch {
    return undefined;
  }
}

type Env = { Variables: { sessionId: string | undefined; viaHeader: boolean } };

/** The largest form body accepted. */
const MAX_FORM_BYTES = 2 * 1024 * 1024;

const STATUS_OF: Record<string, number> = { validation: 400, payload_too_large: 400, not_found: 404, illegal_transition: 409 };

/** The Hono app of one dashboard (createDashboard wraps it as fetch and Node handlers). */
export function buildApp(config: AppConfig): Hono<Env> {
  const sessions = new Sessions(config.token);
  const base = config.basePath;
  const link = (path: string, query?: Record<string, string | undefined>): string => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined && v !== '') q.set(k, v);
    const qs = q.toString();
    return `${base}${path}${qs ? `?${qs}` : ''}`;
  };
  let client: Client | undefined;
  const actionsClient = () => (client ??= createClient({ pool: config.pool, logger: config.logger, preparedStatements: config.preparedStatements }));
  const nav = (current: string) => PAGES.filter((p) => p.nav).sort((a, b) => a.nav!.order - b.nav!.order)
    .map((p) => ({ label: p.nav!.label, href: link(p.path), active: p.path === current }));

  const page = (c: Context<Env>, title: string, body: ReturnType<typeof html>, status: number, current = ''): Response => {
    const sid = c.get('sessionId');
    const logout = sessions.protected && sid
      ? html`<form method="post" action="${link('/logout')}"><input type="hidden" name="_csrf" value="${sessions.csrf(sid)}"><button type="submit">Log out</button></form>`
      : undefined;
    return c.html(layout({ title, body, nav: nav(current), readOnly: config.readOnly, ...(logout ? { logout } : {}) }), status as 200);
  };
  const errorPage = (c: Context<Env>, status: number, message: string): Response =>
    page(c, status === 404 ? 'Not found' : 'Error', html`<h1>${status === 404 ? 'Not found' : 'Refused'}</h1><p class="error" role="alert">${message}</p><p><a href="${link('/')}">Overview</a></p>`, status);

  const app = new Hono<Env>({ strict: false });
  const scoped = base ? app.basePath(base) : app;

  app.use('*', secureHeaders({
    contentSecurityPolicy: {
      defaultSrc: ["'none'"], styleSrc: ["'unsafe-inline'"], imgSrc: ["'self'", 'data:'], formAction: ["'self'"],
      frameAncestors: ["'none'"], baseUri: ["'none'"],
    },
    referrerPolicy: 'same-origin',
    // Not the dashboard's to say: mounted in an app, HSTS (with includeSubDomains) would bind the app's whole domain.
    strictTransportSecurity: false,
  }));
  app.use('*', async (c, next) => {
    await next();
    c.res.headers.set('cache-control', 'no-store');
  });
  // DNS rebinding: a page of attacker.example whose name resolves to
  // 127.0.0.1 is same-origin with a dashboard reached through that name, so
  // the Origin and CSRF checks pass. Without a token, only the names the
  // dashboard was meant to be reached by (loopback, or allowedHosts) are served.
  if (config.allowedHosts) {
    const allowed = config.allowedHosts;
    app.use('*', async (c, next) => {
      const host = requestHost(c.req.header('host'), c.req.url);
      if (host !== undefined && allowed.has(host)) return next();
      return c.text(`refused: this dashboard answers requests addressed to ${[...allowed].join(', ')}, not ${(host ?? '?').slice(0, 100)}`, 403);
    });
  }
  // A form is small: a signal payload is at most max_payload_bytes (1 MiB by default) as JSON text.
  const tooLarge = (c: Context<Env>) => {
    // The rest of the body is not read: the connection cannot carry another request.
    const response = errorPage(c, 413, `the form is larger than ${MAX_FORM_BYTES} bytes`);
    response.headers.set('connection', 'close');
    return response;
  };
  // (hono's bodyLimit re-creates the request from the node server's own
  // Request object, which undici refuses: every body without a length, an
  // OPTIONS or a DELETE, was a 500.)
  app.use('*', async (c, next) => {
    const req = c.req.raw;
    if (!req.body || req.method === 'GET' || req.method === 'HEAD') return next();
    const length = req.headers.get('content-length');
    const chunked = req.headers.has('transfer-encoding');
    if (!chunked) return length !== null && Number(length) > MAX_FORM_BYTES ? tooLarge(c) : next();
    // A body of unknown length: read it, up to the limit.
    const chunks: Uint8Array[] = [];
    let size = 0;
    const reader = req.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.length;
      if (size > MAX_FORM_BYTES) return tooLarge(c);
      chunks.push(value);
    }
    const headers = new Headers(req.headers);
    headers.delete('transfer-encoding');
    c.req.raw = new Request(req.url, { method: req.method, headers, body: Buffer.concat(chunks) });
    return next();
  });

  // Who is asking: a valid session cookie, or the token as a bearer header.
  app.use('*', async (c, next) => {
    let sid = sessions.verify(getCookie(c, SESSION_COOKIE));
    const viaHeader = sessions.protected && sessions.checkToken(bearer(c.req.header('authorization')));
    const path = c.req.path.slice(base.length) || '/';
    if (sessions.protected && !sid && !viaHeader && path !== '/login') {
      // A scraper is answered 401, not sent to a login page.
      if ((c.req.method === 'GET' || c.req.method === 'HEAD') && !(config.metrics && path === '/metrics')) {
        const next = c.req.path + (new URL(c.req.url).search);
        return c.redirect(link('/login', { next }), 303);
      }
      c.set('sessionId', undefined);
      return errorPage(c, 401, 'log in first: this dashboard needs its token');
    }
    if (!sessions.protected && !sid) {
      // No token: an anonymous session, so forms still carry a CSRF token.
      const cookie = sessions.issue();
      sid = sessions.verify(cookie);
      setCookie(c, SESSION_COOKIE, cookie, cookieOptions(c));
    }
    c.set('sessionId', sid);
    c.set('viaHeader', viaHeader);
    await next();
  });

  const cookieOptions = (c: Context<Env>) => ({
    httpOnly: true, sameSite: 'Strict' as const, path: base || '/', maxAge: Math.floor(SESSION_MS / 1000),
    secure: new URL(c.req.url).protocol === 'https:' || c.req.header('x-forwarded-proto') === 'https',
  });

  /** The CSRF and Origin checks of a POST from a browser session (a bearer header needs neither). */
  const refused = (c: Context<Env>, form: Record<string, unknown>): Response | undefined => {
    if (c.get('viaHeader')) return undefined;
    if (!sameOrigin(c.req.raw.headers, c.req.url)) return errorPage(c, 403, 'refused: the request did not come from a page of this dashboard (Origin check)');
    const sid = c.get('sessionId');
    if (!sid || !sessions.checkCsrf(sid, form._csrf)) return errorPage(c, 403, 'refused: the form\'s CSRF token is missing or wrong; reload the page and try again');
    return undefined;
  };

  const loginForm = (c: Context<Env>, next: string, problem: string | undefined, status: number) => page(c, 'Log in', html`<h1>Log in</h1>
${problem ? html`<p class="error" role="alert">${problem}</p>` : ''}
<form method="post" action="${link('/login')}"><input type="hidden" name="next" value="${next}">
<label>Token <input type="password" name="token" autocomplete="current-password" required autofocus></label> <button type="submit">Log in</button></form>`, status);

  // A path of this dashboard only: not '//host' nor '\\', and no control
  // character or space (a browser drops a tab or newline from a URL, so
  // '/<TAB>/evil.example' would lead to evil.example; CR/LF would split the header).
  // And the path as a browser resolves it: '/trellis/../app/admin' starts
  // with the base but leads out of it (a dot segment, also as %2e).
  const safeNext = (next: unknown): string => {
    if (typeof next !== 'string' || !next.startsWith(`${base}/`) || next.startsWith('//') || /[\\\s\u0000-\u001f\u007f-\u009f]/.test(next)) return link('/');
    const resolved = new URL(next, 'http://dashboard.invalid');
    return resolved.origin === 'http://dashboard.invalid' && `${resolved.pathname}${resolved.search}` === next && resolved.pathname.startsWith(`${base}/`) ? next : link('/');
  };

  scoped.get('/login', (c) => (sessions.protected ? loginForm(c, safeNext(c.req.query('next')), undefined, 200) : c.redirect(link('/'), 303)));
  scoped.post('/login', async (c) => {
    if (!sessions.protected) return c.redirect(link('/'), 303);
    if (!sameOrigin(c.req.raw.headers, c.req.url)) return errorPage(c, 403, 'refused: the request did not come from a page of this dashboard (Origin check)');
    const form = await c.req.parseBody();
    if (!sessions.checkToken(typeof form.token === 'string' ? form.token : undefined)) {
      return loginForm(c, safeNext(form.next), 'That is not the token.', 401);
    }
    setCookie(c, SESSION_COOKIE, sessions.issue(), cookieOptions(c));
    return c.redirect(safeNext(form.next), 303);
  });
  scoped.post('/logout', async (c) => {
    const no = refused(c, await c.req.parseBody());
    if (no) return no;
    deleteCookie(c, SESSION_COOKIE, { path: base || '/' });
    return c.redirect(link('/login'), 303);
  });

  scoped.post('/runs/:id/:verb', async (c) => {
    if (config.readOnly) return errorPage(c, 403, 'refused: this dashboard is read-only');
    const verb = c.req.param('verb');
    if (!isActionVerb(verb)) return errorPage(c, 404, `no action ${JSON.stringify(verb.slice(0, 40))}`);
    const form = await c.req.parseBody();
    const no = refused(c, form);
    if (no) return no;
    const id = assertUuid(c.req.param('id'));
    const { run, ...result } = await performAction(actionsClient(), verb, id, form);
    return c.redirect(link(`/runs/${run ?? id}`, result), 303);
  });

  /**
   * A form action of the Queues, Schedules and Outbox pages: refused in
   * read-only mode, then by the Origin and CSRF checks, then `act` with the
   * form's fields, which redirects back to its page.
   */
  const formAction = (path: string, act: (c: Context<Env>, form: Record<string, unknown>) => Promise<Response>) => {
    scoped.post(path, async (c) => {
      if (config.readOnly) return errorPage(c, 403, 'refused: this dashboard is read-only');
      const form = await c.req.parseBody();
      const no = refused(c, form);
      if (no) return no;
      return act(c, form);
    });
  };
  const field = (form: Record<string, unknown>, name: string) => (typeof form[name] === 'string' ? form[name] as string : '');

  // A schedule's run now (before the toggles' /schedules/:verb), by its overlap policy; the outcome and run in the notice.
  formAction('/schedules/trigger', async (c, form) => {
    const name = field(form, 'name');
    const tick = await scheduleTriggerAction(actionsClient(), name);
    return c.redirect(link('/schedules', { done: 'trigger', name, outcome: tick.outcome, ...(tick.runId ? { run: tick.runId } : {}) }), 303);
  });

  // A schedule's backfill: the runs of a past range's ticks, each at most once; the counts in the notice.
  formAction('/schedules/backfill', async (c, form) => {
    const name = field(form, 'name');
    const counts = await scheduleBackfillAction(actionsClient(), name, form);
    return c.redirect(link('/schedules', { done: 'backfill', name, ...Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, String(v)])) }), 303);
  });

  // Queue and schedule actions: pause or resume, the name in the form (a name may hold '/'; the client checks it).
  const toggles = { queues: queueAction, schedules: scheduleAction } as const;
  for (const [kind, act] of Object.entries(toggles)) {
    formAction(`/${kind}/:verb`, async (c, form) => {
      const verb = c.req.param('verb') ?? '';
      if (!isToggleVerb(verb)) return errorPage(c, 404, `no action ${JSON.stringify(verb.slice(0, 40))}`);
      const name = field(form, 'name');
      await act(actionsClient(), verb, name);
      return c.redirect(link(`/${kind}`, { done: verb, name }), 303);
    });
  }

  // A parked hook delivery sent to the workers again, its id in the form.
  formAction('/outbox/retry', async (c, form) => {
    const id = field(form, 'id');
    await hookRetryAction(actionsClient(), id);
    return c.redirect(link('/outbox', { done: 'retry', id }), 303);
  });

  if (config.metrics) {
    // prom-client is an optional peer: loaded on the first scrape (createMetrics says what to install when it is missing).
    // A missing package stays missing until a restart: the failure is kept, and logged once.
    let metrics: Promise<TrellisMetrics> | undefined;
    scoped.get('/metrics', async (c) => {
      metrics ??= createMetrics({ pool: config.readPool }).catch((error: unknown) => {
        config.logger.warn('dashboard metrics unavailable', { error: String(error) });
        throw error;
      });
      let m: TrellisMetrics;
      try {
        m = await metrics;
      } catch (error) {
        return c.text(`metrics unavailable: ${isTrellisError(error) ? error.message : 'see the server log'}\n`, 503);
      }
      try {
        return c.body(await m.scrape(), 200, { 'content-type': m.registry.contentType });
      } catch (error) {
        config.logger.warn('dashboard metrics scrape failed', { error: String(error) });
        return c.text('metrics unavailable: the scrape failed (see the server log)\n', 503);
      }
    });
  }

  for (const p of PAGES) {
    scoped.get(p.path, async (c) => {
      const sid = c.get('sessionId');
      const view: PageView = {
        params: c.req.param() as Record<string, string>,
        query: new URL(c.req.url).searchParams,
        // The page an action redirects to (`done` in its query) reads the primary: it shows the action done.
        db: new URL(c.req.url).searchParams.has('done') ? config.pool : config.readPool,
        readOnly: config.readOnly,
        csrfField: sid ? html`<input type="hidden" name="_csrf" value="${sessions.csrf(sid)}">` : html``,
        link,
      };
      const result = await p.render(view);
      return page(c, result.title, result.body, result.status ?? 200, p.path);
    });
  }

  app.notFound((c) => errorPage(c, 404, `no page at ${c.req.path.slice(0, 200)}`));
  app.onError((error, c) => {
    if (error instanceof HttpError) return errorPage(c, error.status, error.message);
    if (isTrellisError(error)) {
      const status = STATUS_OF[error.code] ?? 500;
      if (status === 500) config.logger.warn('dashboard request failed', { path: c.req.path, error: error.message });
      return errorPage(c, status, error.message.slice(0, 500));
    }
    config.logger.error('dashboard request failed', { path: c.req.path, error: String(error) });
    return errorPage(c, 500, 'internal error (see the server log)');
  });
  return app;
}
