/** `trellis show <run>`: one run, its step timeline, children, the runs waiting on it and signals. */
import { runId } from '../args.ts';
import { JSON_OPTION, type Command } from '../command.ts';
import { between, errorText, formatDuration, formatTime, oneLine, table, toJson } from '../format.ts';
import { runDetails } from '../run-details.ts';
import { displayJson } from '../../protocol/serialize.ts';

/** A payload on one line, at most `max` characters. */
const payload = (value: unknown, max = 200): string => {
  if (value === null || value === undefined) return '-';
  const text = displayJson(value);
  return text.length > max ? `${text.slice(0, max)}…` : text;
};

export const show: Command = {
  name: 'show',
  summary: 'show a run: its step timeline with durations and errors, children, runs waiting on it, signals',
  args: '<run>',
  description: 'Offsets (+) count from the run\'s first start; each step\'s duration covers all its attempts.',
  positionals: [1, 1],
  options: { ...JSON_OPTION },
  async run({ args, options, client, io }) {
    const d = await runDetails(await client(), runId(args[0]));
    if (options.json) {
      io.out(toJson(d));
      return;
    }
    const { run: r } = d;
    const now = new Date();
    const lines = [
      `run       ${r.id}`,
      `workflow  ${r.workflow}@${r.version}  queue ${r.queue}${r.key !== null ? `  key ${oneLine(r.key)}` : ''}`,
      `status    ${r.status}  attempt ${r.attempt}${r.failures ? `  failures ${r.failures}` : ''}${r.execution > 1 ? `  execution ${r.execution}` : ''}`,
      `created   ${formatTime(r.createdAt)}`,
      `started   ${formatTime(r.startedAt)}`,
      r.finishedAt
        ? `finished  ${formatTime(r.finishedAt)}${r.startedAt ? `  (took ${formatDuration(between(r.startedAt, r.finishedAt))})` : ''}`
        : `finished  -${r.startedAt ? `  (not yet: ${formatDuration(between(r.startedAt, null, now))} since it started)` : ''}`,
    ];
    if (r.status === 'pending' || r.status === 'waiting') lines.push(`due       ${formatTime(r.runAt)}`);
    if (r.deadline) lines.push(`deadline  ${formatTime(r.deadline)}${r.finishedAt ? '' : `  (${r.deadline <= now ? 'passed' : `in ${formatDuration(r.deadline.getTime() - now.getTime())}`})`}`);
    if (r.leaseOwner) lines.push(`worker    ${r.leaseOwner} (lease until ${formatTime(r.leaseExpiresAt)})`);
    if (r.parentRunId) lines.push(`parent    ${r.parentRunId} (call #${r.parentSeq})`);
    if (r.forkedFrom) lines.push(`forked    from ${r.forkedFrom.runId} at call #${r.forkedFrom.fromCall}`);
    if (r.cancelRequestedAt) lines.push(`cancel    requested ${formatTime(r.cancelRequestedAt)}`);
    if (r.pauseRequestedAt) lines.push(`pause     requested ${formatTime(r.pauseRequestedAt)}`);
    if (r.scrubbedAt) lines.push(`scrubbed  ${formatTime(r.scrubbedAt)}`);
    if (r.resumeAt || r.autoResumes) {
      lines.push(`resumes   ${r.resumeAt ? `next ${formatTime(r.resumeAt)}` : 'none due'}${r.autoResumes ? `  (${r.autoResumes} automatic so far)` : ''}`);
    }
    lines.push(`input     ${payload(r.input)}`);
    if (Object.keys(r.metadata).length) lines.push(`metadata  ${payload(r.metadata)}`);
    if (r.status === 'completed') lines.push(`output    ${payload(r.output)}`);
    if (r.error) lines.push(`error     ${errorText(r.error, 500)}`);
    io.out(`${lines.join('\n')}\n\n`);

    const origin = r.startedAt ?? r.createdAt;
    const child = new Map(d.children.map((c) => [c.parentSeq, c]));
    if (d.steps.length) {
      io.out(`steps (${d.steps.length})\n`);
      io.out(table(['#', 'kind', 'name', 'status', 'tries', 'at', 'took', 'detail'], d.steps.map((s) => {
        const c = s.kind === 'child' && s.execution === r.execution ? child.get(s.seq) : undefined;
        // A child call waiting on a run this one did not start (ctx.waitForRun, a shared child key) names it in its output.
        const awaited = s.kind === 'child' && !c ? (s.output as { child?: unknown } | null)?.child : undefined;
        // A step's saved progress (step.saveProgress) while it runs or waits to retry; a metadata call's patch.
        const out = s.output as { progress?: unknown } | null;
        const progress = (s.status === 'running' || s.status === 'retrying') && out !== null && typeof out === 'object' && 'progress' in out
          ? `progress ${payload(out.progress, 80)}` : '';
        const detail = s.error ? `${errorText(s.error, 120)}${progress ? `; ${progress}` : ''}` : c ? `→ ${c.id} (${c.status})`
          : typeof awaited === 'string' && s.status === 'waiting' ? `→ ${awaited} (waiting for it)`
          : s.kind === 'metadata' ? `set ${payload(s.output, 80)}` : progress;
        return [
          `${r.execution > 1 ? `${s.execution}.` : ''}${s.seq}`, s.kind, s.name, s.status, String(s.attempts),
          `+${formatDuration(between(origin, s.startedAt))}`, formatDuration(between(s.startedAt, s.finishedAt)), detail,
        ];
      })));
    } else {
      io.out('steps     none recorded\n');
    }
    if (d.children.length) {
      io.out(`\nchildren (${d.children.length})\n`);
      io.out(table(['id', 'workflow', 'status', 'call', 'took'], d.children.map((c) => [
        c.id, c.workflow, c.status, c.parentSeq === null ? '-' : `#${c.parentSeq}`, formatDuration(between(c.createdAt, c.finishedAt, now)),
      ])));
    }
    if (d.watchers.length) {
      io.out(`\nwaited on by (${d.watchers.length})\n`);
      io.out(table(['id', 'workflow', 'status', 'created'], d.watchers.map((w) => [w.id, w.workflow, w.status, formatTime(w.createdAt)])));
    }
    if (d.signals.length) {
      io.out(`\nsignals (${d.signals.length})\n`);
      io.out(table(['name', 'received', 'consumed', 'by call', 'id', 'answered'], d.signals.map((s) => [
        s.name, formatTime(s.receivedAt), formatTime(s.consumedAt), s.consumedSeq === null ? '-' : `#${s.consumedSeq}`, s.signalId ?? '',
        s.answeredAt === null ? '' : `${formatTime(s.answeredAt)}${s.refused ? ' (refused)' : ''}`,
      ])));
    }
  },
};
