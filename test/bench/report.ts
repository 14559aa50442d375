/** The printed report: throughput table, ratios to peers, goals (PASS/MISS), and the SVG chart. */
import type { BacklogPoint } from './backlog.ts';
import type { PgbenchResult } from './peers/pgbench.ts';
import { type BenchResults, type LatencyRow, NO_HANDOFF, type ThroughputRow } from './results.ts';
import { bytes, fmt, table } from './stats.ts';
import type { SustainedResult } from './sustained.ts';
import type { Kind } from './workflows.ts';

export interface Goal {
  goal: string;
  measured: string;
  verdict: 'PASS' | 'MISS' | 'n/a';
}

const prefilled = (rows: ThroughputRow[]) => rows.filter((r) => r.variant === 'prefilled');

/** The best (highest wf/s) row of a system and kind over process counts and configurations. */
export function best(rows: ThroughputRow[], system: string, kind: Kind): ThroughputRow | undefined {
  return prefilled(rows).filter((r) => r.system === system && r.kind === kind).sort((a, b) => b.median.wfs - a.median.wfs)[0];
}

export function throughputTable(rows: ThroughputRow[]): string {
  return table(
    ['system / config', 'kind', 'procs', 'wf/s', 'steps/s', 'xact/wf', 'xact/step', 'WAL B/step', 'fsync/s', 'ops/commit', 'reps wf/s'],
    rows.map((r) => [
      `${r.system} ${r.config}${r.variant === 'prefilled' ? '' : ' (enqueue while running)'}`, r.kind, r.procs,
      fmt(r.median.wfs), fmt(r.median.stepsPerS), fmt(r.median.xactPerWf, 3), fmt(r.median.xactPerStep, 3),
      fmt(r.median.walBytesPerStep), fmt(r.median.walSyncsPerS), fmt(r.median.opsPerFlush, 1), r.reps.map((x) => fmt(x.wfs)).join(' / '),
    ]),
  );
}

export function ratioTable(rows: ThroughputRow[]): string {
  const out: (string | number)[][] = [];
  const peers = [...new Set(rows.filter((r) => r.system !== 'trellis').map((r) => `${r.system}|${r.config}`))];
  for (const kind of ['1-step', '10-step'] as Kind[]) {
    const metric = kind === '1-step' ? 'wf/s' : 'steps/s';
    const val = (r: ThroughputRow) => (kind === '1-step' ? r.median.wfs : r.median.stepsPerS);
    for (const t of prefilled(rows).filter((r) => r.system === 'trellis' && r.config === 'default' && r.kind === kind)) {
      for (const key of peers) {
        const [system, config] = key.split('|');
        const same = prefilled(rows).find((p) => p.system === system && p.config === config && p.kind === kind && p.procs === t.procs);
        const top = prefilled(rows).filter((p) => p.system === system && p.config === config && p.kind === kind).sort((a, b) => val(b) - val(a))[0];
        const peer = same ?? top;
        if (!peer) continue;
        out.push([`${kind} ${metric}`, `trellis x${t.procs}`, fmt(val(t)), `${system} ${config} x${peer.procs}`, fmt(val(peer)), `${fmt(val(t) / val(peer), 2)}x`]);
      }
    }
  }
  return table(['figure', 'trellis', 'value', 'peer (same procs, else its best)', 'value', 'trellis / peer'], out);
}

export function latencyTable(rows: LatencyRow[]): string {
  return table(['system', 'load', 'starts/s', 'first p50', 'first p95', 'first p99', 'result p50', 'result p95', 'result p99'],
    rows.map((r) => [r.system, r.load, fmt(r.rate), fmt(r.firstStep.p50, 1), fmt(r.firstStep.p95, 1), fmt(r.firstStep.p99, 1),
      fmt(r.result?.p50, 1), fmt(r.result?.p95, 1), fmt(r.result?.p99, 1)]));
}

export function goals(res: BenchResults): Goal[] {
  const out: Goal[] = [];
  const all = [...res.throughput];
  const verdict = (ok: boolean | undefined): Goal['verdict'] => (ok === undefined ? 'n/a' : ok ? 'PASS' : 'MISS');
  for (const [kind, metric] of [['1-step', 'wf/s'], ['10-step', 'steps/s']] as const) {
    const t = best(all, 'trellis', kind);
    const d = best(all, 'dbos', kind);
    const v = (r?: ThroughputRow) => (r ? (kind === '1-step' ? r.median.wfs : r.median.stepsPerS) : undefined);
    const ratio = t && d ? (v(t) as number) / (v(d) as number) : undefined;
    out.push({
      goal: `${kind} ${metric} >= 10x DBOS`,
      measured: t && d ? `${fmt(v(t))} (x${t.procs}) / ${fmt(v(d))} (x${d.procs}) = ${fmt(ratio, 1)}x` : 'not measured',
      verdict: verdict(ratio === undefined ? undefined : ratio >= 10),
    });
  }
  const sat = ['1-step', '10-step'].map((k) => best(all, 'trellis', k as Kind)).filter((r): r is ThroughputRow => !!r);
  out.push({
    goal: '<= 0.25 Postgres transactions per step at saturation',
    measured: sat.length ? sat.map((r) => `${r.kind} x${r.procs}: ${fmt(r.median.xactPerStep, 3)}`).join(', ') : 'not measured',
    verdict: verdict(sat.length ? sat.every((r) => r.median.xactPerStep <= 0.25) : undefined),
  });
  const low = (system: string) => res.latency.find((r) => r.system === system && r.load === 'low load');
  const tl = low('trellis');
  const gl = low('graphile-worker');
  const nl = low(NO_HANDOFF);
  const nr = res.latency.find((r) => r.system === NO_HANDOFF && r.load === 'low load, caller awaits result')?.result;
  out.push({
    goal: 'start->first step p50 and p99 no worse than graphile-worker (low load)',
    measured: tl && gl ? `trellis ${fmt(tl.firstStep.p50, 1)} / ${fmt(tl.firstStep.p99, 1)} ms vs graphile-worker ${fmt(gl.firstStep.p50, 1)} / ${fmt(gl.firstStep.p99, 1)} ms` +
      (nl ? ` (handoff: false ${fmt(nl.firstStep.p50, 1)} / ${fmt(nl.firstStep.p99, 1)} ms)` : '') : 'not measured',
    verdict: verdict(tl && gl ? tl.firstStep.p50 <= gl.firstStep.p50 && tl.firstStep.p99 <= gl.firstStep.p99 : undefined),
  });
  const tr = res.latency.find((r) => r.system === 'trellis' && r.load === 'low load, caller awaits result')?.result ?? tl?.result;
  out.push({
    goal: 'start->result of a 1-step workflow p50 < 5 ms (low load)',
    measured: tr ? `${fmt(tr.p50, 2)} ms` + (nr ? ` (handoff: false ${fmt(nr.p50, 2)} ms)` : '') : 'not measured',
    verdict: verdict(tr ? tr.p50 < 5 : undefined),
  });
  const bl = res.backlog as BacklogPoint[] | undefined;
  const empty = bl?.find((p) => p.finished === 0);
  const loaded = bl?.find((p) => p.finished >= 1_000_000 && p.pending >= 100_000 && !p.unserved);
  out.push({
    goal: 'claim latency with 1M finished + 100k pending within 1.5x of empty',
    measured: empty && loaded ? `${fmt(loaded.claimMs.p50, 2)} ms vs ${fmt(empty.claimMs.p50, 2)} ms = ${fmt(loaded.claimMs.p50 / empty.claimMs.p50, 2)}x`
      : 'needs the full backlog run (1M)',
    verdict: verdict(empty && loaded ? loaded.claimMs.p50 <= 1.5 * empty.claimMs.p50 : undefined),
  });
  const s = res.sustained as SustainedResult | undefined;
  const at2 = s?.snapshots.find((x) => x.atSeconds >= 120);
  const end = s?.snapshots.at(-1);
  const ten = s && s.minutes >= 10;
  out.push({
    goal: 'tables after 10 min no larger than 2x their size after 2 min',
    measured: at2 && end ? `runs+steps ${bytes(end.totalBytes)} at ${end.atSeconds}s vs ${bytes(at2.totalBytes)} at ${at2.atSeconds}s = ${fmt(end.totalBytes / at2.totalBytes, 2)}x ` +
      `(retention ${s?.retentionSeconds == null ? 'none' : `${s.retentionSeconds} s`}); ` +
      `claim-path indexes ${bytes(end.hotIndexBytes)} vs ${bytes(at2.hotIndexBytes)}${ten ? '' : ' (run --sustain-minutes=10 to judge)'}` : 'not measured',
    verdict: verdict(ten && at2 && end ? end.totalBytes <= 2 * at2.totalBytes : undefined),
  });
  return out;
}

export function printReport(res: BenchResults): Goal[] {
  const lines: string[] = ['', '== Throughput (median of repetitions) =='];
  lines.push(throughputTable([...res.throughput]));
  const pgb = res.pgbench as PgbenchResult | { skipped: string } | undefined;
  if (pgb) lines.push('', 'skipped' in pgb ? `pgbench: skipped: ${pgb.skipped}` : `pgbench (insert+update per transaction, ${pgb.clients} clients): ${fmt(pgb.tps)} tps, ${fmt(pgb.walSyncsPerS)} WAL fsync/s`);
  for (const p of res.peers) lines.push(`${p.system}: skipped: ${p.skipped}`);
  lines.push('', '== Trellis / peers (same run, same server) ==', ratioTable(res.throughput));
  if (res.levers.length) lines.push('', '== Levers (1 worker process) ==', throughputTable(res.levers));
  if (res.latency.length) lines.push('', '== Latency (ms) ==', latencyTable(res.latency));
  const bl = res.backlog as BacklogPoint[] | undefined;
  if (bl) {
    lines.push('', '== Claim latency (run_claim, limit 100) ==', table(['finished runs', 'pending runs', 'unserved pending', 'p50 ms', 'p95 ms', 'run_next_due ms', 'runs size', 'steps size'],
      bl.map((p) => [fmt(p.finished), fmt(p.pending), fmt(p.unserved ?? 0), fmt(p.claimMs.p50, 2), fmt(p.claimMs.p95, 2), fmt(p.nextDueMs, 2), bytes(p.runsBytes), bytes(p.stepsBytes)])));
  }
  const g = goals(res);
  lines.push('', '== Goals ==', table(['goal', 'measured', 'verdict'], g.map((x) => [x.goal, x.measured, x.verdict])));
  for (const e of res.errors) lines.push(`ERROR in ${e.family}: ${e.error}`);
  console.log(lines.join('\n'));
  return g;
}

/** A horizontal bar chart of the best 1-step wf/s and 10-step steps/s of every system. */
export function throughputSvg(res: BenchResults): string {
  const bars: { label: string; value: number; trellis: boolean }[] = [];
  for (const [kind, metric] of [['1-step', 'workflows/s'], ['10-step', 'steps/s']] as const) {
    const systems = [...new Set(res.throughput.map((r) => `${r.system}|${r.config}`))];
    for (const key of systems) {
      const [system, config] = key.split('|') as [string, string];
      const r = prefilled(res.throughput).filter((x) => x.system === system && x.config === config && x.kind === kind).sort((a, b) => b.median.wfs - a.median.wfs)[0];
      if (r) bars.push({ label: `${kind} ${metric}: ${system}${config === 'default' ? '' : ` (${config})`} x${r.procs}`, value: kind === '1-step' ? r.median.wfs : r.median.stepsPerS, trellis: system === 'trellis' });
    }
  }
  const max = Math.max(1, ...bars.map((b) => b.value));
  const h = 26;
  const left = 380;
  const width = 900;
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const body = bars.map((b, i) => {
    const w = Math.max(1, ((width - left - 90) * b.value) / max);
    const y = 40 + i * h;
    return `<text x="${left - 8}" y="${y + 16}" text-anchor="end">${esc(b.label)}</text>` +
      `<rect x="${left}" y="${y + 3}" width="${w.toFixed(1)}" height="${h - 8}" fill="${b.trellis ? '#2f7d4f' : '#8a8f98'}"/>` +
      `<text x="${(left + w + 6).toFixed(1)}" y="${y + 16}">${fmt(b.value)}</text>`;
  }).join('\n');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${60 + bars.length * h}" font-family="sans-serif" font-size="13">
<text x="10" y="22" font-size="15" font-weight="bold">Throughput, no-op workflows, best process count (median of repetitions)</text>
${body}
</svg>
`;
}
