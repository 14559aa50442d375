/** Queues: per queue pending, due, running, waiting, lag, finished in the last minute, limits and their use; pause and resume. */
import { readQueueStats, type QueueStats } from '../../client/queues.ts';
import { duration, type Html, html } from '../html.ts';
import type { DashboardPage, PageView } from '../page.ts';

/** `used / limit`, or the use alone when there is no limit. */
function use(used: number | null, limit: number | null): Html {
  return limit === null ? html`<span class="muted">${used ?? 0} / —</span>` : html`${used ?? 0} / ${limit}`;
}

function toggle(view: PageView, q: QueueStats): Html {
  if (view.readOnly) return html``;
  const verb = q.paused ? 'resume' : 'pause';
  return html`<form method="post" action="${view.link(`/queues/${verb}`)}">${view.csrfField}<input type="hidden" name="name" value="${q.queue}"><button type="submit"${q.paused ? '' : html` class="danger"`}>${q.paused ? 'Resume' : 'Pause'}</button></form>`;
}

/** The page at its `path`; listed in pages/index.ts. */
export const queuesPage: DashboardPage = {
  path: '/queues',
  nav: { label: 'Queues', order: 20 },
  async render(view) {
    const queues = await readQueueStats(view.db, null);
    const done = view.query.get('done');
    const name = view.query.get('name');
    const body = html`<h1>Queues</h1>
${(done === 'pause' || done === 'resume') && name && queues.some((q) => q.queue === name) ? html`<p class="notice" role="status">Queue ${name} ${done === 'pause' ? 'paused: no run of it is claimed until it is resumed' : 'resumed'}.</p>` : ''}
${queues.length === 0 ? html`<p class="muted">No queues yet: a queue appears once a workflow is registered on it or it is set with client.setQueue.</p>` : html`<table id="queues"><thead><tr><th>queue</th><th>state</th>
<th class="num">pending</th><th class="num">due</th><th class="num">running</th><th class="num">waiting</th><th class="num">paused runs</th><th class="num">lag</th><th class="num">finished / min</th>
<th class="num">concurrency</th><th class="num">per key</th><th class="num">rate</th><th>fair</th>${view.readOnly ? '' : html`<th></th>`}</tr></thead><tbody>
${queues.map((q) => html`<tr data-queue="${q.queue}"><td>${q.queue}</td><td>${q.paused ? html`<span class="badge s-paused">paused</span>` : html`<span class="badge s-running">active</span>`}</td>
<td class="num">${q.pending}</td><td class="num">${q.due}</td><td class="num">${q.running}</td><td class="num">${q.waiting}</td><td class="num">${q.pausedRuns}</td>
<td class="num">${q.lagMs === null ? '—' : duration(q.lagMs)}</td><td class="num">${q.finishedLastMinute}</td>
<td class="num">${use(q.running, q.concurrency)}</td><td class="num">${use(q.keyRunningMax, q.keyConcurrency)}</td>
<td class="num">${q.rateLimit === null ? html`<span class="muted">—</span>` : html`${q.rateUsed} / ${q.rateLimit} per ${duration(q.ratePeriodMs)}`}</td>
<td>${q.fair ? 'yes' : 'no'}</td>${view.readOnly ? '' : html`<td>${toggle(view, q)}</td>`}</tr>`)}
</tbody></table>`}
<p class="muted">Limits are set with <code>client.setQueue</code> and enforced by the claim on every worker; see docs/operations.md.</p>`;
    return { title: 'Queues', body };
  },
};
