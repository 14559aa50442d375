/** Overview: runs by status, throughput and latency charts, queue depth, recent failures, and a warning while hook deliveries are parked. */
import { RUN_STATES } from '../../db/tables.ts';
import { latencyChart, throughputChart } from '../charts.ts';
import { badge, duration, html, when } from '../html.ts';
import { HttpError, type DashboardPage } from '../page.ts';
import { queueDepths, recentFailures, shortestRetentionMs, statusCounts, throughput } from '../queries.ts';
import { hookCounts } from '../../db/events.ts';

/** The chart ranges: seconds and number of buckets. */
// A Map, not an object: a query's `constructor` or `__proto__` is no range.
const RANGES: ReadonlyMap<string, { seconds: number; buckets: number; label: string }> = new Map([
  ['1h', { seconds: 3600, buckets: 60, label: 'last hour, per minute' }],
  ['24h', { seconds: 86400, buckets: 48, label: 'last 24 hours, per 30 minutes' }],
  ['7d', { seconds: 7 * 86400, buckets: 56, label: 'last 7 days, per 3 hours' }],
]);

/** The page at its `path`; listed in pages/index.ts. */
export const overviewPage: DashboardPage = {
  path: '/',
  nav: { label: 'Overview', order: 0 },
  async render(view) {
    const rangeKey = view.query.get('range') ?? '1h';
    const range = RANGES.get(rangeKey);
    if (!range) throw new HttpError(400, `range must be one of ${[...RANGES.keys()].join(', ')}`);
    const [counts, series, queues, failures, hooks, retention] = await Promise.all([
      statusCounts(view.db),
      throughput(view.db, range.seconds, range.buckets),
      queueDepths(view.db),
      recentFailures(view.db, 10),
      hookCounts(view.db),
      shortestRetentionMs(view.db),
    ]);
    const withDay = range.seconds > 86400;
    const totals = series.buckets.reduce((t, b) => ({ done: t.done + b.completed, failed: t.failed + b.failed + b.cancelled }), { done: 0, failed: 0 });
    const body = html`<h1>Overview</h1>
${hooks.parked > 0 ? html`<p class="error" id="parked-hooks" role="alert">${hooks.parked} hook deliver${hooks.parked === 1 ? 'y' : 'ies'} parked after failing: <a href="${view.link('/outbox')}">see the Outbox page</a> to retry.</p>` : ''}
<div class="cards">${RUN_STATES.map((s) => html`<div class="card" data-status="${s}"><a href="${view.link('/runs', { status: s })}">${badge(s)}<b>${counts[s]}</b></a></div>`)}</div>
<h2>Finished runs <span class="muted">(${range.label}; as of ${when(series.now)})</span></h2>
<p>${[...RANGES.keys()].map((k) => k === rangeKey ? html`<b>${k}</b> ` : html`<a href="${view.link('/', { range: k })}">${k}</a> `)}
<span class="legend"><span class="bar-completed" style="background:#3aa65a"></span>completed <span style="background:#d9534f"></span>failed <span style="background:#8e6cc0"></span>cancelled
<span style="background:#2557c7"></span>p50 <span style="background:#e08a1e"></span>p95</span></p>
${retention !== null && retention < range.seconds * 1000 ? html`<p class="muted" id="retention-note">Retention purges finished runs after ${duration(retention)} (the shortest set): runs finished before that may be gone, and are not counted here, in the status counts or in Recent failures.</p>` : ''}
<div class="charts"><figure><figcaption>Runs finished: ${totals.done} completed, ${totals.failed} failed or cancelled</figcaption>${throughputChart(series.buckets, withDay)}</figure>
<figure><figcaption>Start-to-finish latency (p50, p95)</figcaption>${latencyChart(series.buckets, withDay)}</figure></div>
<h2>Queues</h2>
${queues.length === 0 ? html`<p class="muted">No pending or running runs.</p>` : html`<table id="queues"><thead><tr><th>queue</th><th class="num">due</th><th class="num">scheduled</th><th class="num">running</th><th class="num">oldest due</th></tr></thead><tbody>
${queues.map((q) => html`<tr><td>${q.queue}</td><td class="num">${q.due}</td><td class="num">${q.scheduled}</td><td class="num">${q.running}</td><td class="num">${duration(q.oldest_due_ms)}</td></tr>`)}
</tbody></table>`}
<h2>Recent failures</h2>
${failures.length === 0 ? html`<p class="muted">No failed runs.</p>` : html`<table id="failures"><thead><tr><th>run</th><th>workflow</th><th>key</th><th>error</th><th>finished</th></tr></thead><tbody>
${failures.map((r) => html`<tr><td><a class="mono" href="${view.link(`/runs/${r.id}`)}">${r.id.slice(0, 8)}</a></td><td>${r.workflow}</td><td>${r.key ?? ''}</td>
<td>${r.error?.name ?? ''}: ${String(r.error?.message ?? '').slice(0, 200)}</td><td>${when(r.finished_at)}</td></tr>`)}
</tbody></table>`}`;
    return { title: 'Overview', body };
  },
};
