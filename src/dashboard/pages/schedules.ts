/** Schedules: cron, time zone, workflow, next and last tick, fired, paused or failing; pause, resume, run now and backfill. */
import { scheduleList } from '../../db/schedules.ts';
import { OVERLAP_POLICIES, scheduleRow, type ScheduleRow } from '../../client/schedules.ts';
import { type Html, html, jsonBlock, when } from '../html.ts';
import type { DashboardPage, PageView } from '../page.ts';
import { UUID_PATTERN } from '../../workflow/names.ts';

function toggle(view: PageView, s: ScheduleRow): Html {
  if (view.readOnly) return html``;
  const verb = s.paused ? 'resume' : 'pause';
  return html`<form method="post" action="${view.link(`/schedules/${verb}`)}">${view.csrfField}<input type="hidden" name="name" value="${s.name}"><button type="submit">${s.paused ? 'Resume' : 'Pause'}</button></form>
<form method="post" action="${view.link('/schedules/trigger')}">${view.csrfField}<input type="hidden" name="name" value="${s.name}"><button type="submit" title="start a run now, as a tick at this moment would (by the overlap policy)">Run now</button></form>
<details class="backfill"><summary>Backfill</summary><form method="post" action="${view.link('/schedules/backfill')}">${view.csrfField}<input type="hidden" name="name" value="${s.name}">
<label>from (UTC) <input type="datetime-local" name="from" step="1" required></label>
<label>to (UTC, empty: now) <input type="datetime-local" name="to" step="1"></label>
<label>overlap <select name="overlap"><option value="">the schedule's (${s.overlap})</option>${OVERLAP_POLICIES.map((o) => html`<option value="${o}">${o}</option>`)}</select></label>
<button type="submit" title="start the runs of the range's ticks; a tick that already ran is not run again">Backfill</button></form></details>`;
}

/** A backfill's counts, as the notice says them. */
function backfilled(view: PageView): Html {
  const count = (k: string) => Number(view.query.get(k) ?? 0) || 0;
  const parts = [[count('started'), 'started'], [count('existing'), 'already run (not started again)'], [count('skipped'), 'skipped (overlap)'],
    [count('buffered'), 'buffered until the last run ends']] as const;
  const said = parts.filter(([n]) => n > 0).map(([n, what]) => `${n} ${what}`);
  return said.length === 0 ? html`backfilled: the range holds no tick` : html`backfilled: ${said.join(', ')}`;
}

/**
 * The notice after an action: pause, resume, a run now with its outcome, a
 * backfill with its counts. Said only of a schedule the page lists, and
 * only in the page's own words: a crafted link cannot make the dashboard
 * say what it chooses.
 */
function notice(view: PageView, schedules: readonly ScheduleRow[]): Html | string {
  const done = view.query.get('done');
  const name = view.query.get('name');
  if (!name || !schedules.some((s) => s.name === name)) return '';
  if (done === 'pause' || done === 'resume') {
    return html`<p class="notice" role="status">Schedule ${name} ${done === 'pause' ? 'paused: its ticks are skipped until it is resumed' : 'resumed from its next tick'}.</p>`;
  }
  if (done === 'backfill') return html`<p class="notice" role="status">Schedule ${name} ${backfilled(view)}.</p>`;
  if (done !== 'trigger') return '';
  const run = view.query.get('run');
  const outcome = view.query.get('outcome');
  const link = run && UUID_PATTERN.test(run) ? html`: run <a href="${view.link(`/runs/${run}`)}">${run}</a>` : '';
  const what = outcome === 'started' ? html`started a run now${link}`
    : outcome === 'existing' ? html`already had the run of this tick${link}`
      : outcome === 'skipped' ? html`skipped: its last run has not finished (overlap skip)`
        : outcome === 'buffered' ? html`buffered: it starts when the last run ends (overlap bufferOne)`
          : undefined;
  return what ? html`<p class="notice" role="status">Schedule ${name} ${what}.</p>` : '';
}

function state(s: ScheduleRow): Html {
  if (s.paused) return html`<span class="badge s-paused">paused</span>`;
  if (s.lastError) return html`<span class="badge s-failed">error</span> <span class="err">${s.lastError.slice(0, 300)}</span>`;
  if (s.nextAt === null) return html`<span class="badge">no next tick</span>`;
  return html`<span class="badge s-running">active</span>`;
}

/** The page at its `path`; listed in pages/index.ts. */
export const schedulesPage: DashboardPage = {
  path: '/schedules',
  nav: { label: 'Schedules', order: 30 },
  async render(view) {
    const schedules = (await scheduleList(view.db)).map(scheduleRow);
    const body = html`<h1>Schedules</h1>
${notice(view, schedules)}
${schedules.length === 0 ? html`<p class="muted">No schedules: create one with client.schedules.set.</p>` : html`<table id="schedules"><thead><tr><th>schedule</th><th>cron</th><th>time zone</th><th>workflow</th>
<th>next tick</th><th>last tick</th><th class="num">fired</th><th class="num">skipped</th><th>state</th>${view.readOnly ? '' : html`<th></th>`}</tr></thead><tbody>
${schedules.map((s) => html`<tr data-schedule="${s.name}"><td>${s.name}</td><td class="mono">${s.cron}</td><td>${s.timeZone}</td>
<td><a href="${view.link('/runs', { workflow: s.workflow })}">${s.workflow}</a>${s.input !== null && s.input !== undefined ? html`<details><summary>input</summary>${jsonBlock(s.input)}</details>` : ''}</td>
<td class="nowrap">${s.paused ? '—' : when(s.nextAt)}</td>
<td class="nowrap">${s.lastRunId ? html`<a href="${view.link(`/runs/${s.lastRunId}`)}">${when(s.lastTickAt)}</a>` : when(s.lastTickAt)}</td>
<td class="num">${s.fired}</td><td class="num">${s.skipped}</td><td>${state(s)}</td>${view.readOnly ? '' : html`<td>${toggle(view, s)}</td>`}</tr>`)}
</tbody></table>`}
<p class="muted">Ticks are fired by a worker holding the scheduler role (see Roles); times are UTC.</p>`;
    return { title: 'Schedules', body };
  },
};
