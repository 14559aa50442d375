/** Outbox: the durable consumers (position, backlog, last ack) and the hook deliveries not yet delivered, parked first, with a retry. */
import { CONSUMER_BEHIND_CAP, consumerList, type HookDelivery, hookList } from '../../db/events.ts';
import { type Html, html, jsonBlock, when } from '../html.ts';
import type { DashboardPage, PageView } from '../page.ts';

/** Deliveries the page shows. */
const SHOWN = 200;

function retry(view: PageView, d: HookDelivery): Html {
  if (view.readOnly || d.status !== 'parked') return html``;
  return html`<form method="post" action="${view.link('/outbox/retry')}">${view.csrfField}<input type="hidden" name="id" value="${d.id}"><button type="submit">Retry</button></form>`;
}

function statusBadge(d: HookDelivery): Html {
  const cls = d.status === 'parked' ? 's-failed' : d.status === 'running' ? 's-running' : 's-waiting';
  return html`<span class="badge ${cls}">${d.status}</span>`;
}

/** The page at its `path`; listed in pages/index.ts. */
export const outboxPage: DashboardPage = {
  path: '/outbox',
  nav: { label: 'Outbox', order: 35 },
  async render(view) {
    const [consumers, deliveries] = await Promise.all([consumerList(view.db), hookList(view.db, {}, SHOWN)]);
    const done = view.query.get('done');
    const id = view.query.get('id');
    const body = html`<h1>Outbox</h1>
${done === 'retry' && id && /^[1-9]\d{0,18}$/.test(id) ? html`<p class="notice" role="status">Hook delivery ${id} is pending again: a worker serving its workflow runs it at its next hook poll.</p>` : ''}
<h2>Consumers</h2>
${consumers.length === 0 ? html`<p class="muted">No durable consumers: client.eventConsumer(name) makes one.</p>` : html`<table id="consumers"><thead><tr><th>consumer</th><th>position</th><th class="num">behind</th><th>last ack</th><th>created</th></tr></thead><tbody>
${consumers.map((c) => html`<tr data-consumer="${c.name}"><td>${c.name}</td><td class="mono">${c.position}</td>
<td class="num">${c.behind >= CONSUMER_BEHIND_CAP ? `${CONSUMER_BEHIND_CAP}+` : c.behind}</td><td class="nowrap">${when(c.updatedAt)}</td><td class="nowrap">${when(c.createdAt)}</td></tr>`)}
</tbody></table>`}
<h2>Hook deliveries</h2>
${deliveries.length === 0 ? html`<p class="muted">No hook deliveries waiting: a delivered hook is deleted.</p>` : html`<table id="hooks"><thead><tr><th class="num">id</th><th>status</th><th>hook</th><th>workflow</th><th>run</th><th class="num">attempts</th><th>due</th><th>held by</th><th>last error</th>${view.readOnly ? '' : html`<th></th>`}</tr></thead><tbody>
${deliveries.map((d) => html`<tr data-hook="${d.id}"><td class="num">${d.id}</td><td>${statusBadge(d)}</td><td>${d.hook}</td>
<td><a href="${view.link('/runs', { workflow: d.workflow })}">${d.workflow}</a>@${d.version}</td>
<td class="mono"><a href="${view.link(`/runs/${d.runId}`)}">${d.runId.slice(0, 8)}</a></td><td class="num">${d.attempts}</td>
<td class="nowrap">${when(d.runAt)}</td>
<td>${d.status === 'running' && d.leaseOwner ? html`<span class="mono">${d.leaseOwner}</span> until ${when(d.leaseExpiresAt)}` : '—'}</td><td>${d.lastError === null || d.lastError === undefined ? '—' : jsonBlock(d.lastError)}</td>${view.readOnly ? '' : html`<td>${retry(view, d)}</td>`}</tr>`)}
</tbody></table>${deliveries.length === SHOWN ? html`<p class="muted">The first ${SHOWN}: trellis hooks --status parked lists more.</p>` : ''}`}
<p class="muted">A parked delivery kept failing; Retry sends it to the workers again with a fresh count of attempts. Consumers' backlogs count events of every kind, up to ${CONSUMER_BEHIND_CAP}.</p>`;
    return { title: 'Outbox', body };
  },
};
