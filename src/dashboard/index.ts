/**
 * The web dashboard (`trellis/dashboard`): server-rendered pages over the
 * engine's tables, actions through the client, no client-side script. Mount
 * it in your own Node server with `createDashboard`, or run it on its own
 * port with `serveDashboard`. See docs/dashboard.md.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import type { Pool } from '../db/pg.ts';
import { ValidationError } from '../errors.ts';
import { childLogger, consoleLogger, type Logger } from '../protocol/logger.ts';
import { buildApp } from './app.ts';

export { type DashboardPage, HttpError, type PageResult, type PageView } from './page.ts';
export { Html, html, raw } from './html.ts';

/**
 * Options of `createDashboard` (and `serveDashboard`).
 *
 * @example
 * const options: DashboardOptions = { pool, token: process.env.TRELLIS_DASHBOARD_TOKEN, basePath: '/trellis' };
 */
export interface DashboardOptions {
  /** The pool the dashboard reads with (and acts with, unless `readOnly`). A read-only role is enough with `readOnly`. */
  pool: Pool;
  /**
   * A pool on a streaming standby that serves the pages and the metrics
   * instead of `pool` (which keeps the actions). The page an action leads
   * to reads `pool`, so it shows the action done. See docs/scaling.md.
   *
   * @example
   * const dashboard = createDashboard({ pool, readPool: new pg.Pool({ connectionString: process.env.TRELLIS_READ_URL }) });
   */
  readPool?: Pool | undefined;
  /**
   * The secret an operator logs in with (a login form sets a session cookie;
   * scripts may send `Authorization: Bearer <token>`). Without it, anyone who
   * can reach the dashboard can use it: keep it on 127.0.0.1.
   */
  token?: string | undefined;
  /** Hide the actions and refuse them (default false). */
  readOnly?: boolean | undefined;
  /** The path the dashboard lives under, e.g. `/trellis` (default: the root). */
  basePath?: string | undefined;
  /** Where request failures are logged (default: warnings to stderr). */
  logger?: Logger | undefined;
  /** Actions as named prepared statements (default true); false behind PgBouncer in transaction mode before 1.21. */
  preparedStatements?: boolean | undefined;
  /**
   * Serve Prometheus metrics at `<basePath>/metrics` (default false), behind
   * the same token as the pages (scrapers send `Authorization: Bearer <token>`;
   * without it the answer is 401). Needs the optional peer prom-client; the
   * queue gauges are read from SQL at each scrape (docs/observability.md).
   *
   * @example
   * await serveDashboard({ pool, token: process.env.TRELLIS_DASHBOARD_TOKEN, metrics: true, port: 4000 });
   * // scrape_configs: - job_name: trellis, metrics_path: /metrics, authorization: { credentials: <token> }
   */
  metrics?: boolean | undefined;
  /**
   * The host names requests must be addressed to (their `Host` header, any
   * port). Default without a `token`: `localhost`, `127.0.0.1` and `[::1]`
   * only — a page of another site whose name resolves to this machine (DNS
   * rebinding) could otherwise read and drive a tokenless dashboard; with a
   * token: any (the token guards it). Give your app's names when you mount a
   * tokenless dashboard behind your own authentication.
   *
   * @example
   * const dashboard = createDashboard({ pool, basePath: '/trellis', allowedHosts: ['admin.example.com'] });
   */
  allowedHosts?: readonly string[] | undefined;
}

const LOOPBACK_NAMES: readonly string[] = ['localhost', '127.0.0.1', '[::1]'];
const HOST_NAME = /^(?:[a-z0-9](?:[a-z0-9-]{0,62})(?:\.[a-z0-9](?:[a-z0-9-]{0,62}))*\.?|\[[0-9a-f:.]+\])$/i;

/** The allowed host names, lower case (undefined: any). */
function allowedHosts(options: DashboardOptions): ReadonlySet<string> | undefined {
  const given = options.allowedHosts;
  if (given === undefined) return options.token === undefined ? new Set(LOOPBACK_NAMES) : undefined;
  if (!Array.isArray(given) || given.length === 0 || given.length > 100
    || !given.every((h) => typeof h === 'string' && h.length <= 255 && HOST_NAME.test(h))) {
    throw new ValidationError('allowedHosts must be a list of 1 to 100 host names (no port), such as [\'admin.example.com\']');
  }
  return new Set(given.map((h) => h.toLowerCase()));
}

/**
 * A dashboard, as a fetch handler and as a Node request listener.
 *
 * @example
 * app.use(dashboard.handle);                           // Express: other paths go on to next()
 * const response = await dashboard.fetch(request);     // a Fetch API server
 */
export interface Dashboard {
  /** The path it lives under ('' for the root). */
  readonly basePath: string;
  /** Answer a Fetch API request (for servers built on `Request`/`Response`). */
  fetch(request: Request): Promise<Response>;
  /**
   * A Node `(req, res, next?)` listener. With `next` (Express, Connect),
   * requests outside `basePath` are passed on; without it they get a 404.
   * Mount it before any body parser, and without a mount path
   * (`app.use(dashboard.handle)`, not `app.use('/trellis', …)`).
   */
  handle(req: IncomingMessage, res: ServerResponse, next?: (error?: unknown) => void): void;
}

// Segments of letters, digits and . _ ~ -, but not `.` or `..` (a browser resolves them away, so no URL would reach the pages).
const BASE_PATH = /^(\/(?!\.\.?(?:\/|$))[A-Za-z0-9._~-]+)*$/;

/**
 * Create the dashboard's request handler for your own server.
 *
 * @example
 * import { createServer } from 'node:http';
 * import { createDashboard } from 'trellis/dashboard';
 *
 * const dashboard = createDashboard({ pool, token: process.env.TRELLIS_DASHBOARD_TOKEN, basePath: '/trellis' });
 * createServer((req, res) => {
 *   if (req.url?.startsWith('/trellis')) return dashboard.handle(req, res);
 *   res.end('my app');
 * }).listen(3000);
 */
export function createDashboard(options: DashboardOptions): Dashboard {
  if (!options || typeof options.pool?.query !== 'function') throw new ValidationError('createDashboard needs a pg pool');
  const basePath = (options.basePath ?? '').replace(/\/$/, '');
  if (!BASE_PATH.test(basePath) || basePath.length > 200) {
    throw new ValidationError(`basePath ${JSON.stringify(String(options.basePath).slice(0, 40))} must look like /name or /a/b`);
  }
  // Spaces at its ends: the Authorization header's value is read trimmed, so such a token never matched it.
  if (options.token !== undefined && (typeof options.token !== 'string' || options.token.length < 12 || options.token.trim() !== options.token)) {
    throw new ValidationError('the dashboard token must be a string of at least 12 characters, without spaces at its ends');
  }
  if (options.readPool !== undefined && typeof options.readPool?.query !== 'function') throw new ValidationError('the dashboard readPool must be a pg pool');
  const app = buildApp({
    pool: options.pool,
    readPool: options.readPool ?? options.pool,
    token: options.token,
    readOnly: options.readOnly === true,
    basePath,
    logger: childLogger(options.logger ?? consoleLogger('warn'), {}),
    preparedStatements: options.preparedStatements !== false,
    metrics: options.metrics === true,
    allowedHosts: allowedHosts(options),
  });
  const fetch = async (request: Request): Promise<Response> => app.fetch(request);
  // overrideGlobalObjects: false leaves the process's global Request/Response alone.
  const listener = getRequestListener(fetch, { overrideGlobalObjects: false });
  const inside = (url: string | undefined) => {
    const path = (url ?? '/').split('?')[0]!;
    return basePath === '' || path === basePath || path.startsWith(`${basePath}/`);
  };
  return {
    basePath,
    fetch,
    handle(req, res, next) {
      if (next && !inside(req.url)) return next();
      void listener(req, res);
    },
  };
}

/**
 * Options of `serveDashboard`: the dashboard's, and where to listen.
 *
 * @example
 * await serveDashboard({ pool, readOnly: true, host: '127.0.0.1', port: 4000 });
 */
export interface ServeDashboardOptions extends DashboardOptions {
  /** Default 127.0.0.1. Another address needs a `token`. */
  host?: string | undefined;
  /** Default 0: a free port (see `url`). */
  port?: number | undefined;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

/**
 * Serve the dashboard on its own HTTP server.
 *
 * @example
 * const { url, close } = await serveDashboard({ pool, port: 4000 });
 * console.log(`dashboard on ${url}`);
 * process.once('SIGTERM', () => void close());
 */
export async function serveDashboard(options: ServeDashboardOptions): Promise<{ url: string; close(): Promise<void> }> {
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ValidationError(`port ${JSON.stringify(port)} is not a port number`);
  if (!LOOPBACK.has(host) && options.token === undefined) {
    throw new ValidationError(`serving the dashboard on ${host.slice(0, 60)} needs a token (anyone who reaches it could cancel runs)`);
  }
  const dashboard = createDashboard(options);
  const server = createServer((req, res) => dashboard.handle(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${shown}:${address.port}${dashboard.basePath || ''}/`,
    close: () => new Promise<void>((resolve, reject) => {
      server.close((error) => (error ? reject(error) : resolve()));
      server.closeAllConnections();
    }),
  };
}
