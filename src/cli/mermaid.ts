/** A run's recorded path as a Mermaid flowchart: its calls in order, then where it is now. */
import type { RunDetails } from './run-details.ts';
import { between, errorText, formatDuration } from './format.ts';

/** Text safe inside a quoted Mermaid label. */
function label(text: string): string {
  return text.replace(/[&"<>#]/g, (c) => `#${c.charCodeAt(0)};`).replace(/\s+/g, ' ');
}

const STATUS_CLASS: Record<string, string> = {
  completed: 'done', failed: 'failed', cancelled: 'failed', waiting: 'waiting', running: 'running',
  pending: 'waiting', paused: 'waiting',
};

/**
 * The flowchart: a start node, one node per recorded call (kind, name, status,
 * duration, error), a dotted edge to each child run, and an end node with the
 * run's status.
 *
 * @example
 * console.log(runDiagram(await runDetails(client, runId)));   // flowchart TD …
 */
export function runDiagram(d: RunDetails): string {
  const { run, steps } = d;
  const lines = ['flowchart TD', `  start(["${label(`${run.workflow}@${run.version}`)}"])`];
  const classes: Record<string, string[]> = {};
  const mark = (node: string, status: string) => (classes[STATUS_CLASS[status] ?? 'running'] ??= []).push(node);
  const children = new Map(d.children.map((c) => [c.parentSeq, c]));
  let previous = 'start';
  let execution = steps[0]?.execution;
  steps.forEach((s, i) => {
    const node = `s${i}`;
    const parts = [`${s.kind}: ${s.name}`, `${s.status} · ${formatDuration(between(s.startedAt, s.finishedAt))}${s.attempts > 1 ? ` · ${s.attempts} tries` : ''}`];
    if (s.error) parts.push(errorText(s.error, 80));
    lines.push(`  ${node}["${parts.map(label).join('<br/>')}"]`);
    lines.push(execution !== s.execution ? `  ${previous} -- continue as new --> ${node}` : `  ${previous} --> ${node}`);
    execution = s.execution;
    mark(node, s.status);
    const child = s.kind === 'child' && s.execution === run.execution ? children.get(s.seq) : undefined;
    if (child) {
      lines.push(`  c${i}[["${label(`${child.workflow}: ${child.id.slice(0, 8)}`)}<br/>${label(child.status)}"]]`);
      lines.push(`  ${node} -.-> c${i}`);
      mark(`c${i}`, child.status);
    }
    previous = node;
  });
  lines.push(`  now(["${label(run.status)}"])`, `  ${previous} --> now`);
  mark('now', run.status);
  lines.push(
    '  classDef done fill:#e6f4ea,stroke:#1e8e3e',
    '  classDef failed fill:#fce8e6,stroke:#d93025',
    '  classDef waiting fill:#fef7e0,stroke:#f9ab00',
    '  classDef running fill:#e8f0fe,stroke:#1a73e8',
  );
  for (const [name, nodes] of Object.entries(classes)) lines.push(`  class ${nodes.join(',')} ${name}`);
  return `${lines.join('\n')}\n`;
}
