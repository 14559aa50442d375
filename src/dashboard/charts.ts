/**
 * Charts as inline SVG drawn on the server: no script, no client build. Each
 * chart has a <title> per mark, so hovering a bar shows its numbers.
 */
import type { Bucket } from './queries.ts';
import { duration, type Html, html, type HtmlValue } from './html.ts';

const W = 500;
const H = 180;
const PAD = { left: 56, right: 12, top: 12, bottom: 24 };

function hhmm(d: Date, withDay: boolean): string {
  const iso = d.toISOString();
  return withDay ? `${iso.slice(5, 10)} ${iso.slice(11, 16)}` : iso.slice(11, 16);
}

/** A round upper bound for an axis (1, 2, 5 × 10^n). */
function niceMax(value: number): number {
  if (value <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 5, 10]) if (m * p >= value) return m * p;
  return 10 * p;
}

function frame(title: string, yLabels: Html[], xLabels: Html[], marks: HtmlValue[]): Html {
  return html`<svg class="chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img" aria-label="${title}">
<line x1="${PAD.left}" y1="${H - PAD.bottom}" x2="${W - PAD.right}" y2="${H - PAD.bottom}" class="axis"/>
${yLabels}${xLabels}${marks}</svg>`;
}

function axes(max: number, format: (v: number) => string, buckets: Bucket[], withDay: boolean): { y: Html[]; x: Html[] } {
  const plotH = H - PAD.top - PAD.bottom;
  const y = [0, 0.5, 1].map((f) => {
    const py = PAD.top + plotH * (1 - f);
    return html`<line x1="${PAD.left}" y1="${py}" x2="${W - PAD.right}" y2="${py}" class="grid"/><text x="${PAD.left - 6}" y="${py + 4}" text-anchor="end">${format(max * f)}</text>`;
  });
  const step = Math.max(1, Math.ceil(buckets.length / 6));
  const slot = (W - PAD.left - PAD.right) / buckets.length;
  const x = buckets.map((b, i) => (buckets.length - 1 - i) % step === 0
    ? html`<text x="${PAD.left + slot * (i + 1)}" y="${H - 6}" text-anchor="end">${hhmm(b.end, withDay)}</text>`
    : html``);
  return { y, x };
}

/**
 * Runs finished per bucket, stacked: completed, failed, cancelled.
 *
 * @example
 * throughputChart((await throughput(pool, 3600, 60)).buckets)
 */
export function throughputChart(buckets: Bucket[], withDay = false): Html {
  const max = niceMax(Math.max(0, ...buckets.map((b) => b.completed + b.failed + b.cancelled)));
  const plotH = H - PAD.top - PAD.bottom;
  const slot = (W - PAD.left - PAD.right) / buckets.length;
  const marks = buckets.map((b, i) => {
    let base = H - PAD.bottom;
    const parts: Html[] = [];
    for (const [cls, n] of [['completed', b.completed], ['failed', b.failed], ['cancelled', b.cancelled]] as const) {
      if (n === 0) continue;
      const h = (n / max) * plotH;
      base -= h;
      parts.push(html`<rect class="bar-${cls}" x="${(PAD.left + slot * i + 1).toFixed(1)}" y="${base.toFixed(1)}" width="${Math.max(1, slot - 2).toFixed(1)}" height="${h.toFixed(1)}"><title>${`${hhmm(b.end, withDay)}: ${n} ${cls}`}</title></rect>`);
    }
    return parts;
  });
  const { y, x } = axes(max, (v) => String(Math.round(v)), buckets, withDay);
  return frame('runs finished per interval', y, x, marks);
}

/**
 * Start-to-finish latency per bucket: p50 and p95 as lines (gaps where nothing finished).
 *
 * @example
 * latencyChart((await throughput(pool, 86400, 24)).buckets, true)
 */
export function latencyChart(buckets: Bucket[], withDay = false): Html {
  const max = niceMax(Math.max(0, ...buckets.map((b) => b.p95 ?? 0)));
  const plotH = H - PAD.top - PAD.bottom;
  const slot = (W - PAD.left - PAD.right) / buckets.length;
  const line = (pick: (b: Bucket) => number | null, cls: string): Html[] => {
    const marks: Html[] = [];
    let path = '';
    let pen = false;
    buckets.forEach((b, i) => {
      const v = pick(b);
      if (v === null) {
        pen = false;
        return;
      }
      const px = PAD.left + slot * (i + 0.5);
      const py = H - PAD.bottom - (v / max) * plotH;
      path += `${pen ? 'L' : 'M'}${px.toFixed(1)},${py.toFixed(1)}`;
      pen = true;
      marks.push(html`<circle class="${cls}" cx="${px.toFixed(1)}" cy="${py.toFixed(1)}" r="2.5"><title>${`${hhmm(b.end, withDay)}: ${cls} ${duration(v)}`}</title></circle>`);
    });
    return [html`<path class="${cls}" d="${path}" fill="none"/>`, ...marks];
  };
  const { y, x } = axes(max, (v) => duration(v), buckets, withDay);
  return frame('start-to-finish latency, p50 and p95', y, x, [...line((b) => b.p95, 'p95'), ...line((b) => b.p50, 'p50')]);
}
