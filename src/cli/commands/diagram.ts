/** `trellis diagram <run>`: the run's recorded path as a Mermaid flowchart. */
import { runId } from '../args.ts';
import type { Command } from '../command.ts';
import { runDiagram } from '../mermaid.ts';
import { runDetails } from '../run-details.ts';

export const diagram: Command = {
  name: 'diagram',
  summary: 'print a run\'s recorded path as a Mermaid flowchart',
  args: '<run>',
  description: 'Paste it into a ```mermaid block (GitHub and most Markdown viewers draw it), or: trellis diagram <run> --markdown > run.md',
  positionals: [1, 1],
  options: {
    markdown: { type: 'boolean', description: 'wrap it in a ```mermaid fenced block' },
  },
  async run({ args, options, client, io }) {
    const text = runDiagram(await runDetails(await client(), runId(args[0]), { signals: false }));
    io.out(options.markdown ? `\`\`\`mermaid\n${text}\`\`\`\n` : text);
  },
};
