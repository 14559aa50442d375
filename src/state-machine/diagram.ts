/** Mermaid diagrams of a state machine definition and of a machine run's recorded path. */
import type { StateMachine } from './define.ts';

/**
 * The direction of a diagram.
 *
 * @example
 * machineDiagram(signup, { direction: 'TB' });
 */
export type MermaidDirection = 'LR' | 'TB' | 'RL' | 'BT';

/** Status names are Mermaid-safe ids when they are plain words; others are quoted through a state alias. */
function id(status: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(status) ? status : `s_${status.replace(/[^A-Za-z0-9_]/g, '_')}`;
}

/**
 * A Mermaid `stateDiagram-v2` of a machine: `[*]` to its initial status,
 * an edge per allowed destination of each step (unlabelled), callback and
 * timeout (labelled), and statuses without handlers to `[*]`. Stable: the
 * order is the order of the definition.
 *
 * @example
 * console.log(machineDiagram(signup));
 * // stateDiagram-v2
 * //   direction LR
 * //   [*] --> created
 * //   created --> emailed
 * //   ...
 */
export function machineDiagram(machine: StateMachine<any, any>, options: { direction?: MermaidDirection | undefined } = {}): string {
  const lines = ['stateDiagram-v2', `  direction ${options.direction ?? 'LR'}`];
  for (const status of machine.statuses) {
    if (id(status) !== status) lines.push(`  state "${status}" as ${id(status)}`);
  }
  lines.push(`  [*] --> ${id(machine.initial)}`);
  const reached = new Set<string>([machine.initial]);
  for (const [from, node] of machine.nodes) {
    for (const kind of ['step', 'callback', 'timeout'] as const) {
      const handler = node[kind];
      if (!handler) continue;
      for (const to of handler.to as readonly string[]) {
        lines.push(`  ${id(from)} --> ${id(to)}${kind === 'step' ? '' : `: ${kind}`}`);
        reached.add(to);
      }
    }
  }
  for (const status of machine.statuses) {
    if (reached.has(status) && !machine.nodes.has(status)) lines.push(`  ${id(status)} --> [*]`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * One recorded call of a run, as `client.history(runId)` returns it.
 *
 * @example
 * runPathDiagram([{ seq: 0, name: 'created', kind: 'step', status: 'completed' }]);
 */
export interface RecordedCall {
  seq: number;
  name: string;
  kind: string;
  status: string;
  output?: unknown;
}

/**
 * A Mermaid `flowchart` of the path a run took: its recorded calls in call
 * order, each labelled with its kind, name and status; for a state machine
 * run, its transitions are labelled `from → to`.
 *
 * @example
 * const steps = await client.history(runId);
 * console.log(runPathDiagram(steps));
 */
export function runPathDiagram(calls: readonly RecordedCall[], options: { direction?: MermaidDirection | undefined } = {}): string {
  const lines = [`flowchart ${options.direction ?? 'LR'}`, '  start(((start)))'];
  let previous = 'start';
  for (const call of [...calls].sort((a, b) => a.seq - b.seq)) {
    const node = `c${call.seq}`;
    const out = call.output as { from?: unknown; to?: unknown; outcome?: unknown } | null | undefined;
    const transition = call.kind === 'step' && out && typeof out === 'object' && typeof out.to === 'string'
      ? ` ${String(out.from)} → ${out.to}${out.outcome && out.outcome !== 'transition' ? ` (${String(out.outcome)})` : ''}` : '';
    const label = `#${call.seq} ${call.kind} ${call.name}${transition} · ${call.status}`.replace(/"/g, "'");
    lines.push(`  ${node}["${label}"]`);
    lines.push(`  ${previous} --> ${node}`);
    previous = node;
  }
  return `${lines.join('\n')}\n`;
}
