/** A Mermaid flowchart of a template definition. */
import { nextIndex, type TemplateDefinition } from './schema.ts';

const label = (text: string) => text.replace(/"/g, "'");

/**
 * The template's entries as a Mermaid `flowchart`: start, each entry (its
 * registered step when it differs, retry attempts, timeout), the path
 * between them (`next` jumps included), `continue` edges past a failing
 * entry, and compensation edges for `compensate`.
 *
 * @example
 * console.log(templateDiagram({ steps: [{ name: 'fetch' }, { name: 'store', onFailure: 'continue' }] }));
 */
export function templateDiagram(definition: TemplateDefinition, options: { direction?: 'LR' | 'TB' | undefined } = {}): string {
  const lines = [`flowchart ${options.direction ?? 'TB'}`, '  start(((start)))', '  finish(((end)))'];
  definition.steps.forEach((entry, i) => {
    const details = [
      entry.step && entry.step !== entry.name ? `step ${entry.step}` : undefined,
      entry.retry?.maxAttempts !== undefined ? `${entry.retry.maxAttempts} attempt${entry.retry.maxAttempts === 1 ? '' : 's'}` : undefined,
      entry.timeout !== undefined ? `timeout ${entry.timeout}` : undefined,
    ].filter(Boolean);
    lines.push(`  e${i}["${label(entry.name)}${details.length ? `<br/>${label(details.join(', '))}` : ''}"]`);
  });
  lines.push('  start --> e0');
  definition.steps.forEach((entry, i) => {
    const next = nextIndex(definition, i);
    const to = next === -1 ? 'finish' : `e${next}`;
    lines.push(`  e${i} --> ${to}`);
    if (entry.onFailure === 'continue') lines.push(`  e${i} -. fails .-> ${to}`);
    if (entry.onFailure === 'compensate') {
      const undo = definition.steps.slice(0, i).filter((e) => e.compensate).reverse();
      let from = `e${i}`;
      undo.forEach((e) => {
        const node = `c${definition.steps.indexOf(e)}`;
        lines.push(`  ${node}["${label(`${e.name} compensate`)}<br/>${label(`step ${e.compensate}`)}"]`);
        lines.push(`  ${from} -. ${from === `e${i}` ? 'fails' : 'then'} .-> ${node}`);
        from = node;
      });
      lines.push(`  ${from} -. ${from === `e${i}` ? 'fails' : 'then'} .-> failed(((failed)))`);
    }
  });
  return `${lines.join('\n')}\n`;
}
