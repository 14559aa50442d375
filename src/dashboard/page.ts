/**
 * What a dashboard page is. A page is one file in src/dashboard/pages/ that
 * exports a `DashboardPage`, listed once in src/dashboard/pages/index.ts; the
 * app routes it, wraps it in the layout, links it in the navigation (when it
 * has `nav`) and turns its errors into error pages.
 */
import type { Queryable } from '../db/queryable.ts';
import type { Html } from './html.ts';

/**
 * What a page gets to render one request.
 *
 * @example
 * async render(view) {
 *   const { rows } = await view.db.query('select count(*)::int as n from trellis.runs where status = $1', [view.query.get('status') ?? 'failed']);
 *   return { title: 'Count', body: html`<p>${rows[0].n}</p><a href="${view.link('/runs')}">runs</a>` };
 * }
 */
export interface PageView {
  /** Route parameters, e.g. `id` of `/runs/:id`. */
  params: Record<string, string>;
  /** The query string. */
  query: URLSearchParams;
  /** Where reads go: the dashboard's pool (SELECTs over the documented tables only). */
  db: Queryable;
  /** True when actions are hidden and refused. */
  readOnly: boolean;
  /** The hidden CSRF field every form that posts must contain. */
  csrfField: Html;
  /** A path inside the dashboard: `link('/runs', { status: 'failed' })` → `/trellis/runs?status=failed`. */
  link(path: string, query?: Record<string, string | undefined>): string;
}

/**
 * A rendered page: its title and body (the layout adds the rest).
 *
 * @example
 * return { title: 'Queues', body: html`<h1>Queues</h1>`, status: 200 };
 */
export interface PageResult {
  title: string;
  body: Html;
  /** HTTP status (default 200). */
  status?: number | undefined;
}

/**
 * One page of the dashboard.
 *
 * @example
 * // src/dashboard/pages/queues.ts, then one line in pages/index.ts
 * export const queuesPage: DashboardPage = {
 *   path: '/queues',
 *   nav: { label: 'Queues', order: 30 },
 *   async render(view) {
 *     const rows = await view.db.query<{ queue: string; n: number }>('select queue, count(*)::int as n from trellis.runs group by queue');
 *     return { title: 'Queues', body: html`<ul>${rows.rows.map((r) => html`<li>${r.queue}: ${r.n}</li>`)}</ul>` };
 *   },
 * };
 */
export interface DashboardPage {
  /** Route under the dashboard's base path, with `:name` parameters. */
  path: string;
  /** A link in the navigation bar, ordered by `order`. */
  nav?: { label: string; order: number } | undefined;
  render(view: PageView): Promise<PageResult>;
}

/**
 * An error a page throws to answer with that HTTP status and message.
 *
 * @example
 * if (!row) throw new HttpError(404, `queue ${name} does not exist`);
 */
export class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = 'HttpError';
  }
}
