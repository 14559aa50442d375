/** Roles: who holds each singleton duty (scheduler, sweeper…), its fencing token, lease expiry, last run and outcome. */
import { roleList } from '../../db/roles.ts';
import { html, when } from '../html.ts';
import type { DashboardPage } from '../page.ts';

/** The page at its `path`; listed in pages/index.ts. */
export const rolesPage: DashboardPage = {
  path: '/roles',
  nav: { label: 'Roles', order: 40 },
  async render(view) {
    const roles = await roleList(view.db);
    const body = html`<h1>Roles</h1>
${roles.length === 0 ? html`<p class="muted">No roles yet: they appear once a worker with its default duties has started.</p>` : html`<table id="roles"><thead><tr><th>role</th><th>holder</th><th class="num">token</th><th>held</th><th>expires</th><th>last run</th><th>outcome</th></tr></thead><tbody>
${roles.map((r) => html`<tr data-role="${r.name}"><td>${r.name}</td><td class="mono">${r.holder ?? '—'}</td><td class="num">${r.token}</td>
<td>${r.held ? html`<span class="badge s-completed">held</span>` : html`<span class="badge">free</span>`}</td><td class="nowrap">${when(r.expiresAt)}</td><td class="nowrap">${when(r.lastRunAt)}</td>
<td>${r.lastOutcome === null ? '—' : html`<span class="badge ${r.lastOutcome === 'ok' ? 's-completed' : 's-failed'}">${r.lastOutcome}</span>`}${r.lastError ? html` <span class="err">${r.lastError.slice(0, 300)}</span>` : ''}</td></tr>`)}
</tbody></table>`}
<p class="muted">One worker at a time holds each role; the token grows with every new holder, so a stale holder's writes are refused.</p>`;
    return { title: 'Roles', body };
  },
};
