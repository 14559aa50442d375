/** Runs: newest first, filtered by workflow and status, searched by key (or id) and metadata, paged by cursor. */
import { RUN_STATES } from '../../db/tables.ts';
import { isTrellisError } from '../../errors.ts';
import { badge, fieldValue, html, when } from '../html.ts';
import type { DashboardPage } from '../page.ts';
import { type RunSearch, searchRuns, workflowNames } from '../queries.ts';
import { displayJson } from '../../protocol/serialize.ts';

/** `limit` from 1 to 200 (a larger one is 200), else 50. */
function pageSize(text: string | null): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) return 50;
  return Math.min(n, 200);
}

/**
 * The workflow names the filter offers: the registered ones, and the one
 * searched for if it is not among them (not registered, or past the list's
 * cap), so the form shows the filter in force and a new search keeps it.
 */
function workflowChoices(names: readonly string[], searched: string | undefined): readonly string[] {
  return searched && !names.includes(searched) ? [searched, ...names] : names;
}

/** The page at its `path`; listed in pages/index.ts. */
export const runsPage: DashboardPage = {
  path: '/runs',
  nav: { label: 'Runs', order: 10 },
  async render(view) {
    const q = view.query;
    const search: RunSearch = {
      workflow: q.get('workflow') || undefined,
      status: q.get('status') || undefined,
      key: q.get('key') || undefined,
      metadata: q.get('metadata') || undefined,
      cursor: q.get('after') || undefined,
      limit: pageSize(q.get('limit')),
    };
    const names = await workflowNames(view.db);
    let result: Awaited<ReturnType<typeof searchRuns>> | undefined;
    let problem: string | undefined;
    try {
      result = await searchRuns(view.db, search);
    } catch (error) {
      if (!isTrellisError(error) || error.code !== 'validation') throw error;
      problem = error.message;
    }
    const filters = { workflow: search.workflow, status: search.status, key: search.key, metadata: search.metadata, limit: q.get('limit') ? String(search.limit) : undefined };
    const body = html`<h1>Runs</h1>
<form class="filters" method="get" action="${view.link('/runs')}">
<label>workflow<select name="workflow"><option value="">any</option>${workflowChoices(names, search.workflow).map((n) => html`<option${n === search.workflow ? html` selected` : ''}>${n}</option>`)}</select></label>
<label>status<select name="status"><option value="">any</option>${RUN_STATES.map((s) => html`<option${s === search.status ? html` selected` : ''}>${s}</option>`)}</select></label>
<label>key or run id<input name="key" value="${fieldValue(search.key ?? '')}" placeholder="key prefix" maxlength="512"></label>
<label>metadata<input name="metadata" value="${fieldValue(search.metadata ?? '')}" placeholder="plan=pro or {&quot;plan&quot;:&quot;pro&quot;}" maxlength="512" size="28"></label>
${filters.limit ? html`<input type="hidden" name="limit" value="${filters.limit}">` : ''}<button type="submit">Search</button> <a href="${view.link('/runs')}">clear</a></form>
${problem ? html`<p class="error" role="alert">${problem}</p>` : ''}
${result && result.runs.length === 0 ? html`<p class="muted">No runs match.</p>` : ''}
${result && result.runs.length > 0 ? html`<table id="runs"><thead><tr><th>run</th><th>workflow</th><th>status</th><th>key</th><th>metadata</th><th>created</th><th>finished</th><th class="num">attempt</th></tr></thead><tbody>
${result.runs.map((r) => html`<tr data-run="${r.id}"><td><a class="mono" href="${view.link(`/runs/${r.id}`)}">${r.id.slice(0, 8)}</a></td><td>${r.workflow} <span class="muted">v${r.version}</span></td>
<td>${badge(r.status)}</td><td>${r.key ?? ''}</td><td class="mono">${Object.keys(r.metadata ?? {}).length ? displayJson(r.metadata).slice(0, 120) : ''}</td>
<td>${when(r.created_at)}</td><td>${when(r.finished_at)}</td><td class="num">${r.attempt}</td></tr>`)}
</tbody></table>` : ''}
<p class="pager">${search.cursor ? html`<a href="${view.link('/runs', filters)}">« first page</a>` : ''}
${result?.next ? html`<a rel="next" href="${view.link('/runs', { ...filters, after: result.next })}">next page »</a>` : ''}</p>`;
    return { title: 'Runs', body, status: problem ? 400 : 200 };
  },
};
