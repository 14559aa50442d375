/** `trellis diagram <run>`: the run's recorded path as a Mermaid flowchart; `--template <name>`: a stored template's flowchart. */
import { templateGet } from '../../db/models.ts';
import { fromKysely } from '../../db/queryable.ts';
import { templateDiagram } from '../../templates/diagram.ts';
import type { TemplateDefinition } from '../../templates/schema.ts';
import { integer, runId } from '../args.ts';
import type { Command } from '../command.ts';
import { UsageError } from '../exit-codes.ts';
import { runDiagram } from '../mermaid.ts';
import { runDetails } from '../run-details.ts';

export const diagram: Command = {
  name: 'diagram',
  summary: 'print a run\'s recorded path (or a stored template) as a Mermaid flowchart',
  args: '<run> | --template <name>',
  description: 'Paste it into a ```mermaid block (GitHub and most Markdown viewers draw it), or: trellis diagram <run> --markdown > run.md',
  positionals: [0, 1],
  options: {
    markdown: { type: 'boolean', description: 'wrap it in a ```mermaid fenced block' },
    template: { type: 'string', value: 'NAME', description: 'draw the stored template NAME (trellis.template_set) instead of a run' },
    'template-version': { type: 'string', value: 'N', description: 'with --template: that version (default: the newest)' },
  },
  async run({ args, options, client, io }) {
    const template = options.template as string | undefined;
    if ((template === undefined) === (args[0] === undefined)) throw new UsageError('give a run id or --template NAME');
    let text: string;
    if (template !== undefined) {
      const version = integer(options['template-version'] as string | undefined, 'template-version', 1, 2_147_483_647, 0);
      const stored = await templateGet(fromKysely((await client()).db), template, version || undefined);
      text = templateDiagram(stored.definition as TemplateDefinition);
    } else {
      text = runDiagram(await runDetails(await client(), runId(args[0]), { signals: false }));
    }
    io.out(options.markdown ? `\`\`\`mermaid\n${text}\`\`\`\n` : text);
  },
};
