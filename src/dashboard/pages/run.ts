/** One run: facts, parent link, actions, input / output / error, the step timeline, its values and streams, signals (with requests' answers), children, the runs waiting on it and events. */
import { FINISHED_STATES, RUN_STATES, type RunState } from '../../db/tables.ts';
import { badge, duration, type Html, html, jsonBlock, when } from '../html.ts';
import { HttpError, type DashboardPage, type PageView } from '../page.ts';
import { assertUuid, type Listed, runChildren, runEvents, runRow, runSignals, runSteps, runWatchers, type SignalRow, type StepRow } from '../queries.ts';

/** The actions that apply to a run in `status`. */
export function actionsFor(status: RunState): Set<string> {
  const out = new Set<string>();
  if (!FINISHED_STATES.includes(status)) out.add('cancel').add('signal');
  if (status === 'pending' || status === 'running' || status === 'waiting') out.add('pause');
  if (status === 'paused') out.add('resume');
  if (status === 'failed') out.add('retry');
  out.add('fork');
  return out;
}

// A Map, not an object: a query's `constructor` or `__proto__` is no notice.
const DONE: ReadonlyMap<string, string> = new Map(Object.entries({
  cancel: 'Cancel requested', pause: 'Pause requested', resume: 'Resumed', retry: 'Retry started', fork: 'Forked: this is the new run', signal: 'Signal sent', 'signal-duplicate': 'Signal dropped: a signal with that id was already sent',
}));

function actionForms(view: PageView, id: string, status: RunState): Html {
  const can = actionsFor(status);
  if (view.readOnly || can.size === 0) return html``;
  const action = (verb: string) => view.link(`/runs/${id}/${verb}`);
  return html`<h2>Actions</h2><div class="actions">
${can.has('cancel') ? html`<form method="post" action="${action('cancel')}">${view.csrfField}<input name="reason" placeholder="reason (optional)" maxlength="500"><button class="danger" type="submit">Cancel run</button></form>` : ''}
${can.has('pause') ? html`<form method="post" action="${action('pause')}">${view.csrfField}<input name="reason" placeholder="reason (optional)" maxlength="500"><button type="submit">Pause</button></form>` : ''}
${can.has('resume') ? html`<form method="post" action="${action('resume')}">${view.csrfField}<button type="submit">Resume</button></form>` : ''}
${can.has('retry') ? html`<form method="post" action="${action('retry')}">${view.csrfField}<button type="submit">Retry from the failed step</button></form>` : ''}
${can.has('fork') ? html`<form method="post" action="${action('fork')}">${view.csrfField}<input name="fromCall" type="number" min="0" step="1" value="0" aria-label="from call" title="the call to run again from: the calls before it keep their results">
<input name="version" placeholder="version (default: this run's)" maxlength="128"><button type="submit">Fork from call</button></form>` : ''}
${can.has('signal') ? html`<form method="post" action="${action('signal')}">${view.csrfField}<input name="name" placeholder="signal name" required maxlength="200">
<textarea name="payload" rows="1" cols="28" placeholder="JSON payload, e.g. {&quot;ok&quot;:true}"></textarea><input name="signalId" placeholder="dedupe id (optional)" maxlength="512"><button type="submit">Send signal</button></form>` : ''}
</div>`;
}

/** `name: message` of an error object. */
function errorLine(error: unknown): string {
  const e = (typeof error === 'object' && error !== null ? error : {}) as { name?: unknown; message?: unknown };
  return `${String(e.name ?? 'Error')}: ${String(e.message ?? '')}`.slice(0, 300);
}

function timeline(steps: StepRow[], origin: number, end: number): Html {
  if (steps.length === 0) return html`<p class="muted">No recorded calls.</p>`;
  const span = Math.max(1, end - origin);
  const pct = (t: number) => Math.min(100, Math.max(0, ((t - origin) / span) * 100)).toFixed(2);
  return html`<table id="steps"><thead><tr><th class="num">#</th><th>name</th><th>kind</th><th>status</th><th class="num">attempts</th><th>started</th><th class="num">took</th><th>timeline</th><th>result</th></tr></thead><tbody>
${steps.map((s) => {
    const start = new Date(s.started_at).getTime();
    const stop = new Date(s.finished_at).getTime();
    const width = Math.max(0.5, Number(pct(stop)) - Number(pct(start)));
    return html`<tr data-seq="${s.seq}"><td class="num">${s.execution > 1 ? `${s.execution}.` : ''}${s.seq}</td><td>${s.name}</td><td>${s.kind}</td><td>${badge(s.status)}</td>
<td class="num">${s.attempts}</td><td class="nowrap">${when(s.started_at)}</td><td class="num">${s.status === 'running' || s.status === 'waiting' ? '…' : duration(stop - start)}</td>
<td><div class="bar"><i class="${s.status}" style="left:${pct(start)}%;width:${width.toFixed(2)}%"></i></div></td>
<td>${s.error ? html`<span class="err">${errorLine(s.error)}</span><details><summary>error</summary>${jsonBlock(s.error)}</details>` : ''}${s.output !== null && s.output !== undefined ? html`<details><summary>output</summary>${jsonBlock(s.output)}</details>` : ''}</td></tr>`;
  })}
</tbody></table>`;
}

/** A request's answer (decision 0044): the value, or the refusal's message and code; empty for a signal that is no answered request. */
function answer(s: SignalRow): Html {
  if (!s.replied_at) return html``;
  if (s.reply === null) return html`<span class="muted">scrubbed</span>`;
  if (s.reply.error !== undefined && !('value' in s.reply)) {
    return html`<span class="err">refused${s.reply.error.code ? html` (${s.reply.error.code})` : html``}: ${s.reply.error.message ?? ''}</span> <span class="muted">${when(s.replied_at)}</span>`;
  }
  return html`${jsonBlock('value' in s.reply ? s.reply.value : s.reply)} <span class="muted">${when(s.replied_at)}</span>`;
}

/** The newest value of each key the run set with ctx.setValue (the steps are in execution, then call order). */
function values(steps: StepRow[]): Html {
  const newest = new Map<string, StepRow>();
  for (const s of steps) if (s.kind === 'value' && s.status === 'completed') newest.set(s.name, s);
  if (newest.size === 0) return html``;
  const keys = [...newest.keys()].sort();
  return html`<h2>Values <span class="muted">(${keys.length})</span></h2><table id="values"><thead><tr><th>key</th><th>value</th><th>set</th></tr></thead><tbody>
${keys.map((k) => {
    const s = newest.get(k) as StepRow;
    return html`<tr><td>${k}</td><td>${jsonBlock(s.output)}</td><td class="nowrap">${when(s.finished_at)} <span class="muted">by call ${s.execution > 1 ? `${s.execution}.` : ''}${s.seq}</span></td></tr>`;
  })}
</tbody></table>`;
}

/** The streams the run wrote (ctx.writeStream): per key, how many entries, the last one, and whether it was closed. */
function streams(steps: StepRow[]): Html {
  const byKey = new Map<string, { entries: number; last: StepRow | undefined; closed: boolean }>();
  for (const s of steps) {
    if (s.kind !== 'stream' || s.status !== 'completed') continue;
    const e = byKey.get(s.name) ?? { entries: 0, last: undefined, closed: false };
    const out = s.output as { v?: unknown; closed?: unknown } | null;
    if (out?.closed === true) e.closed = true;
    else {
      e.entries++;
      e.last = s;
    }
    byKey.set(s.name, e);
  }
  if (byKey.size === 0) return html``;
  const keys = [...byKey.keys()].sort();
  return html`<h2>Streams <span class="muted">(${keys.length})</span></h2><table id="streams"><thead><tr><th>key</th><th>entries</th><th>last entry</th><th>written</th><th>state</th></tr></thead><tbody>
${keys.map((k) => {
    const e = byKey.get(k) as { entries: number; last: StepRow | undefined; closed: boolean };
    return html`<tr><td>${k}</td><td>${e.entries}</td><td>${e.last ? jsonBlock((e.last.output as { v?: unknown } | null)?.v ?? null) : ''}</td><td class="nowrap">${e.last ? when(e.last.finished_at) : ''}</td><td>${e.closed ? 'closed' : html`<span class="muted">open</span>`}</td></tr>`;
  })}
</tbody></table>`;
}

/** The runs a run waits on that it did not start (waiting child calls naming a run that is not its child). */
function awaited(steps: StepRow[], children: { id: string }[]): string[] {
  const own = new Set(children.map((c) => c.id));
  const ids = new Set<string>();
  for (const s of steps) {
    const target = s.kind === 'child' && s.status === 'waiting' ? (s.output as { child?: unknown } | null)?.child : undefined;
    if (typeof target === 'string' && !own.has(target)) ids.add(target);
  }
  return [...ids];
}

/** The page of one run; listed in pages/index.ts. */
/** A list's count: all of it, or the newest shown of how many (a long run's first calls are left out, not its last). */
function counted(list: Listed<unknown>) {
  return list.rows.length === list.total
    ? html`<span class="muted">(${list.total})</span>`
    : html`<span class="muted truncated">(the newest ${list.rows.length} of ${list.total}; <code>trellis show</code> or SQL lists them all)</span>`;
}

export const runPage: DashboardPage = {
  path: '/runs/:id',
  async render(view) {
    const id = assertUuid(view.params.id ?? '');
    const r = await runRow(view.db, id);
    if (!r) throw new HttpError(404, `run ${id} does not exist`);
    const [stepList, signalList, childList, eventList, watcherList] = await Promise.all([runSteps(view.db, id), runSignals(view.db, id),
      runChildren(view.db, id), runEvents(view.db, id), runWatchers(view.db, id)]);
    const [steps, signals, children, events, watchers] = [stepList.rows, signalList.rows, childList.rows, eventList.rows, watcherList.rows];
    const waitsFor = awaited(steps, children);
    const status = r.status as RunState;
    const done = view.query.get('done');
    const origin = new Date(r.created_at).getTime();
    const end = Math.max(origin + 1, ...steps.map((s) => new Date(s.finished_at).getTime()), r.finished_at ? new Date(r.finished_at).getTime() : 0);
    const body = html`<h1>${r.workflow} <span class="muted">v${r.version}</span> ${badge(status)}</h1>
${done && DONE.has(done) ? html`<p class="notice" role="status">${DONE.get(done)}${RUN_STATES.includes(view.query.get('status') as RunState) ? `; the run is now ${view.query.get('status')}` : ''}.</p>` : ''}
<dl class="facts"><dt>run</dt><dd class="mono">${r.id}</dd><dt>key</dt><dd>${r.key ?? (r.former_key ? html`<span id="former-key">${r.former_key}</span> <span class="muted">(taken by a later run)</span>` : '—')}</dd>
<dt>queue</dt><dd>${r.queue}</dd><dt>priority</dt><dd>${r.priority}</dd>
<dt>created</dt><dd>${when(r.created_at)}</dd><dt>started</dt><dd>${when(r.started_at)}</dd>
<dt>finished</dt><dd>${when(r.finished_at)}${r.finished_at ? html` <span class="muted">(${duration(new Date(r.finished_at).getTime() - origin)})</span>` : ''}</dd><dt>run at</dt><dd>${FINISHED_STATES.includes(status) ? '—' : when(r.run_at)}</dd>
<dt>attempt</dt><dd>${r.attempt} <span class="muted">(${r.failures} failed)</span></dd><dt>execution</dt><dd>${r.execution}</dd>
<dt>lease</dt><dd>${r.lease_owner ? html`${r.lease_owner} until ${when(r.lease_expires_at)}` : '—'}</dd><dt>parent</dt><dd>${r.parent_run_id ? html`<a id="parent" class="mono" href="${view.link(`/runs/${r.parent_run_id}`)}">${r.parent_run_id}</a> <span class="muted">(call ${r.parent_seq})</span>` : '—'}</dd>
<dt>cancel requested</dt><dd>${when(r.cancel_requested_at)}</dd><dt>pause requested</dt><dd>${when(r.pause_requested_at)}</dd>
${r.deadline_at ? html`<dt>deadline</dt><dd id="deadline">${when(r.deadline_at)}</dd>` : ''}
${r.forked_from ? html`<dt>forked from</dt><dd><a id="forked-from" class="mono" href="${view.link(`/runs/${r.forked_from}`)}">${r.forked_from}</a> <span class="muted">(from call ${r.forked_from_seq})</span></dd>` : ''}
${r.scrubbed_at ? html`<dt>scrubbed</dt><dd>${when(r.scrubbed_at)}</dd>` : ''}
${r.resume_at || r.auto_resumes ? html`<dt>resumes</dt><dd id="resumes">${r.resume_at ? html`next ${when(r.resume_at)}` : html`<span class="muted">none due</span>`}${r.auto_resumes ? html` <span class="muted">(${r.auto_resumes} automatic so far)</span>` : ''}</dd>` : ''}
${waitsFor.length ? html`<dt>waiting for</dt><dd id="awaiting">${waitsFor.map((w) => html`<a class="mono" href="${view.link(`/runs/${w}`)}">${w}</a> `)}</dd>` : ''}</dl>
${r.error ? html`<p class="error">${errorLine(r.error)}</p>` : ''}
${actionForms(view, id, status)}
<h2>Steps ${counted(stepList)}</h2>${timeline(steps, origin, end)}
${values(steps)}
${streams(steps)}
<h2>Input</h2>${jsonBlock(r.input, 'input')}
${r.output !== null && r.output !== undefined ? html`<h2>Output</h2><div id="output">${jsonBlock(r.output)}</div>` : ''}
${r.error ? html`<h2>Error</h2><div id="error">${jsonBlock(r.error)}</div>` : ''}
${Object.keys(r.metadata ?? {}).length ? html`<h2>Metadata</h2>${jsonBlock(r.metadata)}` : ''}
<h2>Signals ${counted(signalList)}</h2>
${signals.length === 0 ? html`<p class="muted">No signals.</p>` : html`<table id="signals"><thead><tr><th>name</th><th>payload</th><th>dedupe id</th><th>sent</th><th>consumed</th><th>answer</th></tr></thead><tbody>
${signals.map((s) => html`<tr><td>${s.name}</td><td>${jsonBlock(s.payload)}</td><td>${s.signal_id ?? ''}</td><td>${when(s.created_at)}</td><td>${s.consumed_at ? html`${when(s.consumed_at)} <span class="muted">by call ${s.consumed_seq}</span>` : html`<span class="muted">buffered</span>`}</td><td>${answer(s)}</td></tr>`)}
</tbody></table>`}
<h2>Children ${counted(childList)}</h2>
${children.length === 0 ? html`<p class="muted">No child runs.</p>` : html`<table id="children"><thead><tr><th>run</th><th>workflow</th><th>status</th><th>key</th><th>created</th><th>finished</th></tr></thead><tbody>
${children.map((c) => html`<tr><td><a class="mono" href="${view.link(`/runs/${c.id}`)}">${c.id.slice(0, 8)}</a></td><td>${c.workflow}</td><td>${badge(c.status)}</td><td>${c.key ?? ''}</td><td>${when(c.created_at)}</td><td>${when(c.finished_at)}</td></tr>`)}
</tbody></table>`}
${watchers.length ? html`<h2>Waited on by ${counted(watcherList)}</h2><table id="watchers"><thead><tr><th>run</th><th>workflow</th><th>status</th><th>created</th></tr></thead><tbody>
${watchers.map((w) => html`<tr><td><a class="mono" href="${view.link(`/runs/${w.id}`)}">${w.id.slice(0, 8)}</a></td><td>${w.workflow}</td><td>${badge(w.status)}</td><td>${when(w.created_at)}</td></tr>`)}
</tbody></table>` : ''}
<h2>Events ${counted(eventList)}</h2>
${events.length === 0 ? html`<p class="muted">No events (the outbox may be off: setting <code>events</code>).</p>` : html`<table id="events"><thead><tr><th>at</th><th>kind</th><th>attempt</th><th>body</th></tr></thead><tbody>
${events.map((e) => html`<tr><td>${when(e.created_at)}</td><td>${e.kind}</td><td>${e.attempt}</td><td>${jsonBlock(e.body)}</td></tr>`)}
</tbody></table>`}`;
    return { title: `${r.workflow} ${id.slice(0, 8)}`, body };
  },
};
