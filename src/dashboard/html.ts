/**
 * HTML building for the dashboard: a tagged template that escapes every
 * interpolated value unless it is already `Html`, so a workflow output that
 * holds `<script>` is shown as text, never run. Nothing else in the dashboard
 * writes markup by string concatenation.
 */
import { displayJson } from '../protocol/serialize.ts';

/**
 * Markup that is safe to emit as is (built by `html` or `raw`).
 *
 * @example
 * const cell: Html = html`<td>${run.key}</td>`;
 * response.end(cell.text);
 */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

/**
 * A value a template accepts: escaped text, safe markup, or a list of either
 * (`null`, `undefined` and `false` render as nothing).
 *
 * @example
 * const items: HtmlValue = runs.map((r) => html`<li>${r.id}</li>`);
 */
export type HtmlValue = Html | string | number | boolean | null | undefined | readonly HtmlValue[];

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/**
 * Escape text for an element body or a quoted attribute value; Unicode's
 * bidirectional controls are shown as `⟨U+202E⟩`.
 *
 * @example
 * escapeHtml('<b title="x">') // '&lt;b title=&quot;x&quot;&gt;'
 */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]!).replace(BIDI_CONTROLS, (c) => `⟨U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}⟩`);
}

// Unicode's bidirectional controls (embeddings, overrides, isolates, marks):
// in a key, an error or an output they reorder the text around them, so
// "…\u202Eevil" reads as "live…". The dashboard shows them as what they are.
const BIDI_CONTROLS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * A form field's value as the person typed it (escaped, bidirectional
 * controls kept, unlike {@link escapeHtml}), for `value="…"` of an input
 * the page echoes back: a search submitted again searches for the same text.
 *
 * @example
 * html`<input name="key" value="${fieldValue(search.key ?? '')}">`
 */
export function fieldValue(text: string): Html {
  return new Html(text.replace(/[&<>"']/g, (c) => ESCAPES[c]!));
}

function render(value: HtmlValue): string {
  if (value instanceof Html) return value.text;
  if (Array.isArray(value)) return value.map(render).join('');
  if (value === null || value === undefined || value === false) return '';
  return escapeHtml(String(value));
}

/**
 * Build markup; every `${value}` is escaped unless it is `Html`.
 *
 * @example
 * html`<td>${run.workflow}</td>`   // "<td>&lt;b&gt;</td>" for a workflow named "<b>"
 */
export function html(strings: TemplateStringsArray, ...values: HtmlValue[]): Html {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]!) + strings[i + 1]!;
  return new Html(out);
}

/**
 * Markup written by the dashboard itself, emitted unescaped: never pass it user data.
 *
 * @example
 * html`<p>${raw('&nbsp;')}</p>`
 */
export function raw(text: string): Html {
  return new Html(text);
}

/**
 * Pretty JSON in a `<pre>`, escaped ("none" / "no <label>" for null).
 *
 * @example
 * html`<h2>Output</h2>${jsonBlock(run.output, 'output')}`
 */
export function jsonBlock(value: unknown, label?: string): Html {
  if (value === undefined || value === null) return html`<p class="muted">${label ? `no ${label}` : 'none'}</p>`;
  return html`<pre class="json">${displayJson(value, 2)}</pre>`;
}

/**
 * A timestamp as `2026-12-04 20:18:45Z` (UTC), a dash for none, `never` for infinity.
 *
 * @example
 * when(run.finished_at) // '2026-12-04 20:18:45Z' or '—'
 */
export function when(value: Date | string | null | undefined): string {
  if (value === null || value === undefined) return '—';
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime())) return '—';
  if (!Number.isFinite(d.getTime()) || d.getUTCFullYear() > 9000) return 'never';
  return `${d.toISOString().slice(0, 19).replace('T', ' ')}Z`;
}

/**
 * A duration in ms as `850 ms`, `4.2 s`, `3 m 20 s`, `2 h 5 m`, `3 d 4 h`.
 *
 * @example
 * duration(200_000) // '3 m 20 s'
 */
export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} m ${Math.floor(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} m`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/**
 * A run or step status as a coloured badge.
 *
 * @example
 * html`<td>${badge(run.status)}</td>`
 */
export function badge(status: string): Html {
  return html`<span class="badge s-${status.replace(/[^a-z_]/g, '')}">${status}</span>`;
}
